//! HTTP heads as Proxy-Wasm header maps and back. Filters see (and may change) the pseudo-headers
//! Envoy presents: `:method`, `:path` (with query), `:authority` (HTTP/1's `Host`), `:scheme` on
//! requests, `:status` on responses. Keys are lower case, order is kept, repeats are repeats.

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode, Uri};

/// A header map as the ABI sees it: entries in order (repeats are repeats), keys lower case.
/// Keys and values lie back to back in one buffer, so a map is two allocations however many
/// entries it holds: a chain builds one per head and edits it in most host calls.
#[derive(Clone, Default)]
pub struct Pairs {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
    /// `Some(n)` while the map is still its head (as [`request_pairs`] or [`response_pairs`]
    /// put it) less the names in `removed`, plus entries pushed after it: its first `n` entries
    /// are the head's own, untouched. The head is then updated from those edits, without
    /// comparing it with the map entry by entry.
    head: Option<u32>,
    /// The names (lower case) whose every entry was removed from the head's own, while `head` is
    /// known. Boxed, like `head` a `u32`: most maps have none, and a map is moved in and out of
    /// a VM on every callback, which costs more once it outgrows 64 bytes.
    #[expect(
        clippy::box_collection,
        reason = "one word, not three, in a map moved on every callback"
    )]
    removed: Option<Box<Vec<Vec<u8>>>>,
}

/// Where an entry's key and value lie in [`Pairs::bytes`], as `(start, end)`. 32-bit offsets:
/// 16 bytes an entry, not 32, for the lookups that walk a map in most host calls (a map's buffer
/// never grows past [`MAX_MAP_BYTES`]).
#[derive(Clone, Copy)]
struct Entry {
    key: (u32, u32),
    value: (u32, u32),
}

/// The most bytes of keys and values a map holds (with what edits left unused): an entry that
/// would take it past is dropped, as one that is not valid HTTP is, and a value that would is
/// not set. 8 MiB, the largest header block Envoy can be configured to accept
/// (`max_request_headers_kb`): far above any real head, and a plugin adding headers in a loop
/// cannot make the host hold gigabytes per request.
const MAX_MAP_BYTES: usize = 8 << 20;

/// The bytes of `span` in `bytes` (empty if out of range, which the map's own spans never are).
fn slice(bytes: &[u8], (start, end): (u32, u32)) -> &[u8] {
    bytes.get(start as usize..end as usize).unwrap_or_default()
}

/// The length of `span`.
fn span_len((start, end): (u32, u32)) -> usize {
    (end - start) as usize
}

impl Pairs {
    /// The empty map.
    pub fn new() -> Pairs {
        Pairs::default()
    }

    fn with_capacity(entries: usize, bytes: usize) -> Pairs {
        Pairs {
            bytes: Vec::with_capacity(bytes),
            entries: Vec::with_capacity(entries),
            head: None,
            removed: None,
        }
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in order, as `(key, value)`.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            bytes: &self.bytes,
            entries: self.entries.iter(),
        }
    }

    /// Appends `key: value`; the key is kept lower case.
    pub fn push(&mut self, key: &[u8], value: &[u8]) {
        if !self.has_room(key.len() + value.len()) {
            return;
        }
        let start = self.bytes.len();
        self.push_lowercase(key, value);
        if let Some(stored) = self.bytes.get_mut(start..start + key.len()) {
            stored.make_ascii_lowercase();
        }
    }

    /// [`Pairs::push`] of a key that is lower case already (a parsed header name, a
    /// pseudo-header): a head's every entry is pushed on every request. Unchecked against
    /// [`MAX_MAP_BYTES`]: a head parsed by hyper, or a map compacted to what it holds, is far
    /// below it.
    fn push_lowercase(&mut self, key: &[u8], value: &[u8]) {
        let key = self.append(key);
        let value = self.append(value);
        self.entries.push(Entry { key, value });
    }

    /// Whether `more` bytes still fit in the buffer (see [`MAX_MAP_BYTES`]).
    fn has_room(&self, more: usize) -> bool {
        self.bytes.len() + more <= MAX_MAP_BYTES
    }

    /// Appends `bytes` to the buffer (which the callers keep within [`MAX_MAP_BYTES`]).
    fn append(&mut self, bytes: &[u8]) -> (u32, u32) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        (start as u32, self.bytes.len() as u32)
    }

    /// The index of the first entry named `key` (any case).
    pub fn position(&self, key: &[u8]) -> Option<usize> {
        self.position_from(0, key)
    }

    /// The index of the first entry from `start` on named `key` (any case).
    fn position_from(&self, start: usize, key: &[u8]) -> Option<usize> {
        let entries = self.entries.get(start..)?;
        // Lengths first: most keys of a map differ from the one looked for in length.
        let found = entries.iter().position(|e| {
            span_len(e.key) == key.len() && slice(&self.bytes, e.key).eq_ignore_ascii_case(key)
        })?;
        Some(start + found)
    }

    /// The first value of `key` (any case).
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.value(self.position(key)?)
    }

    /// The value of the entry at `index`.
    pub fn value(&self, index: usize) -> Option<&[u8]> {
        self.entries.get(index).map(|e| slice(&self.bytes, e.value))
    }

    /// Gives the entry at `index` the value `value`.
    pub fn set_value(&mut self, index: usize, value: &[u8]) {
        let Some(&Entry { value: old, .. }) = self.entries.get(index) else {
            return;
        };
        let (start, room) = (old.0 as usize, self.has_room(value.len()));
        let span = match self.bytes.get_mut(start..start + value.len()) {
            Some(bytes) if value.len() <= span_len(old) => {
                bytes.copy_from_slice(value);
                (old.0, old.0 + value.len() as u32)
            }
            _ if !room => return,
            _ => self.append(value),
        };
        self.entries[index].value = span;
        self.touched(index);
        self.compact_if_sparse();
    }

    /// Envoy's replace: the first entry named `key` (any case) takes `value` and the others of
    /// that name go; with none, `key: value` is appended.
    pub fn replace(&mut self, key: &[u8], value: &[u8]) {
        let Some(first) = self.position(key) else {
            return self.push(key, value);
        };
        self.set_value(first, value);
        // Most names occur once: the map is only rewritten when there are others to remove.
        if self.position_from(first + 1, key).is_some() {
            let mut index = 0;
            self.retain(|k, _| {
                index += 1;
                index - 1 == first || !k.eq_ignore_ascii_case(key)
            });
        }
    }

    /// Removes every entry named `key` (any case). A regular header's name removed from the
    /// head's own is remembered, so the head can drop it without being compared with the map.
    pub fn remove(&mut self, key: &[u8]) {
        let removed_own = self.retain_entries(|k, _| !k.eq_ignore_ascii_case(key));
        if removed_own > 0 {
            match self.head {
                Some(own) if !key.starts_with(b":") => {
                    // At most `own` entries of the head's own can go.
                    self.head = Some(own - removed_own);
                    let removed = self.removed.get_or_insert_default();
                    removed.push(key.to_ascii_lowercase());
                }
                _ => self.forget_head(),
            }
        }
        self.compact_if_sparse();
    }

    /// Keeps the entries for which `keep(key, value)` holds.
    pub fn retain(&mut self, keep: impl FnMut(&[u8], &[u8]) -> bool) {
        if self.retain_entries(keep) > 0 {
            self.forget_head();
        }
        self.compact_if_sparse();
    }

    /// [`Pairs::retain`]'s walk; returns how many of the head's own entries went.
    fn retain_entries(&mut self, mut keep: impl FnMut(&[u8], &[u8]) -> bool) -> u32 {
        let own = self.head.unwrap_or(0) as usize;
        let bytes = &self.bytes;
        let (mut index, mut removed_own) = (0, 0);
        self.entries.retain(|e| {
            let kept = keep(slice(bytes, e.key), slice(bytes, e.value));
            removed_own += u32::from(!kept && index < own);
            index += 1;
            kept
        });
        removed_own
    }

    /// The entry at `index` changed: if it was one of the head's own, the map is no longer
    /// known to be its head edited by removals and additions.
    fn touched(&mut self, index: usize) {
        if self.head.is_some_and(|own| index < own as usize) {
            self.forget_head();
        }
    }

    /// The entries so far are a head's own (see [`Pairs::head`]).
    fn mark_head(&mut self) {
        // (Unknown, and the head rebuilt, past 4 billion entries.)
        self.head = u32::try_from(self.len()).ok();
        self.removed = None;
    }

    /// The map is no longer known to be its head edited by removals and additions.
    fn forget_head(&mut self) {
        self.head = None;
        self.removed = None;
    }

    /// How the map differs from its head, when that is known (see [`Pairs::head`]): the names
    /// removed whole from it, and the entries pushed after its own.
    fn head_edits(&self) -> Option<(&[Vec<u8>], Iter<'_>)> {
        let own = self.head? as usize;
        let added = Iter {
            bytes: &self.bytes,
            entries: self.entries.get(own..)?.iter(),
        };
        let removed = self.removed.as_deref().map_or(&[][..], Vec::as_slice);
        Some((removed, added))
    }

    /// Envoy's `HeaderMap::byteSize()`: the bytes of every key and value.
    pub fn byte_size(&self) -> usize {
        self.entries
            .iter()
            .map(|e| span_len(e.key) + span_len(e.value))
            .sum()
    }

    /// Rewrites the buffer with only what the entries use once edits have left most of it unused
    /// (a filter replacing a header in a loop must not grow it without bound).
    fn compact_if_sparse(&mut self) {
        const SMALL: usize = 4096;
        // Implied by the test below, but most maps stay this small: they skip counting what is
        // live on every edit.
        if self.bytes.len() <= SMALL {
            return;
        }
        let live = self.byte_size();
        if self.bytes.len() <= 2 * live + SMALL {
            return;
        }
        let mut compact = Pairs::with_capacity(self.entries.len(), live);
        for (key, value) in self.iter() {
            compact.push_lowercase(key, value);
        }
        // The same entries in the same order: what is known about the head still holds.
        compact.head = self.head;
        compact.removed = self.removed.take();
        *self = compact;
    }
}

/// The entries of a [`Pairs`], in order.
#[derive(Clone)]
pub struct Iter<'a> {
    bytes: &'a [u8],
    entries: std::slice::Iter<'a, Entry>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let e = self.entries.next()?;
        Some((slice(self.bytes, e.key), slice(self.bytes, e.value)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.entries.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Pairs {
    type Item = (&'a [u8], &'a [u8]);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl Eq for Pairs {}

impl PartialEq for Pairs {
    fn eq(&self, other: &Pairs) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl std::fmt::Debug for Pairs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lossy = String::from_utf8_lossy;
        f.debug_list()
            .entries(self.iter().map(|(k, v)| (lossy(k), lossy(v))))
            .finish()
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> Extend<(K, V)> for Pairs {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, entries: I) {
        for (key, value) in entries {
            self.push(key.as_ref(), value.as_ref());
        }
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> FromIterator<(K, V)> for Pairs {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(entries: I) -> Pairs {
        let mut pairs = Pairs::new();
        pairs.extend(entries);
        pairs
    }
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>, const N: usize> From<[(K, V); N]> for Pairs {
    fn from(entries: [(K, V); N]) -> Pairs {
        entries.into_iter().collect()
    }
}

/// Serialises `pairs` in the ABI's map format (Proxy-Wasm 0.2.1 §Header maps).
pub fn serialize(pairs: &Pairs) -> Vec<u8> {
    let mut out = vec![0; serialized_size(pairs)];
    serialize_into(pairs, &mut out);
    out
}

/// The length of `pairs` serialized: the count, two lengths per entry, each key and value with
/// its NUL.
pub fn serialized_size(pairs: &Pairs) -> usize {
    4 + 10 * pairs.len() + pairs.byte_size()
}

/// Serialises `pairs` into `out`, which must be [`serialized_size`] long (the host writes a map
/// straight into the buffer the guest allocated for it); `false`, with `out` partly written,
/// when it is not.
pub fn serialize_into(pairs: &Pairs, out: &mut [u8]) -> bool {
    if out.len() != serialized_size(pairs) {
        return false;
    }
    let (head, mut data) = out.split_at_mut(4 + 8 * pairs.len());
    let (count, lengths) = head.split_at_mut(4);
    count.copy_from_slice(&(pairs.len() as u32).to_le_bytes());
    for ((key, value), lengths) in pairs.iter().zip(lengths.chunks_exact_mut(8)) {
        let (key_len, value_len) = lengths.split_at_mut(4);
        key_len.copy_from_slice(&(key.len() as u32).to_le_bytes());
        value_len.copy_from_slice(&(value.len() as u32).to_le_bytes());
        for part in [key, value] {
            // Never short: `out` has room for every part and its NUL (checked above).
            let Some((bytes, rest)) = std::mem::take(&mut data).split_at_mut_checked(part.len())
            else {
                return false;
            };
            let Some((nul, rest)) = rest.split_first_mut() else {
                return false;
            };
            bytes.copy_from_slice(part);
            *nul = 0;
            data = rest;
        }
    }
    true
}

/// Parses the ABI's map format (keys made lower case); `None` when the bytes do not hold a
/// well-formed map. An empty input (or a lone NUL) is the empty map, as Envoy accepts.
pub fn deserialize(bytes: &[u8]) -> Option<Pairs> {
    if bytes.len() <= 1 {
        return Some(Pairs::new());
    }
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(0)?;
    let mut at = 4usize.checked_add(count.checked_mul(8)?)?;
    let mut pairs = Pairs::with_capacity(count.min(1024), bytes.len().saturating_sub(at));
    for i in 0..count {
        let (key_len, value_len) = (u32_at(4 + 8 * i)?, u32_at(8 + 8 * i)?);
        let key = bytes.get(at..at.checked_add(key_len)?)?;
        at = at.checked_add(key_len + 1)?;
        let value = bytes.get(at..at.checked_add(value_len)?)?;
        at = at.checked_add(value_len + 1)?;
        pairs.push(key, value);
    }
    Some(pairs)
}

fn push_headers(pairs: &mut Pairs, headers: &HeaderMap) {
    for (name, value) in headers {
        // `Host` is presented as `:authority`.
        if name != http::header::HOST {
            pairs.push_lowercase(name.as_str().as_bytes(), value.as_bytes());
        }
    }
}

/// Room for what a chain typically adds to a head (entries, bytes), so that its host calls do
/// not grow the map again and again.
const ADDED: (usize, usize) = (16, 512);

/// Room for the bytes of `headers` in a map: an estimate (most headers are shorter, a map with
/// longer ones grows), since summing their sizes costs a walk through them on every request.
fn headers_size(headers: &HeaderMap) -> usize {
    headers.len() * 64
}

/// The request head as a map: pseudo-headers first, then the headers (`Host` becomes
/// `:authority`, given as the request's [`StreamInfo`](super::properties::StreamInfo) has it, so
/// that it is looked up once per request).
pub fn request_pairs(parts: &http::request::Parts, scheme: &str, authority: &[u8]) -> Pairs {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let size = 64 + path.len() + authority.len() + headers_size(&parts.headers);
    let mut pairs = Pairs::with_capacity(parts.headers.len() + 4 + ADDED.0, size + ADDED.1);
    pairs.push_lowercase(b":method", parts.method.as_str().as_bytes());
    pairs.push_lowercase(b":path", path.as_bytes());
    pairs.push_lowercase(b":authority", authority);
    pairs.push_lowercase(b":scheme", scheme.as_bytes());
    push_headers(&mut pairs, &parts.headers);
    pairs.mark_head();
    pairs
}

/// Whether `uri` is the origin-form target `path` (no scheme, no authority, same text).
fn is_origin_form(uri: &Uri, path: &[u8]) -> bool {
    uri.scheme().is_none()
        && uri.authority().is_none()
        && uri.path_and_query().map(|p| p.as_str().as_bytes()) == Some(path)
}

/// Writes a (possibly changed) request map back into the request head. Entries that are not
/// valid HTTP are dropped rather than failing the request.
pub fn apply_request_pairs(parts: &mut http::request::Parts, pairs: &Pairs) {
    if edit_head(&mut parts.headers, pairs) {
        return;
    }
    for (key, value) in pairs.iter() {
        match key {
            // Unchanged values keep what was parsed (re-parsing a URI on every request is not
            // free). Only an origin-form URI (`/path?query`) is exactly its `:path`; any other
            // form is rebuilt from it, as a changed one is.
            b":method" if value != parts.method.as_str().as_bytes() => {
                if let Ok(method) = Method::from_bytes(value) {
                    parts.method = method;
                }
            }
            b":path" if !is_origin_form(&parts.uri, value) => {
                if let Ok(uri) = Uri::try_from(value) {
                    parts.uri = uri;
                }
            }
            _ => {}
        }
    }
    apply_headers(&mut parts.headers, pairs, true);
}

/// Writes the headers of a (possibly changed) map back into `headers`, rebuilding them and
/// reusing the entries the filters left as they were; with `with_host`, `:authority` is the
/// `Host` header (a request's).
fn apply_headers(headers: &mut HeaderMap, pairs: &Pairs, with_host: bool) {
    let old = std::mem::take(headers);
    let mut unchanged = Unchanged::new(&old);
    headers.reserve(pairs.len());
    for (key, value) in pairs.iter() {
        if with_host && key == b":authority" {
            match old.get(http::header::HOST) {
                Some(host) if host.as_bytes() == value => {
                    headers.append(http::header::HOST, host.clone());
                }
                _ => append_parsed(headers, b"host", value),
            }
        } else if !key.starts_with(b":") {
            append(headers, &mut unchanged, key, value);
        }
    }
}

/// The commonest chain, handled without comparing the head with the map: the filters removed
/// some of its headers (every value of a name) and added others (none a pseudo-header), so
/// `headers` is edited in place. Returns `false`, with `headers` untouched, otherwise.
///
/// A removal moves the head's last header into the removed one's place (`HeaderMap` removes by
/// swapping): headers of different names may leave in another order than they came, which
/// HTTP leaves without meaning (RFC 9110 §5.3); the values of one name keep theirs.
fn edit_head(headers: &mut HeaderMap, pairs: &Pairs) -> bool {
    let Some((removed, added)) = pairs.head_edits() else {
        return false;
    };
    if added.clone().any(|(key, _)| key.starts_with(b":")) {
        return false;
    }
    for name in removed {
        // The head's names are tokens: always UTF-8.
        if let Ok(name) = std::str::from_utf8(name) {
            headers.remove(name);
        }
    }
    headers.reserve(added.len());
    for (key, value) in added {
        append_parsed(headers, key, value);
    }
    true
}

/// The response head as a map: `:status`, then the headers.
pub fn response_pairs(parts: &http::response::Parts) -> Pairs {
    let size = 16 + headers_size(&parts.headers);
    let mut pairs = Pairs::with_capacity(parts.headers.len() + 1 + ADDED.0, size + ADDED.1);
    pairs.push_lowercase(b":status", parts.status.as_str().as_bytes());
    push_headers(&mut pairs, &parts.headers);
    pairs.mark_head();
    pairs
}

/// Writes a (possibly changed) response map back into the response head.
pub fn apply_response_pairs(parts: &mut http::response::Parts, pairs: &Pairs) {
    if edit_head(&mut parts.headers, pairs) {
        return;
    }
    for (key, value) in pairs.iter() {
        if key == b":status"
            && let Some(status) = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
            && let Ok(status) = StatusCode::from_u16(status)
        {
            parts.status = status;
        }
    }
    apply_headers(&mut parts.headers, pairs, false);
}

/// The headers of a head before the filters, in the order `push_headers` gave them to the map.
fn old_entries(old: &HeaderMap) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
    old.iter().filter(|(name, _)| *name != http::header::HOST)
}

/// The headers of a head before the filters, walked once while the head is rebuilt: most pass a
/// filter chain unchanged and in order, so each entry of the new map is looked for from where
/// the last one was found (entries passed over were changed or removed).
struct Unchanged<'a> {
    entries: Vec<(&'a HeaderName, &'a HeaderValue)>,
    next: usize,
}

impl<'a> Unchanged<'a> {
    fn new(old: &'a HeaderMap) -> Unchanged<'a> {
        Unchanged {
            entries: old_entries(old).collect(),
            next: 0,
        }
    }

    /// The old entry that is exactly `key: value`, at or after the last one found.
    fn take(&mut self, key: &[u8], value: &[u8]) -> Option<(&'a HeaderName, &'a HeaderValue)> {
        let rest = self.entries.get(self.next..)?;
        let at = rest
            .iter()
            .position(|(name, old)| name.as_str().as_bytes() == key && old.as_bytes() == value)?;
        self.next += at + 1;
        Some(rest[at])
    }
}

/// Appends `key: value` to `headers`: the old entry's parsed name and value when it is one of
/// `unchanged` (no copy), else parsed.
fn append(headers: &mut HeaderMap, unchanged: &mut Unchanged<'_>, key: &[u8], value: &[u8]) {
    match unchanged.take(key, value) {
        Some((name, old)) => {
            headers.append(name.clone(), old.clone());
        }
        None => append_parsed(headers, key, value),
    }
}

/// Appends `key: value` parsed from the map's bytes; dropped if it is not valid HTTP.
fn append_parsed(headers: &mut HeaderMap, key: &[u8], value: &[u8]) {
    if let Some((name, value)) = parsed(key, value) {
        headers.append(name, value);
    }
}

/// A header name parsed once per worker thread, with the value last added under it.
struct Parsed {
    name: HeaderName,
    /// The last value seen under the name, as bytes, until it repeats...
    last: Vec<u8>,
    /// ...then parsed, and shared (not copied) by every head that gets it again.
    repeated: Option<HeaderValue>,
}

impl Parsed {
    /// The name with `value`, reused when it is the one that repeated.
    fn with(&mut self, value: &[u8]) -> Option<(HeaderName, HeaderValue)> {
        if let Some(repeated) = &self.repeated
            && repeated.as_bytes() == value
        {
            return Some((self.name.clone(), repeated.clone()));
        }
        let parsed = HeaderValue::from_bytes(value).ok()?;
        if self.last == value {
            self.repeated = Some(parsed.clone());
        } else if value.len() <= REPEATED_VALUE {
            self.last.clear();
            self.last.extend_from_slice(value);
        }
        Some((self.name.clone(), parsed))
    }
}

/// `key: value` as a parsed header, or `None` when it is not valid HTTP. Filters add the same few
/// names (`x-request-id`, `ratelimit`, …) to every request, and often the same value (a
/// configured header, a policy): a name that is not one of the standard ones is checked and
/// copied each time it is parsed, and a value is checked and copied into an allocation of its
/// own. So each worker thread keeps the names it parsed (at most [`PARSED_NAMES`]), and per name
/// the last value once it came twice in a row (up to [`REPEATED_VALUE`] bytes).
fn parsed(key: &[u8], value: &[u8]) -> Option<(HeaderName, HeaderValue)> {
    thread_local! {
        static PARSED: std::cell::RefCell<rustc_hash::FxHashMap<Box<[u8]>, Parsed>> =
            Default::default();
    }
    PARSED.with_borrow_mut(|parsed| {
        if let Some(entry) = parsed.get_mut(key) {
            return entry.with(value);
        }
        let mut entry = Parsed {
            name: HeaderName::from_bytes(key).ok()?,
            last: Vec::new(),
            repeated: None,
        };
        let header = entry.with(value);
        if parsed.len() < PARSED_NAMES {
            parsed.insert(key.into(), entry);
        }
        header
    })
}

/// How many header names a worker thread keeps parsed (see [`parsed`]).
const PARSED_NAMES: usize = 256;

/// The longest value [`parsed`] keeps for reuse.
const REPEATED_VALUE: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    /// The request's `:authority`, as the gateway's `StreamInfo` has it.
    fn host(parts: &http::request::Parts) -> &[u8] {
        match parts.uri.authority() {
            Some(authority) => authority.as_str().as_bytes(),
            None => parts.headers.get("host").map_or(b"", |h| h.as_bytes()),
        }
    }

    #[test]
    fn a_map_never_holds_more_than_its_limit() {
        let quarter = vec![b'a'; MAX_MAP_BYTES / 4];
        let mut pairs = Pairs::new();
        for i in 0..8 {
            pairs.push(format!("x-{i}").as_bytes(), &quarter);
        }
        assert_eq!(
            pairs.len(),
            3,
            "the fourth quarter and its key would not fit"
        );
        pairs.replace(b"x-0", &vec![b'b'; MAX_MAP_BYTES / 2]);
        assert_eq!(
            pairs.get(b"x-0"),
            Some(&quarter[..]),
            "a value that would not fit"
        );
        pairs.replace(b"x-0", b"small");
        assert_eq!(pairs.get(b"x-0"), Some(&b"small"[..]));
    }

    #[test]
    fn maps_round_trip_in_the_abi_format() {
        let pairs = Pairs::from([(":method", "GET"), ("x-id", "7")]);
        let bytes = serialize(&pairs);
        assert_eq!(bytes.len(), 39);
        assert_eq!(serialized_size(&pairs), 39);
        assert!(!serialize_into(&pairs, &mut [0; 38]));
        assert_eq!(&bytes[..12], &[2, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(deserialize(&bytes), Some(pairs));
        assert_eq!(deserialize(&[]), Some(Pairs::new()));
        assert_eq!(deserialize(&bytes[..30]), None);
        assert_eq!(deserialize(&[255, 255, 255, 255, 1]), None);
    }

    #[test]
    fn request_heads_round_trip_with_pseudo_headers() {
        let request = http::Request::get("/pets?x=1")
            .header("host", "api.test")
            .header("x-a", "1")
            .body(())
            .unwrap();
        let (mut parts, ()) = request.into_parts();
        let mut pairs = request_pairs(&parts, "http", host(&parts));
        assert_eq!(pairs.get(b":path"), Some(&b"/pets?x=1"[..]));
        assert_eq!(pairs.get(b":authority"), Some(&b"api.test"[..]));
        pairs.set_value(1, b"/v2/pets");
        pairs.push(b"x-b", b"2");
        apply_request_pairs(&mut parts, &pairs);
        assert_eq!(parts.uri.path(), "/v2/pets");
        assert_eq!(parts.headers["host"], "api.test");
        assert_eq!(parts.headers["x-b"], "2");
    }

    #[test]
    fn unchanged_headers_are_kept_as_they_were_not_copied() {
        // Before and after a changed header, and after a removed one: found, not parsed again.
        for names in [
            &["x-kept", "x-changed"][..],
            &["x-gone", "x-changed", "x-kept"],
        ] {
            let mut request = http::Request::get("/");
            for name in names {
                request = request.header(*name, if *name == "x-changed" { "before" } else { "1" });
            }
            let (mut parts, ()) = request.body(()).unwrap().into_parts();
            let kept = parts.headers["x-kept"].as_bytes().as_ptr();
            let mut pairs = request_pairs(&parts, "http", host(&parts));
            pairs.remove(b"x-gone");
            pairs.replace(b"x-changed", b"after");
            apply_request_pairs(&mut parts, &pairs);
            assert_eq!(
                parts.headers["x-kept"].as_bytes().as_ptr(),
                kept,
                "{names:?}"
            );
            assert_eq!(parts.headers["x-changed"], "after");
            assert_eq!(parts.headers.get_all("x-kept").iter().count(), 1);
            assert!(parts.headers.get("x-gone").is_none());
        }
    }

    #[test]
    fn headers_added_after_unchanged_ones_extend_the_head_in_place() {
        let request = http::Request::get("/a")
            .header("host", "api.test")
            .header("x-kept", "same")
            .body(())
            .unwrap();
        let (mut parts, ()) = request.into_parts();
        let kept = parts.headers["x-kept"].as_bytes().as_ptr();
        let mut pairs = request_pairs(&parts, "http", host(&parts));
        pairs.push(b"x-added", b"1");
        pairs.push(b"x-kept", b"again");
        apply_request_pairs(&mut parts, &pairs);
        assert_eq!(parts.headers["x-kept"].as_bytes().as_ptr(), kept);
        let kept_values: Vec<_> = parts.headers.get_all("x-kept").iter().collect();
        assert_eq!(kept_values, ["same", "again"]);
        assert_eq!(parts.headers["x-added"], "1");
        assert_eq!(parts.headers["host"], "api.test");

        // :authority still decides Host: changed, then removed.
        let mut pairs = request_pairs(&parts, "http", host(&parts));
        pairs.set_value(2, b"other.test");
        apply_request_pairs(&mut parts, &pairs);
        assert_eq!(parts.headers["host"], "other.test");
        let mut pairs = request_pairs(&parts, "http", host(&parts));
        pairs.remove(b":authority");
        apply_request_pairs(&mut parts, &pairs);
        assert!(parts.headers.get("host").is_none());
        assert_eq!(parts.headers.get_all("x-kept").iter().count(), 2);

        // A response: the status changes, a header set by a filter is appended.
        let response = http::Response::builder()
            .header("content-type", "text/plain")
            .body(())
            .unwrap();
        let (mut parts, ()) = response.into_parts();
        let mut pairs = response_pairs(&parts);
        pairs.set_value(0, b"201");
        pairs.push(b"x-conformance", b"headers");
        apply_response_pairs(&mut parts, &pairs);
        assert_eq!(parts.status, StatusCode::CREATED);
        assert_eq!(parts.headers["content-type"], "text/plain");
        assert_eq!(parts.headers["x-conformance"], "headers");
    }

    #[test]
    fn a_map_knows_how_it_differs_from_its_head() {
        let request = http::Request::get("/a")
            .header("host", "api.test")
            .header("x-a", "1")
            .header("x-c", "3")
            .body(())
            .unwrap();
        let (parts, ()) = request.into_parts();
        type Edits<'a> = (Vec<&'a [u8]>, Vec<(&'a [u8], &'a [u8])>);
        fn edits(pairs: &Pairs) -> Option<Edits<'_>> {
            let (removed, added) = pairs.head_edits()?;
            Some((removed.iter().map(Vec::as_slice).collect(), added.collect()))
        }

        let mut pairs = request_pairs(&parts, "http", host(&parts));
        assert_eq!(edits(&pairs), Some((vec![], vec![])));
        pairs.push(b"X-B", b"2");
        pairs.replace(b"x-b", b"3");
        assert_eq!(
            edits(&pairs),
            Some((vec![], vec![(&b"x-b"[..], &b"3"[..])]))
        );
        pairs.remove(b"x-b");
        assert_eq!(edits(&pairs), Some((vec![], vec![])), "an added entry went");
        pairs.push(b"x-b", b"4");
        pairs.remove(b"X-A");
        pairs.remove(b"x-absent");
        assert_eq!(
            edits(&pairs),
            Some((vec![&b"x-a"[..]], vec![(&b"x-b"[..], &b"4"[..])])),
            "a name of the head's own removed whole"
        );
        // Values added over and over make the buffer compact itself: the same entries, so the
        // same edits.
        let big = vec![b'v'; 4096];
        for i in 0..100 {
            pairs.replace(b"x-b", &big[..4000 + i % 96]);
        }
        assert!(pairs.bytes.len() < 2 * pairs.byte_size() + 2 * 4096);
        pairs.replace(b"x-b", b"4");
        assert_eq!(
            edits(&pairs),
            Some((vec![&b"x-a"[..]], vec![(&b"x-b"[..], &b"4"[..])])),
        );
        pairs.replace(b"x-c", b"4");
        assert_eq!(edits(&pairs), None, "an own entry after a removal changed");

        // Any other edit of the head's own entries, or a map not built from a head: not known.
        let edits_not_known: [fn(&mut Pairs); 4] = [
            |p| p.set_value(0, b"POST"),
            |p| p.replace(b"x-a", b"1"),
            |p| p.remove(b":authority"),
            |p| p.retain(|key, _| key != b"x-a"),
        ];
        for edit in edits_not_known {
            let mut pairs = request_pairs(&parts, "http", host(&parts));
            edit(&mut pairs);
            assert_eq!(edits(&pairs), None);
        }
        assert_eq!(edits(&Pairs::from([("x-a", "1")])), None);
    }

    #[test]
    fn an_added_pseudo_header_still_goes_through_the_whole_head() {
        let request = http::Request::get("/a")
            .header("host", "api.test")
            .body(())
            .unwrap();
        let (mut parts, ()) = request.into_parts();
        let mut pairs = request_pairs(&parts, "http", host(&parts));
        pairs.push(b":path", b"/b");
        pairs.push(b"x-b", b"2");
        apply_request_pairs(&mut parts, &pairs);
        // The later `:path` is the one applied, and it is not a header.
        assert_eq!(parts.uri.path(), "/b");
        assert_eq!(parts.headers.len(), 2, "{:?}", parts.headers);
        assert_eq!(parts.headers["x-b"], "2");
        assert_eq!(parts.headers["host"], "api.test");
    }

    #[test]
    fn headers_removed_whole_and_added_at_the_end_edit_the_head_in_place() {
        let request = http::Request::get("/a")
            .header("host", "api.test")
            .header("x-gone", "1")
            .header("x-kept", "same")
            .header("x-multi", "1")
            .header("x-multi", "2")
            .body(())
            .unwrap();
        let (mut parts, ()) = request.into_parts();
        let kept = parts.headers["x-kept"].as_bytes().as_ptr();
        let mut pairs = request_pairs(&parts, "http", host(&parts));
        // What request-transformer's remove and rename do: every value goes; the new name is
        // added at the end.
        pairs.remove(b"x-gone");
        pairs.push(b"x-renamed", b"1");
        apply_request_pairs(&mut parts, &pairs);
        assert_eq!(parts.headers["x-kept"].as_bytes().as_ptr(), kept);
        let mut names: Vec<_> = parts.headers.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["host", "x-kept", "x-multi", "x-renamed"]);
        let multi: Vec<_> = parts.headers.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["1", "2"]);

        // One of two values removed, or a header set anew at the end: rebuilt, and still right.
        let mut pairs = request_pairs(&parts, "http", host(&parts));
        pairs.retain(|k, v| !(k == b"x-multi" && v == b"1") && k != b"x-kept");
        pairs.push(b"x-kept", b"new");
        apply_request_pairs(&mut parts, &pairs);
        let multi: Vec<_> = parts.headers.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["2"]);
        assert_eq!(parts.headers["x-kept"], "new");
        assert_eq!(parts.headers.len(), 4);
    }

    #[test]
    fn an_absolute_uri_becomes_its_path_even_when_the_path_is_unchanged() {
        let request = http::Request::get("http://api.test/pets?x=1")
            .body(())
            .unwrap();
        let (mut parts, ()) = request.into_parts();
        let mut pairs = request_pairs(&parts, "http", host(&parts));
        pairs.set_value(2, b"other.test");
        apply_request_pairs(&mut parts, &pairs);
        assert_eq!(parts.uri, "/pets?x=1");
        assert_eq!(parts.headers["host"], "other.test");

        // Origin form and unchanged: kept as parsed.
        let pairs = request_pairs(&parts, "http", host(&parts));
        apply_request_pairs(&mut parts, &pairs);
        assert_eq!(parts.uri, "/pets?x=1");
        assert_eq!(parts.method, http::Method::GET);
    }

    #[test]
    fn edits_keep_keys_lower_case_and_the_buffer_bounded() {
        let mut pairs = Pairs::from([("X-One", "1"), ("x-two", "2"), ("x-one", "3")]);
        assert_eq!(pairs.get(b"x-ONE"), Some(&b"1"[..]));
        // Replace: the first of the name changes (longer, then shorter), the others go.
        pairs.replace(b"X-One", b"longer value");
        pairs.replace(b"x-one", b"s");
        assert_eq!(pairs, Pairs::from([("x-one", "s"), ("x-two", "2")]));
        pairs.replace(b"x-three", b"3");
        assert_eq!(pairs.position(b"x-three"), Some(2));
        assert_eq!(pairs.byte_size(), 5 + 1 + 5 + 1 + 7 + 1);
        // A value replaced over and over does not grow the map's buffer without bound.
        let big = vec![b'v'; 4096];
        for i in 0..1000 {
            pairs.replace(b"x-two", &big[..4000 + i % 96]);
        }
        assert!(pairs.bytes.len() < 2 * pairs.byte_size() + 2 * 4096);
        pairs.remove(b"X-TWO");
        assert_eq!(pairs, Pairs::from([("x-one", "s"), ("x-three", "3")]));
        assert_eq!(
            format!("{pairs:?}"),
            r#"[("x-one", "s"), ("x-three", "3")]"#
        );
    }

    #[test]
    fn a_value_added_again_and_again_is_parsed_once_it_repeats_and_then_shared() {
        let ptr = |(_, value): (HeaderName, HeaderValue)| value.as_bytes().as_ptr();
        let first = parsed(b"x-repeat-test", b"on").unwrap();
        assert_eq!(first.0.as_str(), "x-repeat-test");
        assert_eq!(first.1.as_bytes(), b"on");
        // The second time it is parsed and kept; from the third on, that one is shared.
        let kept = ptr(parsed(b"x-repeat-test", b"on").unwrap());
        assert_ne!(ptr(first), kept);
        assert_eq!(ptr(parsed(b"x-repeat-test", b"on").unwrap()), kept);
        // Another value is parsed as it comes, and does not displace the one that repeated.
        let other = parsed(b"x-repeat-test", b"off").unwrap();
        assert_eq!(other.1.as_bytes(), b"off");
        assert_eq!(ptr(parsed(b"x-repeat-test", b"on").unwrap()), kept);
        // Whatever is not valid HTTP is not a header, kept or not.
        assert!(parsed(b"x-repeat-test", b"bad\nvalue").is_none());
        assert!(parsed(b"bad name", b"on").is_none());
        assert!(parsed(b"bad name", b"on").is_none());
    }
}
