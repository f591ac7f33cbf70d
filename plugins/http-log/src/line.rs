//! One log line: what is recorded about a request, serialised as one line of JSON, and the
//! RFC 3339 timestamps in it.
//!
//! Every field is always present (`null` when unknown), so log pipelines see one schema.

use serde::Serialize;

/// What is recorded about one request, in the order the fields are written.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LogLine {
    /// When the gateway received the request (RFC 3339, UTC, milliseconds).
    pub started_at: Option<String>,
    /// When the response was over and the line was written.
    pub finished_at: Option<String>,
    /// The gateway's request id (`x-request-id`).
    pub request_id: Option<String>,
    /// The client's address (behind trusted proxies, the one they forwarded).
    pub client_ip: Option<String>,
    /// The request method.
    pub method: Option<String>,
    /// The request target: path and query, as forwarded.
    pub path: Option<String>,
    /// The operation (`operationId`) the request was routed to.
    pub route: Option<String>,
    /// The upstream it was dispatched to (`null` for mock dispatch).
    pub upstream: Option<String>,
    /// The response status (`null` when there was none: the client went away).
    pub status: Option<i64>,
    /// Request body bytes.
    pub request_size: u64,
    /// Response body bytes.
    pub response_size: u64,
    /// From the request's arrival to the end of the response, in milliseconds.
    pub duration_ms: Option<f64>,
    /// From the request leaving this plugin to the response reaching it back, in milliseconds:
    /// the upstream plus the plugins after this one.
    pub upstream_duration_ms: Option<f64>,
    /// The `user-agent` header.
    pub user_agent: Option<String>,
    /// The consumer an auth plugin authenticated, if any.
    pub consumer_id: Option<String>,
}

impl LogLine {
    /// The line as JSON, without a newline.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings and numbers always serialises; non-finite floats become null.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Milliseconds between two instants in nanoseconds since the epoch, to the microsecond;
/// `None` when `end` is before `start` (a clock step).
pub fn millis_between(start_ns: i64, end_ns: i64) -> Option<f64> {
    let nanos = end_ns.checked_sub(start_ns).filter(|n| *n >= 0)?;
    Some((nanos / 1_000) as f64 / 1_000.0)
}

/// `2025-06-01T12:34:56.789Z` for nanoseconds since the Unix epoch (UTC, milliseconds).
pub fn rfc3339(unix_nanos: i64) -> String {
    let seconds = unix_nanos.div_euclid(1_000_000_000);
    let millis = unix_nanos.rem_euclid(1_000_000_000) / 1_000_000;
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date of a day count from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123Z"
        );
        // A leap day and the turn of a century.
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339(4_102_444_799_999_000_000),
            "2099-12-31T23:59:59.999Z"
        );
        assert_eq!(rfc3339(-1_000_000), "1969-12-31T23:59:59.999Z");
        // Extremes do not panic.
        let _ = rfc3339(i64::MAX);
        let _ = rfc3339(i64::MIN);
    }

    #[test]
    fn durations() {
        assert_eq!(millis_between(1_000_000, 3_500_000), Some(2.5));
        assert_eq!(millis_between(5, 5), Some(0.0));
        assert_eq!(millis_between(5, 4), None);
        assert_eq!(millis_between(i64::MIN, i64::MAX), None);
    }

    #[test]
    fn every_field_is_present() {
        let line = LogLine {
            method: Some(String::from("GET")),
            status: Some(200),
            ..LogLine::default()
        };
        let doc: serde_json::Value = serde_json::from_slice(&line.to_json()).unwrap_or_default();
        let object = doc.as_object().cloned().unwrap_or_default();
        assert_eq!(object.len(), 15);
        assert_eq!(doc["method"], "GET");
        assert_eq!(doc["consumer_id"], serde_json::Value::Null);
        assert_eq!(doc["request_size"], 0);
    }
}
