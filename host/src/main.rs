//! The `barbacane` command.

/// mimalloc instead of the system allocator: the request path allocates many small, short-lived
/// objects (header maps, bodies, futures) across threads, where glibc malloc showed up at ~7% of
/// CPU in the proxy benchmark's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    barbacane::cli::main()
}
