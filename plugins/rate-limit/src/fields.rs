//! The response header fields of draft-ietf-httpapi-ratelimit-headers-09 (the revision current
//! when this was written; the syntax is that of -08 too): both are Structured Field Lists whose
//! members are the policy name as an sf-string with parameters.
//!
//! * `RateLimit-Policy: "default";q=100;w=60` — quota `q` per window `w` seconds;
//! * `RateLimit: "default";r=42;t=30` — `r` requests left, `t` seconds until the quota is whole
//!   again.
//!
//! The optional `qu` (quota unit: requests is the default) and `pk` (partition key: not sent, so
//! nothing about the key — an IP, a header value — is echoed) are omitted.

use crate::bucket::ceil_seconds;
use crate::config::Policy;

/// The `ratelimit-policy` value.
pub fn policy(policy: &Policy) -> String {
    format!("\"{}\";q={};w={}", policy.name, policy.limit, policy.window)
}

/// The `ratelimit` value: `remaining` tokens, the bucket full again in `reset` nanoseconds.
/// Written by hand, not with `format!`: it is made on every request, and the formatting
/// machinery is a good part of what the plugin costs per request.
pub fn ratelimit(policy: &Policy, remaining: u64, reset: u64) -> String {
    let mut value = String::with_capacity(policy.name.len() + 32);
    value.push('"');
    value.push_str(&policy.name);
    value.push_str("\";r=");
    value.push_str(itoa::Buffer::new().format(remaining));
    value.push_str(";t=");
    value.push_str(itoa::Buffer::new().format(ceil_seconds(reset)));
    value
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;
    use barbacane_sdk::config;

    #[test]
    fn draft_syntax() {
        let p = Policy::new(
            config::parse(Some(
                br#"{"limit": 100, "window": 60, "policy_name": "api"}"#.to_vec(),
            ))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(policy(&p), r#""api";q=100;w=60"#);
        assert_eq!(ratelimit(&p, 42, 29_500_000_000), r#""api";r=42;t=30"#);
    }
}
