//! Times entering Wasm synchronously (`TypedFunc::call`, as the gateway does) and with
//! `call_async` on a current-thread tokio runtime (a fiber per call, with epoch yields on),
//! both with the pooling allocator, for an export that returns at once and one that makes four
//! host calls. Prints the median over 11 runs of the time per call.

use std::time::Instant;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig, Store,
};

const MODULE: &str = r#"(module
  (import "env" "host" (func $host (param i32) (result i32)))
  (func (export "nop") (param i32) (result i32) local.get 0)
  (func (export "four_host_calls") (param i32) (result i32)
    local.get 0 call $host call $host call $host call $host))"#;

const CALLS: i32 = 200_000;
const RUNS: usize = 11;

/// A store (with the module and a linker), for `call_async` when `yields`: a callback then
/// yields its thread at each epoch tick.
fn store(yields: bool) -> (Store<()>, Linker<()>, Module) {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(
        PoolingAllocationConfig::default(),
    ));
    let engine = Engine::new(&config).expect("engine");
    let module = Module::new(&engine, wat::parse_str(MODULE).expect("wat")).expect("module");
    let mut linker = Linker::new(&engine);
    linker
        .func_wrap("env", "host", |x: i32| x.wrapping_add(1))
        .expect("host function");
    let mut store = Store::new(&engine, ());
    store.set_epoch_deadline(u64::MAX / 2);
    if yields {
        store.epoch_deadline_async_yield_and_update(1);
    }
    (store, linker, module)
}

fn median(mut nanos: Vec<f64>) -> f64 {
    nanos.sort_by(f64::total_cmp);
    nanos[nanos.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for export in ["nop", "four_host_calls"] {
        let (mut sync_store, linker, module) = store(false);
        let instance = linker
            .instantiate(&mut sync_store, &module)
            .expect("instance");
        let sync_call = instance
            .get_typed_func::<i32, i32>(&mut sync_store, export)
            .expect("export");
        let (mut async_store, linker, module) = store(true);
        let instance = runtime
            .block_on(linker.instantiate_async(&mut async_store, &module))
            .expect("instance");
        let async_call = instance
            .get_typed_func::<i32, i32>(&mut async_store, export)
            .expect("export");
        let (mut sync_runs, mut async_runs) = (Vec::new(), Vec::new());
        // Interleaved, so that both see the same machine.
        for _ in 0..RUNS {
            let start = Instant::now();
            let mut sum = 0i32;
            for i in 0..CALLS {
                sum ^= sync_call.call(&mut sync_store, i).expect("call");
            }
            std::hint::black_box(sum);
            sync_runs.push(start.elapsed().as_nanos() as f64 / f64::from(CALLS));
            let start = Instant::now();
            let sum = runtime.block_on(async {
                let mut sum = 0i32;
                for i in 0..CALLS {
                    sum ^= async_call
                        .call_async(&mut async_store, i)
                        .await
                        .expect("call");
                }
                sum
            });
            std::hint::black_box(sum);
            async_runs.push(start.elapsed().as_nanos() as f64 / f64::from(CALLS));
        }
        let (sync_ns, async_ns) = (median(sync_runs), median(async_runs));
        println!(
            "{export}: call {sync_ns:.1} ns, call_async {async_ns:.1} ns (+{:.1} ns per call)",
            async_ns - sync_ns
        );
    }
}
