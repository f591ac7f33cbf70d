//! The configuration and the user table: who may log in, with which password hash, and the
//! check of one set of credentials — the same work whether or not the user exists.

use crate::hashes::Hash;
use barbacane_sdk::config::ConfigError;
use barbacane_sdk::consumer::Consumer;
use barbacane_sdk::consumer::is_group;
use barbacane_sdk::http::{is_header_text, is_quotable};
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// The plugin configuration, as written in the spec.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The accepted users.
    pub users: Vec<UserEntry>,
    /// The realm of the `WWW-Authenticate` challenge.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Remove `Authorization` from the forwarded request.
    #[serde(default = "enabled")]
    pub hide_credentials: bool,
}

/// One user.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEntry {
    /// The user-id.
    pub username: String,
    /// bcrypt or argon2 hash of the password.
    pub password_hash: String,
    /// The user's groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

fn default_realm() -> String {
    String::from("api")
}

fn enabled() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct User {
    username: String,
    hash: Hash,
    groups: Vec<String>,
}

/// The checked configuration, ready for requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Users {
    users: Vec<User>,
    challenge: String,
    hide_credentials: bool,
}

impl Users {
    /// Checks `config`: at least one user, unique user-ids that can travel in a header,
    /// verifiable hashes, groups and realm that fit in headers.
    pub fn new(config: Config) -> Result<Users, ConfigError> {
        let error = |pointer: String, message: String| ConfigError { pointer, message };
        if !is_quotable(&config.realm) {
            return Err(error(
                "/realm".into(),
                "the realm must be printable ASCII without '\"' or '\\'".into(),
            ));
        }
        if config.users.is_empty() {
            return Err(error(
                "/users".into(),
                "at least one user is needed: without one every request is refused".into(),
            ));
        }
        let mut users: Vec<User> = Vec::with_capacity(config.users.len());
        for (i, user) in config.users.into_iter().enumerate() {
            if !is_header_text(&user.username) || user.username.contains(':') {
                return Err(error(
                    format!("/users/{i}/username"),
                    "the username must be non-empty printable ASCII without ':'".into(),
                ));
            }
            if users.iter().any(|u| u.username == user.username) {
                return Err(error(
                    format!("/users/{i}/username"),
                    format!("user '{}' is configured twice", user.username),
                ));
            }
            let hash = Hash::parse(&user.password_hash)
                .map_err(|message| error(format!("/users/{i}/password_hash"), message))?;
            if let Some(g) = user.groups.iter().position(|g| !is_group(g)) {
                return Err(error(
                    format!("/users/{i}/groups/{g}"),
                    "a group must be non-empty printable ASCII without commas or surrounding spaces"
                        .into(),
                ));
            }
            users.push(User {
                username: user.username,
                hash,
                groups: user.groups,
            });
        }
        Ok(Users {
            users,
            challenge: format!("Basic realm=\"{}\", charset=\"UTF-8\"", config.realm),
            hide_credentials: config.hide_credentials,
        })
    }

    /// The `WWW-Authenticate` value of 401 replies.
    pub fn challenge(&self) -> &str {
        &self.challenge
    }

    /// Whether `Authorization` is removed from the forwarded request.
    pub fn hide_credentials(&self) -> bool {
        self.hide_credentials
    }

    /// The consumer `username` / `password` authenticate, if they do.
    ///
    /// Timing reveals neither which users exist nor which one matched: every username is
    /// compared (in constant time), and exactly one hash is verified either way — the user's,
    /// or for an unknown user the first user's, whose answer is then ignored.
    pub fn authenticate(&self, username: &str, password: &str) -> Option<Consumer> {
        let mut found = None;
        for user in &self.users {
            if bool::from(user.username.as_bytes().ct_eq(username.as_bytes())) {
                found = Some(user);
            }
        }
        let (user, known) = match (found, self.users.first()) {
            (Some(user), _) => (user, true),
            (None, Some(dummy)) => (dummy, false),
            (None, None) => return None,
        };
        let verified = user.hash.verify(password.as_bytes());
        (known && verified).then(|| Consumer {
            id: user.username.clone(),
            groups: user.groups.clone(),
            authenticated_by: String::from(crate::PLUGIN_NAME),
            ..Consumer::default()
        })
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

    /// `htpasswd -nbB -C 4 alice s3cret`.
    const BCRYPT: &str = "$2y$04$AkJV1JNt3QwwjU92aaQBT.lH04rmhsp5ZSO.sSIWgKMvAynU5xP8G";
    /// `printf %s s3cret | argon2 somesaltsalt -id -t 1 -m 10 -p 1 -e`.
    const ARGON2ID: &str = "$argon2id$v=19$m=1024,t=1,p=1$c29tZXNhbHRzYWx0$cvQNjV7LhvzD0iB7dhUv/uFxIX1nVZSWk4kBOCXpQQQ";

    fn parse(json: &str) -> Result<Users, ConfigError> {
        config::parse(Some(json.as_bytes().to_vec())).and_then(Users::new)
    }

    fn users() -> Users {
        parse(&format!(
            r#"{{"users": [
                {{"username": "alice", "password_hash": "{BCRYPT}", "groups": ["admins"]}},
                {{"username": "bob", "password_hash": "{ARGON2ID}"}}
            ]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn configuration_is_checked() {
        let pointer = |json: String| parse(&json).unwrap_err().pointer;
        assert_eq!(parse("{}").unwrap_err().message, "missing field `users`");
        assert_eq!(pointer(r#"{"users": []}"#.into()), "/users");
        assert_eq!(
            pointer(format!(
                r#"{{"users": [{{"username": "a:b", "password_hash": "{BCRYPT}"}}]}}"#
            )),
            "/users/0/username"
        );
        assert_eq!(
            pointer(format!(
                r#"{{"users": [{{"username": "a", "password_hash": "{BCRYPT}"}}, {{"username": "a", "password_hash": "{ARGON2ID}"}}]}}"#
            )),
            "/users/1/username"
        );
        assert_eq!(
            pointer(r#"{"users": [{"username": "a", "password_hash": "secret"}]}"#.into()),
            "/users/0/password_hash"
        );
        assert_eq!(
            pointer(format!(
                r#"{{"users": [{{"username": "a", "password_hash": "{BCRYPT}", "groups": [" x"]}}]}}"#
            )),
            "/users/0/groups/0"
        );
        assert_eq!(
            pointer(format!(
                r#"{{"users": [{{"username": "a", "password_hash": "{BCRYPT}"}}], "realm": "a\\b"}}"#
            )),
            "/realm"
        );
        let u = users();
        assert_eq!(u.challenge(), "Basic realm=\"api\", charset=\"UTF-8\"");
        assert!(u.hide_credentials());
    }

    #[test]
    fn authenticates_known_users_only() {
        let u = users();
        let alice = u.authenticate("alice", "s3cret").unwrap();
        assert_eq!(alice.id, "alice");
        assert_eq!(alice.groups, ["admins"]);
        assert_eq!(alice.authenticated_by, "basic-auth");
        assert_eq!(u.authenticate("bob", "s3cret").unwrap().id, "bob");
        assert_eq!(u.authenticate("alice", "wrong"), None);
        assert_eq!(u.authenticate("Alice", "s3cret"), None);
        // The dummy verification uses alice's hash: her password must not let an unknown user in.
        assert_eq!(u.authenticate("mallory", "s3cret"), None);
        assert_eq!(u.authenticate("", ""), None);
    }
}
