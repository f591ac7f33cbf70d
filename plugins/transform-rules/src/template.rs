//! Values with request data in them: `$(headers.x-foo)`, `$(query.bar)` (Kong's spelling
//! `$(query_params.bar)` too), `$(consumer.id)` and `$(consumer.groups)`.
//!
//! A template is parsed once, when the configuration is loaded (an unknown variable or an
//! unterminated `$(` refuses the configuration), and rendered per request against
//! [`RequestData`]: the request as it reached the plugin. A variable with no value (the header
//! or parameter is absent, no consumer was authenticated) makes the whole value absent, and the
//! rule that carries it is skipped rather than applied with a hole in it. `\$(` is a literal
//! `$(`.

use barbacane_sdk::consumer::Consumer;
use std::borrow::Cow;

/// What a template may read: the request as it reached the plugin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestData {
    /// The request headers (lowercase names, raw values), pseudo-headers included.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The query parameters, decoded, in order.
    pub query: Vec<(String, String)>,
    /// The consumer an auth plugin earlier in the chain authenticated.
    pub consumer: Option<Consumer>,
}

/// A variable a template reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// Every value of a request header (lowercase name), joined with `, `.
    Header(String),
    /// The first value of a query parameter.
    Query(String),
    /// The consumer's id.
    ConsumerId,
    /// The consumer's groups, joined with `,`.
    ConsumerGroups,
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`; says why when a `$(…)` is unterminated or names an unknown variable.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(at) = rest.find("$(") {
            let (before, after) = rest.split_at(at);
            if let Some(escaped) = before.strip_suffix('\\') {
                literal.push_str(escaped);
                literal.push_str("$(");
                rest = &after[2..];
                continue;
            }
            literal.push_str(before);
            let inner = &after[2..];
            let Some(end) = inner.find(')') else {
                return Err(format!("unterminated '$(' in '{text}'"));
            };
            let var = parse_var(inner[..end].trim())?;
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Var(var));
            rest = &inner[end + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() || parts.is_empty() {
            parts.push(Part::Text(literal));
        }
        Ok(Template { parts })
    }

    /// A template without variables.
    pub fn literal(text: &str) -> Template {
        Template {
            parts: vec![Part::Text(text.to_string())],
        }
    }

    /// Whether the template reads nothing from the request.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// Whether the template reads the consumer.
    pub fn reads_consumer(&self) -> bool {
        self.parts.iter().any(|p| {
            matches!(
                p,
                Part::Var(Var::ConsumerId) | Part::Var(Var::ConsumerGroups)
            )
        })
    }

    /// The value for `request`; `None` when a variable has no value. A literal is lent, not
    /// copied: most configured values are, and they are rendered on every request.
    pub fn render(&self, request: &RequestData) -> Option<Cow<'_, str>> {
        if let [Part::Text(text)] = self.parts.as_slice() {
            return Some(Cow::Borrowed(text));
        }
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(var) => out.push_str(&value(var, request)?),
            }
        }
        Some(Cow::Owned(out))
    }
}

/// `headers.NAME`, `query.NAME`, `query_params.NAME`, `consumer.id`, `consumer.groups`.
fn parse_var(expr: &str) -> Result<Var, String> {
    let unknown = || {
        format!(
            "unknown template variable '$({expr})': use $(headers.NAME), $(query.NAME), \
             $(consumer.id) or $(consumer.groups)"
        )
    };
    match expr.split_once('.') {
        Some(("headers", name)) if crate::names::is_token(name) => {
            Ok(Var::Header(name.to_ascii_lowercase()))
        }
        Some(("query" | "query_params", name)) if !name.is_empty() => {
            Ok(Var::Query(name.to_string()))
        }
        Some(("consumer", "id")) => Ok(Var::ConsumerId),
        Some(("consumer", "groups")) => Ok(Var::ConsumerGroups),
        _ => Err(unknown()),
    }
}

fn value(var: &Var, request: &RequestData) -> Option<String> {
    match var {
        Var::Header(name) => {
            let values: Vec<String> = request
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .collect();
            (!values.is_empty()).then(|| values.join(", "))
        }
        Var::Query(name) => request
            .query
            .iter()
            .find_map(|(n, v)| (n == name).then(|| v.clone())),
        Var::ConsumerId => request.consumer.as_ref().map(|c| c.id.clone()),
        Var::ConsumerGroups => request.consumer.as_ref().map(|c| c.groups.join(",")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;

    fn request() -> RequestData {
        RequestData {
            headers: vec![
                (String::from("x-foo"), b"a".to_vec()),
                (String::from("x-foo"), b"b".to_vec()),
                (String::from("x-latin"), b"caf\xe9".to_vec()),
            ],
            query: vec![
                (String::from("q"), String::from("one two")),
                (String::from("q"), String::from("second")),
            ],
            consumer: Some(Consumer {
                id: String::from("alice"),
                groups: vec![String::from("admins"), String::from("dev")],
                ..Consumer::default()
            }),
        }
    }

    fn render(text: &str, request: &RequestData) -> Option<String> {
        Template::parse(text)
            .unwrap()
            .render(request)
            .map(Cow::into_owned)
    }

    #[test]
    fn variables_are_rendered() {
        let r = request();
        assert_eq!(render("plain", &r).as_deref(), Some("plain"));
        assert_eq!(render("", &r).as_deref(), Some(""));
        assert_eq!(render("$(headers.X-Foo)", &r).as_deref(), Some("a, b"));
        assert_eq!(
            render("q=$(query.q);u=$( consumer.id )", &r).as_deref(),
            Some("q=one two;u=alice")
        );
        assert_eq!(render("$(query_params.q)", &r).as_deref(), Some("one two"));
        assert_eq!(
            render("$(consumer.groups)", &r).as_deref(),
            Some("admins,dev")
        );
        assert_eq!(
            render("$(headers.x-latin)", &r).as_deref(),
            Some("caf\u{fffd}")
        );
        assert_eq!(render("cost: $5", &r).as_deref(), Some("cost: $5"));
        assert_eq!(
            render(r"\$(headers.x-foo)", &r).as_deref(),
            Some("$(headers.x-foo)")
        );
    }

    #[test]
    fn a_missing_value_makes_the_whole_value_absent() {
        let r = request();
        assert_eq!(render("x-$(headers.x-missing)", &r), None);
        assert_eq!(render("$(query.nope)", &r), None);
        assert_eq!(render("$(consumer.id)", &RequestData::default()), None);
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(
            Template::parse("$(headers.x")
                .unwrap_err()
                .contains("unterminated")
        );
        assert!(
            Template::parse("$(cookies.a)")
                .unwrap_err()
                .contains("unknown template variable")
        );
        assert!(Template::parse("$(headers.)").is_err());
        assert!(Template::parse("$(headers.a b)").is_err());
        assert!(Template::parse("$(consumer.name)").is_err());
    }

    #[test]
    fn literal_and_consumer_detection() {
        assert!(Template::parse("abc").unwrap().is_literal());
        assert!(!Template::parse("$(query.a)").unwrap().is_literal());
        assert!(Template::parse("$(consumer.id)").unwrap().reads_consumer());
        assert!(!Template::parse("$(headers.a)").unwrap().reads_consumer());
        assert_eq!(Template::literal("x"), Template::parse("x").unwrap());
    }
}
