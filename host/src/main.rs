//! The `barbacane` command.

fn main() -> std::process::ExitCode {
    barbacane::cli::main()
}
