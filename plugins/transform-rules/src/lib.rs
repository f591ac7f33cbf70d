//! The rules behind the built-in `request-transformer` and `response-transformer` plugins, as
//! pure functions over plain data, so that both plugins share one implementation and it is
//! unit-tested natively. The one exception is [`live`]: the stream's header map, which the
//! header rules edit in place through the host.
//!
//! * [`config`]: the configuration (Kong's `remove`/`rename`/`replace`/`add`/`append` sections,
//!   plus `set`), checked and compiled into a [`Plan`] whose errors carry a JSON pointer;
//! * [`names`]: which header names a configuration may name (no pseudo-headers, no hop-by-hop
//!   headers, no framing headers);
//! * [`template`]: `$(headers.x-foo)`, `$(query.bar)`, `$(consumer.id)` in values;
//! * [`headers`], [`query`], [`body`]: the rules applied to a header list, to the query string
//!   of a `:path`, and to a JSON body;
//! * [`live`]: the stream's header map as a [`headers::HeaderList`].
//!
//! Rules run in Kong's order: remove → rename → replace → set → add → append.

pub mod body;
pub mod config;
pub mod headers;
pub mod live;
pub mod names;
pub mod query;
pub mod template;

pub use config::{Action, Config, Plan, Rule, Rules, Target};
pub use template::{RequestData, Template};
