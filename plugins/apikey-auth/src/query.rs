//! Removing a query parameter from a request target, for `hide_credentials`: every occurrence of
//! the parameter goes (compared after form-decoding its name, as the key was found), every
//! other parameter stays exactly as the client encoded it.

use barbacane_sdk::http;

/// `target` without query parameter `name`; `None` when it has no such parameter. A query left
/// empty is dropped with its `?`.
pub fn without_query_param(target: &str, name: &str) -> Option<String> {
    let (path, query) = http::split_path(target);
    let query = query?;
    let parts: Vec<&str> = query.split('&').collect();
    let kept: Vec<&str> = parts
        .iter()
        .copied()
        .filter(|part| decoded_name(part).as_deref() != Some(name))
        .collect();
    if kept.len() == parts.len() {
        return None;
    }
    let kept: Vec<&str> = kept.into_iter().filter(|p| !p.is_empty()).collect();
    if kept.is_empty() {
        Some(path.to_string())
    } else {
        Some(format!("{path}?{}", kept.join("&")))
    }
}

/// The form-decoded name of one `name=value` part.
fn decoded_name(part: &str) -> Option<String> {
    http::query_pairs(&format!("?{part}"))
        .into_iter()
        .next()
        .map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_every_occurrence_and_nothing_else() {
        assert_eq!(
            without_query_param("/p?a=1&apikey=s&b=%2F+x", "apikey").as_deref(),
            Some("/p?a=1&b=%2F+x")
        );
        assert_eq!(
            without_query_param("/p?apikey=s", "apikey").as_deref(),
            Some("/p")
        );
        assert_eq!(
            without_query_param("/p?api%6Bey=s&apikey&x", "apikey").as_deref(),
            Some("/p?x")
        );
        assert_eq!(without_query_param("/p?a=1", "apikey"), None);
        assert_eq!(without_query_param("/p", "apikey"), None);
        assert_eq!(without_query_param("/p?apikeyx=1", "apikey"), None);
    }
}
