//! One worker's VM replica of a plugin instance, and the work that reaches it outside requests:
//! HTTP and gRPC callouts the plugin sent, its ticks, and shared-queue notifications.
//!
//! A replica is only ever used from its worker's thread (the mutex is uncontended; it lets the
//! worker's tasks share the replica). Every call into the VM goes through [`Replica::with`],
//! which then carries out what the plugin started during the call (its outbox): callouts are
//! sent, the tick timer is (re)started, streams that called `proxy_done` are finished.

use super::suspension::Suspension;
use crate::model::FailurePolicy;
use crate::proxywasm::shared::QueueListener;
use crate::proxywasm::{PluginConfig, PluginModule, Vm, VmError};
use crate::upstream::Upstreams;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

/// Everything needed to start a VM of one plugin instance (shared by all its replicas).
pub(super) struct Blueprint {
    pub(super) engine: wasmtime::Engine,
    pub(super) module: PluginModule,
    pub(super) config: PluginConfig,
    pub(super) failure: FailurePolicy,
    /// Traps and other failures, for `/__barbacane/metrics`.
    pub(super) failures: AtomicU64,
    /// Whether the plugin is suspended after running past its deadline.
    pub(super) suspension: Suspension,
    /// A pause on headers lets the body through to the plugin (the entry's
    /// `allow_on_headers_stop_iteration`).
    pub(super) allow_on_headers_stop_iteration: bool,
}

impl Blueprint {
    /// A VM that is only checked, not served (queue notifications go nowhere).
    pub(super) fn start(&self) -> Result<Vm, VmError> {
        Vm::start(&self.engine, &self.module, self.config.clone())
    }

    fn start_serving(&self, notifier: &Arc<QueueNotifier>) -> Result<Vm, VmError> {
        let listener: Arc<dyn QueueListener> = notifier.clone();
        Vm::start_serving(&self.engine, &self.module, self.config.clone(), listener)
    }

    pub(super) fn plugin(&self) -> &str {
        &self.config.name
    }
}

/// One worker's VM of one plugin instance.
pub(super) struct Replica {
    pub(super) blueprint: Arc<Blueprint>,
    vm: Mutex<Vm>,
    /// Bumped when the VM is replaced or its tick period changes: a tick loop of an older epoch
    /// stops.
    tick_epoch: AtomicU64,
    upstreams: Upstreams,
    /// The worker's runtime, for callouts and ticks (none outside a runtime).
    runtime: Option<tokio::runtime::Handle>,
    /// Where the VM's queue notifications go (to this replica, on its worker).
    notifier: Arc<QueueNotifier>,
    /// Notified when the root context has been deleted after its `proxy_done` (shutdown).
    root_deleted: tokio::sync::Notify,
    this: Weak<Replica>,
}

impl Replica {
    /// Starts a replica on the current worker.
    pub(super) fn start(
        blueprint: Arc<Blueprint>,
        upstreams: Upstreams,
    ) -> Result<Arc<Replica>, VmError> {
        let runtime = tokio::runtime::Handle::try_current().ok();
        // The VM may register queues while it starts, before the replica exists: the notifier
        // learns its replica right after.
        let notifier = Arc::new(QueueNotifier {
            replica: OnceLock::new(),
            runtime: runtime.clone(),
        });
        let vm = blueprint.start_serving(&notifier)?;
        let replica = Arc::new_cyclic(|this| Replica {
            blueprint,
            vm: Mutex::new(vm),
            tick_epoch: AtomicU64::new(0),
            upstreams,
            runtime,
            notifier: notifier.clone(),
            root_deleted: tokio::sync::Notify::new(),
            this: this.clone(),
        });
        let _ = notifier.replica.set(Arc::downgrade(&replica));
        // Ticks and callouts the plugin asked for while starting (a JWKS fetch in
        // `on_configure`, a refresh timer) start now, not on the first request.
        replica.with(|_| ());
        Ok(replica)
    }

    fn lock(&self) -> MutexGuard<'_, Vm> {
        // A poisoned lock only means a task panicked mid-call; the VM is replaced on failure.
        self.vm
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on the VM, then carries out what the plugin started during it.
    pub(super) fn with<R>(&self, f: impl FnOnce(&mut Vm) -> R) -> R {
        let mut vm = self.lock();
        let result = f(&mut vm);
        self.after_call(&mut vm);
        result
    }

    /// Like [`Replica::with`], but only if the VM is still the one of `generation`.
    pub(super) fn with_generation<R>(
        &self,
        generation: u64,
        f: impl FnOnce(&mut Vm) -> R,
    ) -> Option<R> {
        let mut vm = self.lock();
        if vm.generation() != generation {
            return None;
        }
        let result = f(&mut vm);
        self.after_call(&mut vm);
        Some(result)
    }

    /// Carries out what the plugin started during the last calls: most calls start nothing,
    /// so this check is inlined and the work itself kept out of the callers' code.
    #[inline]
    fn after_call(&self, vm: &mut Vm) {
        if vm.has_outbox() {
            self.carry_out(vm);
        }
    }

    /// Sends the callouts, (re)starts the tick timer and finishes the streams the plugin
    /// started or ended during the last calls, until it starts nothing more.
    #[cold]
    #[inline(never)]
    fn carry_out(&self, vm: &mut Vm) {
        while vm.has_outbox() {
            let outbox = vm.take_outbox();
            let generation = vm.generation();
            for callout in outbox.callouts {
                let (Some(runtime), Some(this)) = (&self.runtime, self.this.upgrade()) else {
                    continue;
                };
                runtime.spawn(async move {
                    let token = callout.token;
                    let outcome = this.upstreams.callout(&callout).await;
                    this.deliver(generation, |vm| vm.on_http_call_response(token, outcome));
                });
            }
            for call in outbox.grpc_calls {
                let (Some(runtime), Some(this)) = (&self.runtime, self.this.upgrade()) else {
                    continue;
                };
                runtime.spawn(async move {
                    let token = call.token;
                    let deliver =
                        |event| this.deliver(generation, |vm| vm.on_grpc_event(token, event));
                    this.upstreams.grpc(call, deliver).await;
                });
            }
            if let Some(period) = outbox.tick_period {
                let epoch = self.tick_epoch.fetch_add(1, Ordering::Relaxed) + 1;
                if let (Some(period), Some(runtime)) = (period, &self.runtime) {
                    runtime.spawn(ticks(self.this.clone(), epoch, period));
                }
            }
            for context in outbox.finished {
                if let Err(error) = vm.finish_stream(context) {
                    self.replace(vm, &error);
                    return;
                }
            }
            if outbox.root_finished {
                if let Err(error) = vm.delete_root() {
                    tracing::warn!(plugin = self.blueprint.plugin(), %error, "on_delete failed");
                }
                self.root_deleted.notify_one();
            }
        }
    }

    /// Shuts the VM down as Envoy does (the server stops, or a reload replaced this worker):
    /// `on_done` on the root context, then `on_delete` — at once, or, when `on_done` returned
    /// false, once the plugin calls `proxy_done` (its callouts and ticks keep running meanwhile)
    /// or `grace` has passed. Nothing runs on the VM afterwards but what is already in flight.
    pub(super) async fn shutdown(&self, grace: Duration) {
        let plugin = self.blueprint.plugin();
        match self.with(Vm::begin_shutdown) {
            Ok(true) => {}
            Ok(false) => {
                if tokio::time::timeout(grace, self.root_deleted.notified())
                    .await
                    .is_err()
                {
                    tracing::warn!(plugin, ?grace, "the plugin did not call proxy_done in time");
                    if let Err(error) = self.with(Vm::delete_root) {
                        tracing::warn!(plugin, %error, "on_delete failed");
                    }
                }
            }
            Err(error) => tracing::warn!(plugin, %error, "on_done failed"),
        }
        // No more ticks.
        self.tick_epoch.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs a callback that is not part of a request (callout response, tick, queue) on the VM
    /// of `generation`; a failure replaces the VM (the streams waiting on it then fail).
    fn deliver(&self, generation: u64, f: impl FnOnce(&mut Vm) -> Result<(), VmError>) {
        let mut vm = self.lock();
        if vm.generation() != generation {
            return;
        }
        let result = f(&mut vm);
        match result {
            Ok(()) => self.after_call(&mut vm),
            Err(error) => self.replace(&mut vm, &error),
        }
    }

    /// Handles a failed callback: logs and counts it, wakes the streams waiting on the VM (they
    /// cannot be resumed any more) and starts a fresh VM in its place.
    #[cold]
    pub(super) fn failed(&self, error: &VmError) {
        let mut vm = self.lock();
        self.replace(&mut vm, error);
    }

    /// [`Replica::failed`] for a VM the caller has locked; does nothing when the VM has already
    /// been replaced since `generation`.
    #[cold]
    fn replace(&self, vm: &mut Vm, error: &VmError) {
        let plugin = self.blueprint.plugin();
        self.blueprint.failures.fetch_add(1, Ordering::Relaxed);
        tracing::error!(plugin, %error, "plugin failed; replacing its VM");
        self.suspend_if_overran(error);
        vm.wake_all();
        self.tick_epoch.fetch_add(1, Ordering::Relaxed);
        match self.blueprint.start_serving(&self.notifier) {
            Ok(fresh) => {
                *vm = fresh;
                self.after_call(vm);
            }
            Err(e) => {
                tracing::error!(plugin, error = %e, "cannot restart the plugin");
                self.suspend_if_overran(&e);
            }
        }
    }

    /// Starts a suspension of the plugin when `error` is a callback that ran past its deadline.
    fn suspend_if_overran(&self, error: &VmError) {
        if !matches!(error, VmError::Deadline { .. }) {
            return;
        }
        if let Some(length) = self.blueprint.suspension.overran() {
            let policy = match self.blueprint.failure {
                FailurePolicy::Closed => "fail (failure: closed)",
                FailurePolicy::Open => "skip it (failure: open)",
            };
            tracing::warn!(
                plugin = self.blueprint.plugin(),
                suspended_for = ?length,
                "plugin suspended: new requests {policy}, its ticks and queue notifications are skipped"
            );
        }
    }

    /// The failure policy of the plugin.
    pub(super) fn failure_policy(&self) -> FailurePolicy {
        self.blueprint.failure
    }
}

/// Calls `on_tick` every `period` until the replica is gone or the epoch changes. Ticks that
/// fall due while the worker is busy are skipped, not queued up.
async fn ticks(replica: Weak<Replica>, epoch: u64, period: Duration) {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        let Some(replica) = replica.upgrade() else {
            return;
        };
        if replica.tick_epoch.load(Ordering::Relaxed) != epoch {
            return;
        }
        if replica.blueprint.suspension.is_active() {
            continue;
        }
        let generation = replica.lock().generation();
        replica.deliver(generation, Vm::on_tick);
    }
}

/// Posts `on_queue_ready` to the replica's worker (the enqueue may come from any thread).
struct QueueNotifier {
    replica: OnceLock<Weak<Replica>>,
    runtime: Option<tokio::runtime::Handle>,
}

impl QueueListener for QueueNotifier {
    fn notify(&self, queue_id: u32) {
        let (Some(replica), Some(runtime)) = (self.replica.get().cloned(), &self.runtime) else {
            return;
        };
        runtime.spawn(async move {
            if let Some(replica) = replica.upgrade() {
                // The item stays queued: the next notification after the suspension finds it.
                if replica.blueprint.suspension.is_active() {
                    return;
                }
                let generation = replica.lock().generation();
                replica.deliver(generation, |vm| vm.on_queue_ready(queue_id));
            }
        });
    }
}
