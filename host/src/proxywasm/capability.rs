//! What a plugin does beyond filtering the stream it is given: the `capabilities` a built-in's
//! `plugin.toml` declares (shown by `barbacane plugin list`, so an operator sees that a plugin
//! calls out or shares state), and what a VM was seen doing, recorded by the host calls that
//! open each capability. The plugin conformance check holds every built-in to its declaration.

use std::fmt;

/// One capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// `proxy_http_call`: requests to upstreams.
    HttpCalls,
    /// `proxy_grpc_call`, `proxy_grpc_stream`.
    GrpcCalls,
    /// `proxy_get_shared_data`, `proxy_set_shared_data`: state shared by every replica.
    SharedData,
    /// `proxy_register_shared_queue`, `proxy_resolve_shared_queue`.
    SharedQueues,
    /// `proxy_define_metric`: metrics on `/__barbacane/metrics`.
    Metrics,
    /// `proxy_set_tick_period_milliseconds` with a period: periodic `on_tick`.
    Timers,
    /// `proxy_call_foreign_function`.
    ForeignFunctions,
}

impl Capability {
    /// Every capability, in declaration order.
    pub const ALL: [Capability; 7] = [
        Capability::HttpCalls,
        Capability::GrpcCalls,
        Capability::SharedData,
        Capability::SharedQueues,
        Capability::Metrics,
        Capability::Timers,
        Capability::ForeignFunctions,
    ];

    /// The `plugin.toml` spelling.
    pub fn name(self) -> &'static str {
        match self {
            Capability::HttpCalls => "http-calls",
            Capability::GrpcCalls => "grpc-calls",
            Capability::SharedData => "shared-data",
            Capability::SharedQueues => "shared-queues",
            Capability::Metrics => "metrics",
            Capability::Timers => "timers",
            Capability::ForeignFunctions => "foreign-functions",
        }
    }

    /// The capability spelled `name`.
    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|c| c.name() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of capabilities.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities(u8);

impl Capabilities {
    /// Adds `capability`.
    pub fn insert(&mut self, capability: Capability) {
        self.0 |= capability.bit();
    }

    /// Whether `capability` is in the set.
    pub fn contains(self, capability: Capability) -> bool {
        self.0 & capability.bit() != 0
    }

    /// The capabilities in the set, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sets_hold_what_was_inserted() {
        for c in Capability::ALL {
            assert_eq!(Capability::from_name(c.name()), Some(c));
        }
        assert_eq!(Capability::from_name("network"), None);
        let mut set = Capabilities::default();
        set.insert(Capability::Timers);
        set.insert(Capability::HttpCalls);
        set.insert(Capability::Timers);
        assert!(set.contains(Capability::HttpCalls) && !set.contains(Capability::Metrics));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [Capability::HttpCalls, Capability::Timers]
        );
    }
}
