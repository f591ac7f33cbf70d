//! The access policy: the configuration checked, and the decision for one consumer. Pure, so
//! that it is unit-tested natively.

use barbacane_sdk::config::ConfigError;
use barbacane_sdk::consumer::Consumer;
use serde::Deserialize;

/// The plugin configuration, as written in the spec.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Groups allowed (the consumer must be in one); empty: any.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Groups refused.
    #[serde(default)]
    pub deny: Vec<String>,
    /// Claim rules, all of which must hold.
    #[serde(default)]
    pub claims: Vec<ClaimRuleConfig>,
    /// Remove `x-consumer-groups` from the forwarded request.
    #[serde(default)]
    pub hide_groups_header: bool,
}

/// A claim rule as written: `claim` and exactly one of the three lists.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRuleConfig {
    /// Dotted path of the claim.
    pub claim: String,
    /// At least one of these.
    #[serde(default)]
    pub any_of: Option<Vec<String>>,
    /// Every one of these.
    #[serde(default)]
    pub all_of: Option<Vec<String>>,
    /// None of these.
    #[serde(default)]
    pub none_of: Option<Vec<String>>,
}

/// How a claim's values must relate to a rule's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// At least one in common.
    AnyOf,
    /// All of the rule's values present.
    AllOf,
    /// None in common.
    NoneOf,
}

/// A checked claim rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRule {
    /// Dotted path of the claim.
    pub claim: String,
    /// The relation required.
    pub matching: Match,
    /// The rule's values.
    pub values: Vec<String>,
}

impl ClaimRule {
    /// Whether the consumer's claim satisfies the rule. Values compare exactly (case-sensitive),
    /// as OAuth scopes and roles do.
    pub fn holds(&self, consumer: &Consumer) -> bool {
        let held = consumer.claim_strings(&self.claim);
        let has = |value: &String| held.contains(value);
        match self.matching {
            Match::AnyOf => self.values.iter().any(has),
            Match::AllOf => self.values.iter().all(has),
            Match::NoneOf => !self.values.iter().any(has),
        }
    }
}

/// What the plugin does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The consumer may go on.
    Allow,
    /// No consumer: no authentication plugin ran before this one (or it let the request
    /// through anonymously). A 401.
    NoConsumer,
    /// The consumer is refused (a 403); the reason is for logs, not for the client.
    Deny(String),
}

/// The checked configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    allow: Vec<String>,
    deny: Vec<String>,
    rules: Vec<ClaimRule>,
    hide_groups_header: bool,
}

impl Policy {
    /// Checks `config`: at least one of `allow`, `deny`, `claims`; no empty names; each claim
    /// rule with exactly one non-empty list.
    pub fn new(config: Config) -> Result<Policy, ConfigError> {
        let error = |pointer: String, message: &str| ConfigError {
            pointer,
            message: message.to_string(),
        };
        if config.allow.is_empty() && config.deny.is_empty() && config.claims.is_empty() {
            return Err(error(
                String::new(),
                "give at least one of allow, deny and claims: otherwise acl decides nothing",
            ));
        }
        for (field, groups) in [("allow", &config.allow), ("deny", &config.deny)] {
            if let Some(i) = groups.iter().position(|g| g.trim().is_empty()) {
                return Err(error(
                    format!("/{field}/{i}"),
                    "a group name cannot be empty",
                ));
            }
        }
        let mut rules = Vec::with_capacity(config.claims.len());
        for (i, rule) in config.claims.into_iter().enumerate() {
            if rule.claim.is_empty() || rule.claim.split('.').any(str::is_empty) {
                return Err(error(
                    format!("/claims/{i}/claim"),
                    "expected a claim name or dotted path such as realm_access.roles",
                ));
            }
            let lists = [
                ("any_of", Match::AnyOf, rule.any_of),
                ("all_of", Match::AllOf, rule.all_of),
                ("none_of", Match::NoneOf, rule.none_of),
            ];
            let mut given = lists
                .into_iter()
                .filter_map(|(name, m, v)| Some((name, m, v?)));
            let (Some((name, matching, values)), None) = (given.next(), given.next()) else {
                return Err(error(
                    format!("/claims/{i}"),
                    "give exactly one of any_of, all_of and none_of",
                ));
            };
            if values.is_empty() {
                return Err(error(
                    format!("/claims/{i}/{name}"),
                    "the list of values is empty",
                ));
            }
            rules.push(ClaimRule {
                claim: rule.claim,
                matching,
                values,
            });
        }
        Ok(Policy {
            allow: config.allow,
            deny: config.deny,
            rules,
            hide_groups_header: config.hide_groups_header,
        })
    }

    /// Whether `x-consumer-groups` is removed from the forwarded request.
    pub fn hide_groups_header(&self) -> bool {
        self.hide_groups_header
    }

    /// Decides for the consumer an earlier plugin authenticated, if any. Deny wins: a consumer
    /// in a denied group, or holding a `none_of` value, is refused whatever allows it.
    pub fn decide(&self, consumer: Option<&Consumer>) -> Decision {
        let Some(consumer) = consumer else {
            return Decision::NoConsumer;
        };
        let in_group = |group: &String| consumer.groups.contains(group);
        if let Some(group) = self.deny.iter().find(|g| in_group(g)) {
            return Decision::Deny(format!("in denied group '{group}'"));
        }
        let (vetoes, requirements): (Vec<&ClaimRule>, Vec<&ClaimRule>) =
            self.rules.iter().partition(|r| r.matching == Match::NoneOf);
        if let Some(rule) = vetoes.iter().find(|r| !r.holds(consumer)) {
            return Decision::Deny(format!("claim '{}' holds a denied value", rule.claim));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(in_group) {
            return Decision::Deny(String::from("in none of the allowed groups"));
        }
        if let Some(rule) = requirements.iter().find(|r| !r.holds(consumer)) {
            return Decision::Deny(format!("claim '{}' lacks a required value", rule.claim));
        }
        Decision::Allow
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;
    use barbacane_sdk::config;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Result<Policy, ConfigError> {
        config::parse(Some(value.to_string().into_bytes())).and_then(Policy::new)
    }

    fn consumer(groups: &[&str], claims: serde_json::Value) -> Consumer {
        Consumer {
            id: "alice".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            claims: claims.as_object().cloned().unwrap_or_default(),
            authenticated_by: "test".into(),
        }
    }

    #[test]
    fn configuration_is_checked() {
        let pointer = |value| parse(value).unwrap_err().pointer;
        assert_eq!(pointer(json!({})), "");
        assert_eq!(pointer(json!({"allow": [], "deny": []})), "");
        assert_eq!(pointer(json!({"allow": ["a", " "]})), "/allow/1");
        assert_eq!(pointer(json!({"deny": [""]})), "/deny/0");
        assert_eq!(
            pointer(json!({"claims": [{"claim": "scope"}]})),
            "/claims/0"
        );
        assert_eq!(
            pointer(json!({"claims": [{"claim": "scope", "any_of": ["a"], "none_of": ["b"]}]})),
            "/claims/0"
        );
        assert_eq!(
            pointer(json!({"claims": [{"claim": "a..b", "any_of": ["a"]}]})),
            "/claims/0/claim"
        );
        assert_eq!(
            pointer(json!({"claims": [{"claim": "scope", "all_of": []}]})),
            "/claims/0/all_of"
        );
        assert_eq!(pointer(json!({"allow": "admins"})), "/allow");
        assert!(
            parse(json!({"allow": ["a"], "ttl": 1}))
                .unwrap_err()
                .message
                .starts_with("unknown field `ttl`")
        );
        assert!(!parse(json!({"deny": ["x"]})).unwrap().hide_groups_header());
    }

    #[test]
    fn groups_deny_wins() {
        let p = parse(json!({"allow": ["admins", "ops"], "deny": ["banned"]})).unwrap();
        assert_eq!(p.decide(None), Decision::NoConsumer);
        assert_eq!(
            p.decide(Some(&consumer(&["ops"], json!({})))),
            Decision::Allow
        );
        assert!(matches!(
            p.decide(Some(&consumer(&["admins", "banned"], json!({})))),
            Decision::Deny(reason) if reason.contains("banned")
        ));
        assert!(matches!(
            p.decide(Some(&consumer(&["Admins"], json!({})))),
            Decision::Deny(_)
        ));
        assert!(matches!(
            p.decide(Some(&consumer(&[], json!({})))),
            Decision::Deny(_)
        ));
        // Deny only: everyone else is allowed.
        let p = parse(json!({"deny": ["banned"]})).unwrap();
        assert_eq!(p.decide(Some(&consumer(&[], json!({})))), Decision::Allow);
        assert!(matches!(
            p.decide(Some(&consumer(&["banned"], json!({})))),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn claim_rules() {
        let p = parse(json!({"claims": [
            {"claim": "scope", "any_of": ["orders:read", "orders:write"]},
            {"claim": "realm_access.roles", "all_of": ["user", "verified"]},
            {"claim": "status", "none_of": ["suspended"]}
        ]}))
        .unwrap();
        let ok = json!({
            "scope": "profile orders:read",
            "realm_access": {"roles": ["user", "verified", "x"]},
            "status": "active"
        });
        assert_eq!(p.decide(Some(&consumer(&[], ok.clone()))), Decision::Allow);
        let mut no_scope = ok.clone();
        no_scope["scope"] = json!("profile");
        assert!(matches!(
            p.decide(Some(&consumer(&[], no_scope))),
            Decision::Deny(_)
        ));
        let mut one_role = ok.clone();
        one_role["realm_access"]["roles"] = json!(["user"]);
        assert!(matches!(
            p.decide(Some(&consumer(&[], one_role))),
            Decision::Deny(_)
        ));
        let mut suspended = ok.clone();
        suspended["status"] = json!("suspended");
        assert!(matches!(
            p.decide(Some(&consumer(&[], suspended))),
            Decision::Deny(reason) if reason.contains("status")
        ));
        let mut no_status = ok.clone();
        no_status.as_object_mut().unwrap().remove("status");
        assert_eq!(p.decide(Some(&consumer(&[], no_status))), Decision::Allow);
        // Keys and passwords carry no claims: requirements fail.
        assert!(matches!(
            p.decide(Some(&consumer(&["admins"], json!({})))),
            Decision::Deny(_)
        ));
        // Numbers and booleans compare as their text.
        let p = parse(json!({"claims": [{"claim": "tier", "any_of": ["2", "true"]}]})).unwrap();
        assert_eq!(
            p.decide(Some(&consumer(&[], json!({"tier": 2})))),
            Decision::Allow
        );
        assert_eq!(
            p.decide(Some(&consumer(&[], json!({"tier": true})))),
            Decision::Allow
        );
        assert!(matches!(
            p.decide(Some(&consumer(&[], json!({"tier": {"x": 2}})))),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn groups_and_claims_together() {
        let p = parse(json!({
            "allow": ["staff"],
            "claims": [{"claim": "scope", "any_of": ["admin"]}]
        }))
        .unwrap();
        assert_eq!(
            p.decide(Some(&consumer(&["staff"], json!({"scope": "admin"})))),
            Decision::Allow
        );
        assert!(matches!(
            p.decide(Some(&consumer(&["staff"], json!({"scope": "read"})))),
            Decision::Deny(_)
        ));
        assert!(matches!(
            p.decide(Some(&consumer(&["guests"], json!({"scope": "admin"})))),
            Decision::Deny(_)
        ));
    }
}
