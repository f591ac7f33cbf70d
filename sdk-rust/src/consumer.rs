//! Who the request is from, as the auth plugin that authenticated it says: the contract between
//! authentication plugins (`jwt-auth`, `apikey-auth`, `basic-auth`, `oauth2-introspection`) and
//! the plugins after them in the chain (`acl`, `rate-limit`, `request-transformer`).
//!
//! The authenticating plugin stores a [`Consumer`] in the request's filter state
//! (`proxy_set_property` under [`PROPERTY`], JSON); the gateway shares a request's filter state
//! with every plugin of its chain, as Envoy does, so later plugins read it with [`get`]. Unlike a
//! header, a client cannot forge it. Plugins that also forward the identity upstream use the
//! [`HEADER_ID`] / [`HEADER_GROUPS`] headers, and remove any value the client sent for them.

use proxy_wasm::traits::Context;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The filter-state name the consumer is stored under.
pub const PROPERTY: &str = "barbacane.consumer";
/// The request header carrying the consumer's id upstream (Kong's `X-Consumer-Username`).
pub const HEADER_ID: &str = "x-consumer-id";
/// The request header carrying the consumer's groups upstream, comma-separated.
pub const HEADER_GROUPS: &str = "x-consumer-groups";

/// An authenticated consumer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Consumer {
    /// A stable name: the API key's consumer, the basic-auth user, the token's `sub`.
    pub id: String,
    /// The groups it belongs to (configured for keys and users; a claim for tokens).
    #[serde(default)]
    pub groups: Vec<String>,
    /// The token's claims (JWT payload or introspection answer); empty for keys and passwords.
    #[serde(default)]
    pub claims: Map<String, Value>,
    /// The plugin that authenticated it.
    #[serde(default)]
    pub authenticated_by: String,
}

impl Consumer {
    /// A claim by dotted path (`realm_access.roles`), for claim-based partitioning and rules.
    pub fn claim(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let mut value = self.claims.get(parts.next()?)?;
        for part in parts {
            value = value.get(part)?;
        }
        Some(value)
    }

    /// A claim as the strings it holds: a string, the strings of an array, or a space-separated
    /// string split (OAuth's `scope`).
    pub fn claim_strings(&self, path: &str) -> Vec<String> {
        match self.claim(path) {
            Some(Value::String(s)) => s.split_whitespace().map(String::from).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect(),
            Some(Value::Number(n)) => vec![n.to_string()],
            Some(Value::Bool(b)) => vec![b.to_string()],
            _ => Vec::new(),
        }
    }
}

/// Whether `group` can be a consumer's group and be forwarded in [`HEADER_GROUPS`]: non-empty
/// printable ASCII ([`crate::http::is_header_text`]) without commas (the header is
/// comma-separated) or surrounding spaces (which a reader of that header would trim).
pub fn is_group(group: &str) -> bool {
    crate::http::is_header_text(group) && !group.contains(',') && group.trim() == group
}

/// Whether `path` is a claim path as [`Consumer::claim`] takes it: `name` or `a.b.c`, no empty
/// segment and no whitespace.
pub fn is_claim_path(path: &str) -> bool {
    path.split('.')
        .all(|part| !part.is_empty() && !part.contains(char::is_whitespace))
}

/// Stores the consumer for the rest of the chain. Call it from an http context.
pub fn set<C: Context + ?Sized>(ctx: &C, consumer: &Consumer) {
    set_encoded(ctx, &encode(consumer));
}

/// `consumer` as [`set_encoded`] stores it: for a plugin that stores the same consumer on many
/// requests (a cache of verified credentials) and encodes it once.
pub fn encode(consumer: &Consumer) -> Vec<u8> {
    // Serialising a struct of strings and JSON values cannot fail.
    serde_json::to_vec(consumer).unwrap_or_default()
}

/// Stores a consumer [`encode`]d earlier for the rest of the chain.
pub fn set_encoded<C: Context + ?Sized>(_ctx: &C, encoded: &[u8]) {
    // Host calls act on the effective context: `ctx` says where this may be called from.
    crate::host::set_property(PROPERTY.as_bytes(), encoded);
}

/// The consumer an earlier plugin of the chain authenticated, if any.
pub fn get<C: Context + ?Sized>(_ctx: &C) -> Option<Consumer> {
    // As in `set_encoded`, `ctx` says where this may be called from.
    let bytes = crate::host::property(PROPERTY.as_bytes())?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn consumer(claims: Value) -> Consumer {
        Consumer {
            id: String::from("alice"),
            claims: claims.as_object().cloned().unwrap_or_default(),
            ..Consumer::default()
        }
    }

    #[test]
    fn claims_are_found_by_dotted_path() {
        let c = consumer(json!({"sub": "alice", "realm_access": {"roles": ["admin", "dev"]}}));
        assert_eq!(c.claim("sub"), Some(&json!("alice")));
        assert_eq!(c.claim_strings("realm_access.roles"), ["admin", "dev"]);
        assert_eq!(c.claim("realm_access.nope"), None);
        assert_eq!(c.claim("nope"), None);
    }

    #[test]
    fn a_space_separated_scope_is_split() {
        let c = consumer(json!({"scope": "read write", "tier": 2}));
        assert_eq!(c.claim_strings("scope"), ["read", "write"]);
        assert_eq!(c.claim_strings("tier"), ["2"]);
        assert!(c.claim_strings("missing").is_empty());
    }

    #[test]
    fn a_consumer_round_trips_through_json() {
        let c = Consumer {
            id: String::from("bob"),
            groups: vec![String::from("admins")],
            claims: Map::new(),
            authenticated_by: String::from("apikey-auth"),
        };
        let bytes = serde_json::to_vec(&c).unwrap();
        assert_eq!(serde_json::from_slice::<Consumer>(&bytes).unwrap(), c);
    }

    #[test]
    fn groups_and_claim_paths() {
        assert!(is_group("admins"));
        assert!(is_group("team a"));
        assert!(!is_group(""));
        assert!(!is_group("a,b"));
        assert!(!is_group(" admins"));
        assert!(!is_group("admins\n"));

        assert!(is_claim_path("sub"));
        assert!(is_claim_path("realm_access.roles"));
        assert!(!is_claim_path(""));
        assert!(!is_claim_path("a..b"));
        assert!(!is_claim_path("a."));
        assert!(!is_claim_path("a b"));
    }
}
