//! `x-barbacane-upstreams`: named clusters, their endpoint URLs, the plaintext rule, and the
//! check that every upstream a dispatcher names exists.

use super::Compiler;
use crate::diag::Code;
use crate::model::Upstream;
use crate::spec::NodeRef;
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

impl Compiler {
    pub(super) fn upstream_definitions(&mut self, at: &NodeRef) {
        let Some(value) = self.value(at) else { return };
        let Value::Object(map) = value else {
            self.error(
                Code::E1031,
                at,
                "x-barbacane-upstreams must be a mapping of names to upstreams",
                "write 'x-barbacane-upstreams: {pets: {endpoints: [\"https://pets.internal\"]}}'",
            );
            return;
        };
        for (name, definition) in map {
            let def_at = at.child(&name);
            let Some(upstream) = self.upstream(&def_at, &name, definition) else {
                continue;
            };
            if let Some((existing, existing_at)) = self.upstreams.get(&name) {
                if *existing != upstream {
                    let first = self.sources.location(existing_at);
                    self.error(
                        Code::E1031,
                        &def_at,
                        format!("upstream '{name}' is already defined differently at {first}"),
                        "give the two upstreams different names or make them identical",
                    );
                }
                continue;
            }
            self.upstreams.insert(name, (upstream, def_at));
        }
    }

    pub(super) fn upstream(
        &mut self,
        at: &NodeRef,
        name: &str,
        definition: Value,
    ) -> Option<Upstream> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            endpoints: Vec<String>,
            #[serde(default)]
            allow_plaintext: bool,
            /// PEM file of the CA(s) that sign the upstream's certificate, relative to the spec.
            ca_file: Option<String>,
        }
        let raw: Raw = match serde_json::from_value(definition) {
            Ok(raw) => raw,
            Err(e) => {
                self.error(
                    Code::E1031,
                    at,
                    format!("invalid upstream '{name}': {e}"),
                    "an upstream is {endpoints: [\"https://host:port\"]}",
                );
                return None;
            }
        };
        if raw.endpoints.is_empty() {
            self.error(
                Code::E1031,
                at,
                format!("upstream '{name}' has no endpoints"),
                "list at least one URL under 'endpoints'",
            );
            return None;
        }
        let mut ok = true;
        for (i, endpoint) in raw.endpoints.iter().enumerate() {
            let endpoint_at = at.child("endpoints").child(&i.to_string());
            match url::Url::parse(endpoint) {
                Ok(u)
                    if matches!(u.scheme(), "http" | "https")
                        && u.host_str().is_some()
                        && u.query().is_none()
                        && u.fragment().is_none() =>
                {
                    if u.scheme() == "http" && !self.options.dev && !raw.allow_plaintext {
                        self.error(
                            Code::E1032,
                            &endpoint_at,
                            format!("upstream '{name}' uses plaintext http:// ({endpoint})"),
                            "use https://, compile with --dev, or set 'allow_plaintext: true' on the upstream",
                        );
                        ok = false;
                    }
                }
                _ => {
                    self.error(
                        Code::E1031,
                        &endpoint_at,
                        format!("upstream '{name}': '{endpoint}' is not an http(s) URL"),
                        "write endpoints as 'https://host:port' with an optional base path",
                    );
                    ok = false;
                }
            }
        }
        let ca_pem = match raw.ca_file {
            None => None,
            Some(file) => match self.read_ca_file(&file, at) {
                Ok(pem) => Some(pem),
                Err(why) => {
                    self.error(
                        Code::E1031,
                        &at.child("ca_file"),
                        format!("upstream '{name}': ca_file '{file}' {why}"),
                        "point ca_file at a PEM file of CA certificates, relative to the spec",
                    );
                    ok = false;
                    None
                }
            },
        };
        ok.then_some(Upstream {
            endpoints: raw.endpoints,
            ca_pem,
        })
    }

    /// Reads a CA bundle next to the spec that names it; it is embedded in the artifact so that
    /// `serve` reads no files.
    fn read_ca_file(&self, file: &str, at: &NodeRef) -> Result<String, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let spec_dir = self.sources.docs()[at.doc]
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let pem = std::fs::read_to_string(spec_dir.join(file))
            .map_err(|e| format!("cannot be read: {e}"))?;
        let count = CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|c| c.map_err(|e| format!("is not valid PEM: {e}")))
            .collect::<Result<Vec<_>, _>>()?
            .len();
        if count == 0 {
            return Err(String::from("holds no certificate"));
        }
        Ok(pem)
    }

    pub(super) fn check_upstream_uses(&mut self) {
        for (name, at) in std::mem::take(&mut self.upstream_uses) {
            if !self.upstreams.contains_key(&name) {
                let known: Vec<&str> = self.upstreams.keys().map(String::as_str).collect();
                let hint = if known.is_empty() {
                    String::from("declare it under x-barbacane-upstreams")
                } else {
                    format!(
                        "declare it under x-barbacane-upstreams (known: {})",
                        known.join(", ")
                    )
                };
                self.error(
                    Code::E1030,
                    &at,
                    format!("unknown upstream '{name}'"),
                    &hint,
                );
            }
        }
    }
}
