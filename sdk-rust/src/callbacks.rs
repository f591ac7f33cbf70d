//! Declaring the HTTP stream callbacks a plugin implements, so that the gateway calls no others.
//!
//! The upstream SDK's dispatcher exports every `proxy_on_*` callback, so a host cannot tell the
//! ones a plugin overrides from those that only return the trait's default; it calls them all,
//! and each call into a VM costs a few hundred nanoseconds in a real chain. A plugin lists its
//! own in the module's custom section `barbacane.stream_callbacks` with [`stream_callbacks!`];
//! the gateway then skips the rest: a callback left out behaves as the trait's default
//! (continue; a stream's `on_done`: done). The root context's `on_done` is always called.
//! Envoy ignores custom sections: the module still runs there, getting every callback. Names:
//! `request_headers`, `request_body`, `request_trailers`, `response_headers`, `response_body`,
//! `response_trailers`, `done`, `log`.

/// The section's bytes: `text` as a fixed-size array (what `#[link_section]` takes).
#[doc(hidden)]
pub const fn section<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    let mut out = [0; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// Declares the HTTP stream callbacks this plugin implements, once per module:
/// `barbacane_sdk::stream_callbacks!(request_headers, response_headers);`. Leave out only
/// callbacks the plugin does not override: the gateway will not call them.
#[macro_export]
macro_rules! stream_callbacks {
    ($($callback:ident),* $(,)?) => {
        const _: () = {
            const TEXT: &str = concat!($(stringify!($callback), " "),*);
            #[cfg(target_arch = "wasm32")]
            #[used]
            #[unsafe(link_section = "barbacane.stream_callbacks")]
            static SECTION: [u8; TEXT.len()] = $crate::callbacks::section::<{ TEXT.len() }>(TEXT);
        };
    };
}
