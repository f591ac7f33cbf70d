//! Process-wide plugin state: shared data, shared queues and plugin-defined metrics.
//!
//! Every VM replica of every worker reaches the same state here (replicas run on different
//! threads), so each store sits behind one mutex. Shared data and queues are partitioned by
//! vm_id as in `proxy-wasm-cpp-host`; metrics by plugin name (`shared/reference/proxy-wasm-abi.md`
//! §7.9, §7.10, §7.11). Nothing here knows about wasmtime: queue notifications go through
//! [`QueueListener`], which the VM layer implements.

use hashbrown::hash_map::EntryRef;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use super::abi::Status;

/// Locks `mutex`, carrying on after a panic elsewhere: every update below leaves its store
/// consistent at each step, so a poisoned lock holds usable state.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// Shared data (§7.9)
// ---------------------------------------------------------------------------------------------

/// The most bytes of keys plus values that shared data holds for one vm_id.
pub const SHARED_DATA_LIMIT_BYTES: usize = 16 * 1024 * 1024;

/// Key/value store shared by every VM with the same vm_id, with compare-and-swap versions.
///
/// The ABI has no delete and Envoy lets the store grow without bound; here it is capped at
/// [`SHARED_DATA_LIMIT_BYTES`] per vm_id. A write that would go over the cap is refused with
/// [`Status::CasMismatch`], whatever its cas: that is the only failure the Rust SDK hands back to
/// the filter (as an `Err` it can handle) instead of panicking the guest. A retry loop sees
/// repeated mismatches; the first refusal for a vm_id is logged as a warning.
pub struct SharedData {
    inner: Mutex<SharedDataInner>,
}

/// Both maps are looked up on every shared-data call (a rate limiter makes a read and a write
/// per request), so they are hashbrown's: its hasher (foldhash, seeded per process) is several
/// times faster than std's SipHash on short keys, and `entry_ref` finds or creates an entry in
/// one lookup, copying the key only when it is new.
struct SharedDataInner {
    /// The last CAS handed out; versions are global, as in cpp-host.
    last_cas: u32,
    /// Each vm_id's data.
    vms: hashbrown::HashMap<String, VmData>,
}

#[derive(Default)]
struct VmData {
    /// Value and CAS by key. Keys are bytes, as Envoy's (any bytes, compared as they are).
    entries: hashbrown::HashMap<Vec<u8>, (Vec<u8>, u32)>,
    /// Bytes of keys plus values held.
    bytes: usize,
    /// Whether the cap warning was logged for this vm_id.
    warned: bool,
}

/// The id after `last`, skipping 0 (0 means "none" on the wire: no CAS, no queue).
fn next_nonzero(last: &mut u32) -> u32 {
    *last = last.wrapping_add(1);
    if *last == 0 {
        *last = 1;
    }
    *last
}

impl SharedData {
    fn new() -> SharedData {
        SharedData {
            inner: Mutex::new(SharedDataInner {
                last_cas: 0,
                vms: hashbrown::HashMap::default(),
            }),
        }
    }

    /// The process-wide store.
    pub fn global() -> &'static SharedData {
        static GLOBAL: OnceLock<SharedData> = OnceLock::new();
        GLOBAL.get_or_init(SharedData::new)
    }

    /// The value of `key` for `vm_id` and its current CAS; None for a missing key.
    pub fn get(&self, vm_id: &str, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        let inner = lock(&self.inner);
        inner.vms.get(vm_id)?.entries.get(key).cloned()
    }

    /// Stores `value` under `key` for `vm_id` with a fresh CAS. `cas` 0 always writes; a non-zero
    /// `cas` that differs from an existing key's is a [`Status::CasMismatch`]; a missing key is
    /// created whatever `cas`. Over the cap, [`Status::CasMismatch`] (see [`SharedData`]).
    pub fn set(&self, vm_id: &str, key: &[u8], value: Vec<u8>, cas: u32) -> Result<(), Status> {
        let mut inner = lock(&self.inner);
        let SharedDataInner { last_cas, vms } = &mut *inner;
        let vm = vms.entry_ref(vm_id).or_default();
        let entry = vm.entries.entry_ref(key);
        let old_bytes = match &entry {
            EntryRef::Occupied(o) if cas != 0 && cas != o.get().1 => {
                return Err(Status::CasMismatch);
            }
            EntryRef::Occupied(o) => key.len() + o.get().0.len(),
            EntryRef::Vacant(_) => 0,
        };
        // Computed after the write, so shrinking a value is allowed even at the cap.
        let new_total = vm.bytes - old_bytes + key.len() + value.len();
        if new_total > SHARED_DATA_LIMIT_BYTES {
            if !vm.warned {
                vm.warned = true;
                tracing::warn!(
                    vm_id,
                    limit_bytes = SHARED_DATA_LIMIT_BYTES,
                    "shared data is full for this vm_id; refusing writes with CAS_MISMATCH"
                );
            }
            return Err(Status::CasMismatch);
        }
        vm.bytes = new_total;
        entry.insert((value, next_nonzero(last_cas)));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Shared queues (§7.10)
// ---------------------------------------------------------------------------------------------

/// The most items one queue holds; beyond it an enqueue drops the oldest item.
pub const QUEUE_LIMIT_ITEMS: usize = 10_000;

/// The most bytes one queue's items hold; beyond it an enqueue drops the oldest items.
pub const QUEUE_LIMIT_BYTES: usize = 64 << 20;

/// The longest name of a shared queue or a plugin metric, and the most queues (metrics) the
/// process has: both live as long as the process, so a plugin that makes new ones in a loop
/// must not grow it without bound. A registration past them is refused.
pub const NAME_LIMIT_BYTES: usize = 1024;
/// See [`NAME_LIMIT_BYTES`].
pub const QUEUES_LIMIT: usize = 10_000;
/// See [`NAME_LIMIT_BYTES`].
pub const METRICS_LIMIT: usize = 10_000;

/// A registration refused by [`NAME_LIMIT_BYTES`], [`QUEUES_LIMIT`] or [`METRICS_LIMIT`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverLimit {
    /// A name of this many bytes.
    #[error("a name of {0} bytes is over the host's limit of {NAME_LIMIT_BYTES}")]
    Name(usize),
    /// The limit on their number, reached.
    #[error("the host holds its limit of {0} already")]
    Count(usize),
}

/// Whether a name of `len` bytes may be registered where `count` are and `limit` may be.
fn registrable(len: usize, count: usize, limit: usize) -> Result<(), OverLimit> {
    if len > NAME_LIMIT_BYTES {
        return Err(OverLimit::Name(len));
    }
    if count >= limit {
        return Err(OverLimit::Count(limit));
    }
    Ok(())
}

/// Who is told that a queue has a new item: the root context that registered it last.
pub trait QueueListener: Send + Sync {
    /// `queue_id` has one more item. Called once per enqueue, on the enqueuer's thread, with no
    /// lock held, so it may dequeue or enqueue itself.
    fn notify(&self, queue_id: u32);
}

/// FIFO queues shared by every VM, named per vm_id.
///
/// A queue keeps at most [`QUEUE_LIMIT_ITEMS`] items of [`QUEUE_LIMIT_BYTES`] in all: a consumer
/// that stops dequeuing must not grow the process without bound, so an enqueue onto a full
/// queue drops the oldest items (the producer still succeeds, as it would in Envoy) and the
/// first drop per queue is logged as a warning.
pub struct SharedQueues {
    inner: Mutex<QueuesInner>,
}

struct QueuesInner {
    /// The last id handed out; ids start at 1 (0 means "not found" on the wire).
    last_id: u32,
    /// Queue id by (vm_id, name).
    ids: HashMap<(String, String), u32>,
    queues: HashMap<u32, Queue>,
}

struct Queue {
    vm_id: String,
    name: String,
    items: VecDeque<Vec<u8>>,
    /// The bytes of `items`.
    bytes: usize,
    listener: Arc<dyn QueueListener>,
    /// Whether a dropped item was logged for this queue.
    warned: bool,
}

impl SharedQueues {
    fn new() -> SharedQueues {
        SharedQueues {
            inner: Mutex::new(QueuesInner {
                last_id: 0,
                ids: HashMap::new(),
                queues: HashMap::new(),
            }),
        }
    }

    /// The process-wide queues.
    pub fn global() -> &'static SharedQueues {
        static GLOBAL: OnceLock<SharedQueues> = OnceLock::new();
        GLOBAL.get_or_init(SharedQueues::new)
    }

    /// Creates queue `name` of `vm_id`, or reopens it keeping its items, and makes `listener`
    /// the one notified (last registrant wins). The id is non-zero and the same for every
    /// registration of (vm_id, name). A new queue past the limits is refused (see
    /// [`NAME_LIMIT_BYTES`]).
    pub fn register(
        &self,
        vm_id: &str,
        name: &str,
        listener: Arc<dyn QueueListener>,
    ) -> Result<u32, OverLimit> {
        let mut inner = lock(&self.inner);
        let key = (vm_id.to_owned(), name.to_owned());
        if let Some(&id) = inner.ids.get(&key)
            && let Some(queue) = inner.queues.get_mut(&id)
        {
            queue.listener = listener;
            return Ok(id);
        }
        registrable(name.len(), inner.queues.len(), QUEUES_LIMIT)?;
        // Ids are not reused; four billion queue names in one process is not a real case.
        let id = next_nonzero(&mut inner.last_id);
        inner.ids.insert(key, id);
        inner.queues.insert(
            id,
            Queue {
                vm_id: vm_id.to_owned(),
                name: name.to_owned(),
                items: VecDeque::new(),
                bytes: 0,
                listener,
                warned: false,
            },
        );
        Ok(id)
    }

    /// The id of queue `name` of `vm_id` (the caller turns an empty vm_id into its own), if
    /// someone registered it.
    pub fn resolve(&self, vm_id: &str, name: &str) -> Option<u32> {
        let inner = lock(&self.inner);
        inner.ids.get(&(vm_id.to_owned(), name.to_owned())).copied()
    }

    /// Appends `value` to queue `queue_id` and notifies its listener once, after the lock is
    /// released. [`Status::NotFound`] for an unknown id.
    pub fn enqueue(&self, queue_id: u32, value: Vec<u8>) -> Result<(), Status> {
        let listener = {
            let mut inner = lock(&self.inner);
            let queue = inner.queues.get_mut(&queue_id).ok_or(Status::NotFound)?;
            while queue.items.len() >= QUEUE_LIMIT_ITEMS
                || (queue.bytes + value.len() > QUEUE_LIMIT_BYTES && !queue.items.is_empty())
            {
                let dropped = queue.items.pop_front().map_or(0, |item| item.len());
                queue.bytes -= dropped;
                if !queue.warned {
                    queue.warned = true;
                    tracing::warn!(
                        vm_id = %queue.vm_id,
                        queue = %queue.name,
                        limit_items = QUEUE_LIMIT_ITEMS,
                        limit_bytes = QUEUE_LIMIT_BYTES,
                        "shared queue is full; dropping its oldest items"
                    );
                }
            }
            queue.bytes += value.len();
            queue.items.push_back(value);
            Arc::clone(&queue.listener)
        };
        listener.notify(queue_id);
        Ok(())
    }

    /// Takes the oldest item of queue `queue_id`: [`Status::Empty`] when there is none,
    /// [`Status::NotFound`] for an unknown id.
    pub fn dequeue(&self, queue_id: u32) -> Result<Vec<u8>, Status> {
        let mut inner = lock(&self.inner);
        let queue = inner.queues.get_mut(&queue_id).ok_or(Status::NotFound)?;
        let item = queue.items.pop_front().ok_or(Status::Empty)?;
        queue.bytes -= item.len();
        Ok(item)
    }
}

// ---------------------------------------------------------------------------------------------
// Plugin metrics (§7.11)
// ---------------------------------------------------------------------------------------------

/// Upper bounds of the histogram buckets (`+Inf` is implicit).
const HISTOGRAM_BOUNDS: [i64; 9] = [1, 5, 10, 50, 100, 500, 1000, 5000, 10000];

/// `proxy_metric_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Only goes up.
    Counter = 0,
    /// Goes up and down.
    Gauge = 1,
    /// Samples in buckets.
    Histogram = 2,
}

impl MetricKind {
    /// The type `proxy_define_metric` names; `None` for an unknown one.
    pub fn from_wire(kind: i32) -> Option<MetricKind> {
        match kind {
            0 => Some(MetricKind::Counter),
            1 => Some(MetricKind::Gauge),
            2 => Some(MetricKind::Histogram),
            _ => None,
        }
    }

    /// The Prometheus `# TYPE`.
    fn prometheus_type(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// One series: a plugin's metric.
struct Metric {
    plugin: String,
    name: String,
    value: MetricValue,
}

enum MetricValue {
    Counter(u64),
    /// Signed, so a filter that decrements below zero reads its own arithmetic back.
    Gauge(i64),
    Histogram {
        /// Samples per bucket (not cumulative); the last is `+Inf`.
        buckets: [u64; HISTOGRAM_BOUNDS.len() + 1],
        sum: i64,
        count: u64,
    },
}

impl MetricValue {
    fn kind(&self) -> MetricKind {
        match self {
            MetricValue::Counter(_) => MetricKind::Counter,
            MetricValue::Gauge(_) => MetricKind::Gauge,
            MetricValue::Histogram { .. } => MetricKind::Histogram,
        }
    }
}

/// Metrics that plugins define (`proxy_define_metric`), shared by every replica on every worker
/// and exported in Prometheus text as `barbacane_plugin_<name>{plugin="<plugin>"}`.
///
/// Ids carry the metric type in their low 2 bits, as in Envoy: `id = (index << 2) | type` with
/// `index` from 1, so no id is 0.
pub struct PluginMetrics {
    inner: Mutex<MetricsInner>,
}

struct MetricsInner {
    /// Series in definition order; the series of index `i` is at `i - 1`.
    metrics: Vec<Metric>,
    /// Id by (plugin, name, type).
    ids: HashMap<(String, String, MetricKind), u32>,
}

impl MetricsInner {
    /// The series `id` names, if its index and type bits match one.
    fn metric_mut(&mut self, id: u32) -> Option<&mut Metric> {
        let index = usize::try_from(id >> 2).ok()?;
        let metric = self.metrics.get_mut(index.checked_sub(1)?)?;
        (metric.value.kind() as u32 == id & 0b11).then_some(metric)
    }
}

impl PluginMetrics {
    fn new() -> PluginMetrics {
        PluginMetrics {
            inner: Mutex::new(MetricsInner {
                metrics: Vec::new(),
                ids: HashMap::new(),
            }),
        }
    }

    /// The process-wide metrics.
    pub fn global() -> &'static PluginMetrics {
        static GLOBAL: OnceLock<PluginMetrics> = OnceLock::new();
        GLOBAL.get_or_init(PluginMetrics::new)
    }

    /// The id of metric `name` of type `kind` for `plugin`, defining it on first use; the same
    /// (plugin, name, kind) always gets the same id. A new metric past the limits is refused
    /// (see [`NAME_LIMIT_BYTES`]).
    pub fn define(&self, plugin: &str, kind: MetricKind, name: &str) -> Result<u32, OverLimit> {
        let mut inner = lock(&self.inner);
        let key = (plugin.to_owned(), name.to_owned(), kind);
        if let Some(&id) = inner.ids.get(&key) {
            return Ok(id);
        }
        registrable(name.len(), inner.metrics.len(), METRICS_LIMIT)?;
        // Ids are `index << 2 | type`, index from 1: within u32, as METRICS_LIMIT is far below
        // 2^30.
        let id = ((inner.metrics.len() + 1) as u32) << 2 | kind as u32;
        let value = match kind {
            MetricKind::Counter => MetricValue::Counter(0),
            MetricKind::Gauge => MetricValue::Gauge(0),
            MetricKind::Histogram => MetricValue::Histogram {
                buckets: [0; HISTOGRAM_BOUNDS.len() + 1],
                sum: 0,
                count: 0,
            },
        };
        inner.metrics.push(Metric {
            plugin: plugin.to_owned(),
            name: name.to_owned(),
            value,
        });
        inner.ids.insert(key, id);
        Ok(id)
    }

    /// `proxy_increment_metric`: a counter adds `delta` > 0 ([`Status::BadArgument`] otherwise);
    /// a gauge adds `delta`, negative included; a histogram is [`Status::BadArgument`].
    /// [`Status::NotFound`] for an unknown id.
    pub fn increment(&self, id: u32, delta: i64) -> Result<(), Status> {
        let mut inner = lock(&self.inner);
        let metric = inner.metric_mut(id).ok_or(Status::NotFound)?;
        match &mut metric.value {
            MetricValue::Counter(value) => {
                let delta = u64::try_from(delta)
                    .ok()
                    .filter(|d| *d > 0)
                    .ok_or(Status::BadArgument)?;
                *value = value.saturating_add(delta);
            }
            MetricValue::Gauge(value) => *value = value.saturating_add(delta),
            MetricValue::Histogram { .. } => return Err(Status::BadArgument),
        }
        Ok(())
    }

    /// `proxy_record_metric`: a counter adds `value`, a gauge is set to it, a histogram records
    /// it as a sample. [`Status::NotFound`] for an unknown id. A negative value cannot move a
    /// counter down and is ignored: the Rust SDK panics the guest on any status but OK and
    /// NOT_FOUND here.
    pub fn record(&self, id: u32, value: i64) -> Result<(), Status> {
        let mut inner = lock(&self.inner);
        let metric = inner.metric_mut(id).ok_or(Status::NotFound)?;
        match &mut metric.value {
            MetricValue::Counter(total) => {
                if let Ok(add) = u64::try_from(value) {
                    *total = total.saturating_add(add);
                }
            }
            MetricValue::Gauge(current) => *current = value,
            MetricValue::Histogram {
                buckets,
                sum,
                count,
            } => {
                let bucket = HISTOGRAM_BOUNDS
                    .iter()
                    .position(|bound| value <= *bound)
                    .unwrap_or(HISTOGRAM_BOUNDS.len());
                buckets[bucket] += 1;
                *sum = sum.saturating_add(value);
                *count += 1;
            }
        }
        Ok(())
    }

    /// `proxy_get_metric`: the value of a counter or gauge (a negative gauge reads as its two's
    /// complement, the same 64 bits the guest wrote). [`Status::BadArgument`] for a histogram,
    /// [`Status::NotFound`] for an unknown id.
    pub fn get(&self, id: u32) -> Result<u64, Status> {
        let mut inner = lock(&self.inner);
        let metric = inner.metric_mut(id).ok_or(Status::NotFound)?;
        match metric.value {
            MetricValue::Counter(value) => Ok(value),
            MetricValue::Gauge(value) => Ok(value as u64),
            MetricValue::Histogram { .. } => Err(Status::BadArgument),
        }
    }

    /// Appends every series in Prometheus text format to `out`, families sorted by name, one
    /// `# TYPE` line per family. Names map to `barbacane_plugin_<name>` with every character
    /// outside `[a-zA-Z0-9_]` turned into `_`. Should two types land on one family name (the
    /// same name defined as a counter and a gauge), the later-defined type's series go under
    /// `<family>_<type>` so the exposition stays valid.
    pub fn render_prometheus(&self, out: &mut String) {
        let inner = lock(&self.inner);
        // The type of each family is that of its first-defined series.
        let mut family_kind: HashMap<String, MetricKind> = HashMap::new();
        let mut families: BTreeMap<String, (MetricKind, Vec<&Metric>)> = BTreeMap::new();
        for metric in &inner.metrics {
            let kind = metric.value.kind();
            let base = family_name(&metric.name);
            let first_kind = *family_kind.entry(base.clone()).or_insert(kind);
            let family = if first_kind == kind {
                base
            } else {
                format!("{base}_{}", kind.prometheus_type())
            };
            families
                .entry(family)
                .or_insert_with(|| (kind, Vec::new()))
                .1
                .push(metric);
        }
        for (family, (kind, metrics)) in &mut families {
            let _ = writeln!(out, "# TYPE {family} {}", kind.prometheus_type());
            metrics.sort_by(|a, b| a.plugin.cmp(&b.plugin));
            for metric in metrics.iter() {
                render_series(out, family, metric);
            }
        }
    }
}

/// One series' sample lines. Writing to a `String` cannot fail.
fn render_series(out: &mut String, family: &str, metric: &Metric) {
    let plugin = escape_label(&metric.plugin);
    match &metric.value {
        MetricValue::Counter(value) => {
            let _ = writeln!(out, "{family}{{plugin=\"{plugin}\"}} {value}");
        }
        MetricValue::Gauge(value) => {
            let _ = writeln!(out, "{family}{{plugin=\"{plugin}\"}} {value}");
        }
        MetricValue::Histogram {
            buckets,
            sum,
            count,
        } => {
            let mut cumulative = 0u64;
            for (index, samples) in buckets.iter().enumerate() {
                cumulative += samples;
                let le = HISTOGRAM_BOUNDS
                    .get(index)
                    .map_or_else(|| String::from("+Inf"), i64::to_string);
                let _ = writeln!(
                    out,
                    "{family}_bucket{{plugin=\"{plugin}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(out, "{family}_sum{{plugin=\"{plugin}\"}} {sum}");
            let _ = writeln!(out, "{family}_count{{plugin=\"{plugin}\"}} {count}");
        }
    }
}

/// `barbacane_plugin_<name>` with every character outside `[a-zA-Z0-9_]` turned into `_`.
fn family_name(name: &str) -> String {
    let sanitized: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("barbacane_plugin_{sanitized}")
}

/// A Prometheus label value: `\`, `"` and newline escaped.
fn escape_label(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    // ----- shared data -----

    #[test]
    fn shared_data_get_of_a_missing_key_is_none() {
        let data = SharedData::global();
        assert_eq!(data.get("test-sd-missing", b"k"), None);
        data.set("test-sd-missing", b"other", b"v".to_vec(), 0)
            .unwrap();
        assert_eq!(data.get("test-sd-missing", b"k"), None);
    }

    #[test]
    fn shared_data_set_then_get_returns_the_value_and_a_nonzero_cas() {
        let data = SharedData::global();
        data.set("test-sd-basic", b"k", b"v1".to_vec(), 0).unwrap();
        let (value, cas) = data.get("test-sd-basic", b"k").unwrap();
        assert_eq!(value, b"v1");
        assert_ne!(cas, 0);
    }

    #[test]
    fn shared_data_each_set_gets_a_fresh_cas() {
        let data = SharedData::global();
        data.set("test-sd-fresh", b"k", b"1".to_vec(), 0).unwrap();
        let (_, first) = data.get("test-sd-fresh", b"k").unwrap();
        data.set("test-sd-fresh", b"k", b"2".to_vec(), first)
            .unwrap();
        let (value, second) = data.get("test-sd-fresh", b"k").unwrap();
        assert_eq!(value, b"2");
        assert_ne!(second, 0);
        assert_ne!(second, first);
    }

    #[test]
    fn shared_data_stale_cas_is_a_mismatch_and_leaves_the_value() {
        let data = SharedData::global();
        data.set("test-sd-cas", b"k", b"1".to_vec(), 0).unwrap();
        let (_, stale) = data.get("test-sd-cas", b"k").unwrap();
        data.set("test-sd-cas", b"k", b"2".to_vec(), stale).unwrap();
        assert_eq!(
            data.set("test-sd-cas", b"k", b"3".to_vec(), stale),
            Err(Status::CasMismatch)
        );
        assert_eq!(data.get("test-sd-cas", b"k").unwrap().0, b"2");
    }

    #[test]
    fn shared_data_cas_zero_always_overwrites() {
        let data = SharedData::global();
        data.set("test-sd-zero", b"k", b"1".to_vec(), 0).unwrap();
        data.set("test-sd-zero", b"k", b"2".to_vec(), 0).unwrap();
        assert_eq!(data.get("test-sd-zero", b"k").unwrap().0, b"2");
    }

    #[test]
    fn shared_data_missing_key_is_created_whatever_the_cas() {
        let data = SharedData::global();
        data.set("test-sd-create", b"k", b"v".to_vec(), 12345)
            .unwrap();
        assert_eq!(data.get("test-sd-create", b"k").unwrap().0, b"v");
    }

    #[test]
    fn shared_data_is_partitioned_by_vm_id() {
        let data = SharedData::global();
        data.set("test-sd-vm-a", b"k", b"a".to_vec(), 0).unwrap();
        data.set("test-sd-vm-b", b"k", b"b".to_vec(), 0).unwrap();
        assert_eq!(data.get("test-sd-vm-a", b"k").unwrap().0, b"a");
        assert_eq!(data.get("test-sd-vm-b", b"k").unwrap().0, b"b");
    }

    #[test]
    fn shared_data_over_the_cap_is_refused_with_cas_mismatch() {
        let data = SharedData::global();
        let vm = "test-sd-cap";
        let big = vec![0u8; SHARED_DATA_LIMIT_BYTES - 10];
        data.set(vm, b"big", big, 0).unwrap();
        // "big" + 7 bytes = limit: exactly at the cap is allowed.
        data.set(vm, b"small", vec![1; 2], 0).unwrap();
        assert_eq!(
            data.set(vm, b"more", vec![1; 1], 0),
            Err(Status::CasMismatch)
        );
        assert_eq!(
            data.set(vm, b"more", vec![1; 1], 99),
            Err(Status::CasMismatch)
        );
        assert_eq!(data.get(vm, b"more"), None);
        // Growing an existing key is refused too; shrinking one is allowed and frees room.
        let (_, cas) = data.get(vm, b"small").unwrap();
        assert_eq!(
            data.set(vm, b"small", vec![1; 3], cas),
            Err(Status::CasMismatch)
        );
        data.set(vm, b"big", vec![0u8; 10], 0).unwrap();
        data.set(vm, b"more", vec![1; 1], 0).unwrap();
        // Other vm_ids are not affected.
        data.set("test-sd-cap-other", b"k", vec![1; 100], 0)
            .unwrap();
    }

    // ----- shared queues -----

    /// Counts notifications per queue id.
    #[derive(Default)]
    struct Recorder {
        notified: Mutex<Vec<u32>>,
    }

    impl QueueListener for Recorder {
        fn notify(&self, queue_id: u32) {
            self.notified.lock().unwrap().push(queue_id);
        }
    }

    #[test]
    fn queue_ids_are_nonzero_and_stable() {
        let queues = SharedQueues::global();
        let listener = Arc::new(Recorder::default());
        let a = queues
            .register("test-q-ids", "a", listener.clone())
            .unwrap();
        let b = queues
            .register("test-q-ids", "b", listener.clone())
            .unwrap();
        let a_other_vm = queues
            .register("test-q-ids-2", "a", listener.clone())
            .unwrap();
        assert_ne!(a, 0);
        assert_ne!(b, 0);
        assert_ne!(a, b);
        assert_ne!(a, a_other_vm);
        assert_eq!(queues.register("test-q-ids", "a", listener), Ok(a));
        assert_eq!(queues.resolve("test-q-ids", "a"), Some(a));
        assert_eq!(queues.resolve("test-q-ids", "b"), Some(b));
        assert_eq!(queues.resolve("test-q-ids", "nope"), None);
        assert_eq!(queues.resolve("test-q-ids-none", "a"), None);
    }

    #[test]
    fn queue_is_fifo_then_empty() {
        let queues = SharedQueues::global();
        let id = queues
            .register("test-q-fifo", "q", Arc::new(Recorder::default()))
            .unwrap();
        assert_eq!(queues.dequeue(id), Err(Status::Empty));
        queues.enqueue(id, b"1".to_vec()).unwrap();
        queues.enqueue(id, b"2".to_vec()).unwrap();
        assert_eq!(queues.dequeue(id), Ok(b"1".to_vec()));
        assert_eq!(queues.dequeue(id), Ok(b"2".to_vec()));
        assert_eq!(queues.dequeue(id), Err(Status::Empty));
    }

    #[test]
    fn queue_unknown_id_is_not_found() {
        let queues = SharedQueues::global();
        assert_eq!(
            queues.enqueue(u32::MAX, b"x".to_vec()),
            Err(Status::NotFound)
        );
        assert_eq!(queues.dequeue(u32::MAX), Err(Status::NotFound));
        assert_eq!(queues.enqueue(0, b"x".to_vec()), Err(Status::NotFound));
    }

    #[test]
    fn queue_last_registrant_is_notified_once_per_enqueue() {
        let queues = SharedQueues::global();
        let first = Arc::new(Recorder::default());
        let second = Arc::new(Recorder::default());
        let id = queues
            .register("test-q-notify", "q", first.clone())
            .unwrap();
        queues.enqueue(id, b"1".to_vec()).unwrap();
        assert_eq!(*first.notified.lock().unwrap(), vec![id]);

        // Reopening keeps the item and moves notifications to the new registrant.
        assert_eq!(
            queues.register("test-q-notify", "q", second.clone()),
            Ok(id)
        );
        queues.enqueue(id, b"2".to_vec()).unwrap();
        queues.enqueue(id, b"3".to_vec()).unwrap();
        assert_eq!(*first.notified.lock().unwrap(), vec![id]);
        assert_eq!(*second.notified.lock().unwrap(), vec![id, id]);
        assert_eq!(queues.dequeue(id), Ok(b"1".to_vec()));
    }

    /// Dequeues from inside `notify`: proves the queue lock is released before notifying.
    struct Draining {
        drained: Mutex<Vec<Vec<u8>>>,
        calls: AtomicUsize,
    }

    impl QueueListener for Draining {
        fn notify(&self, queue_id: u32) {
            self.calls.fetch_add(1, Ordering::SeqCst);
            while let Ok(item) = SharedQueues::global().dequeue(queue_id) {
                self.drained.lock().unwrap().push(item);
            }
        }
    }

    #[test]
    fn queue_listener_may_dequeue_while_notified() {
        let queues = SharedQueues::global();
        let listener = Arc::new(Draining {
            drained: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
        });
        let id = queues
            .register("test-q-reentrant", "q", listener.clone())
            .unwrap();
        queues.enqueue(id, b"a".to_vec()).unwrap();
        queues.enqueue(id, b"b".to_vec()).unwrap();
        assert_eq!(listener.calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            *listener.drained.lock().unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
    }

    #[test]
    fn queue_over_the_item_limit_drops_the_oldest() {
        let queues = SharedQueues::global();
        let listener = Arc::new(Recorder::default());
        let id = queues
            .register("test-q-limit", "q", listener.clone())
            .unwrap();
        for i in 0..=QUEUE_LIMIT_ITEMS {
            queues.enqueue(id, i.to_string().into_bytes()).unwrap();
        }
        assert_eq!(
            listener.notified.lock().unwrap().len(),
            QUEUE_LIMIT_ITEMS + 1
        );
        // Item 0 was dropped; item 1 is now the oldest.
        assert_eq!(queues.dequeue(id), Ok(b"1".to_vec()));
        let mut left = 0;
        while queues.dequeue(id).is_ok() {
            left += 1;
        }
        assert_eq!(left, QUEUE_LIMIT_ITEMS - 1);
    }

    #[test]
    fn queue_over_the_byte_limit_drops_the_oldest() {
        let queues = SharedQueues::global();
        let id = queues
            .register("test-q-bytes", "q", Arc::new(Recorder::default()))
            .unwrap();
        let quarter = QUEUE_LIMIT_BYTES / 4;
        for i in 0..6u8 {
            queues.enqueue(id, vec![i; quarter]).unwrap();
        }
        // Items 0 and 1 were dropped; 2 to 5 fill the queue.
        for i in 2..6u8 {
            assert_eq!(queues.dequeue(id), Ok(vec![i; quarter]));
        }
        assert_eq!(queues.dequeue(id), Err(Status::Empty));
    }

    // ----- metrics -----

    #[test]
    fn metric_ids_carry_the_type_and_are_stable() {
        let metrics = PluginMetrics::global();
        let counter = metrics
            .define("test-m-ids", MetricKind::Counter, "requests")
            .unwrap();
        let gauge = metrics
            .define("test-m-ids", MetricKind::Gauge, "in_flight")
            .unwrap();
        let histogram = metrics
            .define("test-m-ids", MetricKind::Histogram, "latency")
            .unwrap();
        assert_ne!(counter, 0);
        assert_eq!(counter & 0b11, 0);
        assert_eq!(gauge & 0b11, 1);
        assert_eq!(histogram & 0b11, 2);
        assert_eq!(
            metrics.define("test-m-ids", MetricKind::Counter, "requests"),
            Ok(counter)
        );
        // Another plugin, or another type under the same name, is another series.
        assert_ne!(
            metrics
                .define("test-m-ids-2", MetricKind::Counter, "requests")
                .unwrap(),
            counter
        );
        assert_ne!(
            metrics
                .define("test-m-ids", MetricKind::Gauge, "requests")
                .unwrap(),
            counter
        );
    }

    #[test]
    fn metric_types_are_the_abis_three() {
        assert_eq!(MetricKind::from_wire(0), Some(MetricKind::Counter));
        assert_eq!(MetricKind::from_wire(2), Some(MetricKind::Histogram));
        assert_eq!(MetricKind::from_wire(3), None);
        assert_eq!(MetricKind::from_wire(-1), None);
    }

    #[test]
    fn metrics_and_queues_past_the_limits_are_refused() {
        let long = "x".repeat(NAME_LIMIT_BYTES + 1);
        let counter = MetricKind::Counter;
        let metrics = PluginMetrics::global();
        let refused = metrics.define("test-m-limits", counter, &long);
        assert_eq!(refused, Err(OverLimit::Name(NAME_LIMIT_BYTES + 1)));
        let queues = SharedQueues::global();
        let listener = Arc::new(Recorder::default());
        let refused = queues.register("test-q-limits", &long, listener.clone());
        assert_eq!(refused, Err(OverLimit::Name(NAME_LIMIT_BYTES + 1)));
        assert_eq!(
            registrable(1, QUEUES_LIMIT, QUEUES_LIMIT),
            Err(OverLimit::Count(QUEUES_LIMIT))
        );
        // A name at the limit, and one registered before, still are.
        let at_limit = "x".repeat(NAME_LIMIT_BYTES);
        let id = metrics.define("test-m-limits", counter, &at_limit).unwrap();
        assert_eq!(metrics.define("test-m-limits", counter, &at_limit), Ok(id));
        assert!(
            queues
                .register("test-q-limits", &at_limit, listener)
                .is_ok()
        );
    }

    #[test]
    fn metric_unknown_id_is_not_found() {
        let metrics = PluginMetrics::global();
        assert_eq!(metrics.get(0), Err(Status::NotFound));
        assert_eq!(metrics.increment(!0b11_u32, 1), Err(Status::NotFound));
        assert_eq!(metrics.record(!0b11_u32, 1), Err(Status::NotFound));
        // A real index with the wrong type bits is unknown too.
        let counter = metrics
            .define("test-m-unknown", MetricKind::Counter, "c")
            .unwrap();
        assert_eq!(metrics.get(counter | 1), Err(Status::NotFound));
    }

    #[test]
    fn metric_counter_increments_and_rejects_non_positive_deltas() {
        let metrics = PluginMetrics::global();
        let id = metrics
            .define("test-m-counter", MetricKind::Counter, "c")
            .unwrap();
        metrics.increment(id, 3).unwrap();
        metrics.record(id, 2).unwrap();
        assert_eq!(metrics.increment(id, 0), Err(Status::BadArgument));
        assert_eq!(metrics.increment(id, -1), Err(Status::BadArgument));
        metrics.record(id, -5).unwrap();
        assert_eq!(metrics.get(id), Ok(5));
    }

    #[test]
    fn metric_gauge_adds_and_sets() {
        let metrics = PluginMetrics::global();
        let id = metrics
            .define("test-m-gauge", MetricKind::Gauge, "g")
            .unwrap();
        metrics.increment(id, 5).unwrap();
        metrics.increment(id, -2).unwrap();
        assert_eq!(metrics.get(id), Ok(3));
        metrics.record(id, 10).unwrap();
        assert_eq!(metrics.get(id), Ok(10));
        metrics.record(id, -1).unwrap();
        assert_eq!(metrics.get(id).map(|v| v as i64), Ok(-1));
    }

    #[test]
    fn metric_histogram_records_but_cannot_be_read_or_incremented() {
        let metrics = PluginMetrics::global();
        let id = metrics
            .define("test-m-histogram", MetricKind::Histogram, "h")
            .unwrap();
        metrics.record(id, 7).unwrap();
        assert_eq!(metrics.get(id), Err(Status::BadArgument));
        assert_eq!(metrics.increment(id, 1), Err(Status::BadArgument));
    }

    #[test]
    fn metrics_render_as_prometheus_text() {
        let metrics = PluginMetrics::global();
        let plugin = "test-m-render \"q\"\\\n";
        let label = "plugin=\"test-m-render \\\"q\\\"\\\\\\n\"";
        let counter = metrics
            .define(plugin, MetricKind::Counter, "render.requests-total")
            .unwrap();
        let gauge = metrics
            .define(plugin, MetricKind::Gauge, "render_in_flight")
            .unwrap();
        let histogram = metrics
            .define(plugin, MetricKind::Histogram, "render_latency")
            .unwrap();
        metrics.increment(counter, 4).unwrap();
        metrics.record(gauge, -3).unwrap();
        for sample in [1, 3, 20_000] {
            metrics.record(histogram, sample).unwrap();
        }
        let mut out = String::new();
        metrics.render_prometheus(&mut out);
        let lines: Vec<&str> = out.lines().collect();
        let expected = [
            String::from("# TYPE barbacane_plugin_render_requests_total counter"),
            format!("barbacane_plugin_render_requests_total{{{label}}} 4"),
            String::from("# TYPE barbacane_plugin_render_in_flight gauge"),
            format!("barbacane_plugin_render_in_flight{{{label}}} -3"),
            String::from("# TYPE barbacane_plugin_render_latency histogram"),
            format!("barbacane_plugin_render_latency_bucket{{{label},le=\"1\"}} 1"),
            format!("barbacane_plugin_render_latency_bucket{{{label},le=\"5\"}} 2"),
            format!("barbacane_plugin_render_latency_bucket{{{label},le=\"10000\"}} 2"),
            format!("barbacane_plugin_render_latency_bucket{{{label},le=\"+Inf\"}} 3"),
            format!("barbacane_plugin_render_latency_sum{{{label}}} 20004"),
            format!("barbacane_plugin_render_latency_count{{{label}}} 3"),
        ];
        for line in &expected {
            assert!(
                lines.contains(&line.as_str()),
                "missing {line:?} in:\n{out}"
            );
        }
        for family in [
            "barbacane_plugin_render_requests_total",
            "barbacane_plugin_render_in_flight",
            "barbacane_plugin_render_latency",
        ] {
            let type_lines = lines
                .iter()
                .filter(|l| l.starts_with(&format!("# TYPE {family} ")))
                .count();
            assert_eq!(type_lines, 1, "{family}");
        }
    }

    #[test]
    fn metrics_render_one_type_line_per_family_across_plugins() {
        let metrics = PluginMetrics::global();
        let a = metrics
            .define("test-m-family-a", MetricKind::Counter, "family_shared")
            .unwrap();
        let b = metrics
            .define("test-m-family-b", MetricKind::Counter, "family_shared")
            .unwrap();
        metrics.increment(a, 1).unwrap();
        metrics.increment(b, 2).unwrap();
        // The same name as a gauge gets its own family.
        metrics
            .define("test-m-family-a", MetricKind::Gauge, "family_shared")
            .unwrap();
        let mut out = String::new();
        metrics.render_prometheus(&mut out);
        let lines: Vec<&str> = out.lines().collect();
        let type_line = "# TYPE barbacane_plugin_family_shared counter";
        assert_eq!(
            lines.iter().filter(|l| **l == type_line).count(),
            1,
            "{out}"
        );
        assert!(lines.contains(&"barbacane_plugin_family_shared{plugin=\"test-m-family-a\"} 1"));
        assert!(lines.contains(&"barbacane_plugin_family_shared{plugin=\"test-m-family-b\"} 2"));
        assert!(lines.contains(&"# TYPE barbacane_plugin_family_shared_gauge gauge"));
        assert!(
            lines.contains(&"barbacane_plugin_family_shared_gauge{plugin=\"test-m-family-a\"} 0")
        );
    }
}
