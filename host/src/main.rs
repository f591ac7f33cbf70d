//! The `barbacane` command.

/// mimalloc instead of the system allocator (see `barbacane_allocator`).
#[global_allocator]
static ALLOCATOR: barbacane_allocator::Allocator = barbacane_allocator::Allocator;

fn main() -> std::process::ExitCode {
    barbacane::cli::main()
}
