//! The command line: `validate`, `compile`, `serve`, `dev`, `init`, and
//! `plugin list|push|pull|sign|verify|inspect|keygen` ([`plugin`]). Turns library results into one clear message per failure and a
//! documented exit code per failure class (see [`exit`]; registry failures exit with
//! [`barbacane_registry::ErrorKind::exit_code`], 10–24, and print its hint).

mod plugin;
mod term;

use crate::artifact::{self, ArtifactError};
use crate::compile::{self, Options};
use crate::diag::{self, Diagnostic};
use crate::gateway::Gateway;
use crate::oci;
use crate::server::{self, Config, Limits};
use clap::{Args, Parser, Subcommand, ValueEnum};
use miette::miette;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Exit codes: part of the CLI contract (also listed in the README).
pub mod exit {
    /// The spec or manifest has errors (diagnostics printed).
    pub const INVALID_INPUT: u8 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// A file cannot be read or written, or the listen address cannot be bound.
    pub const IO: u8 = 3;
    /// The artifact is not an artifact, or is truncated.
    pub const ARTIFACT_CORRUPT: u8 = 10;
    /// An artifact entry does not match its digest.
    pub const ARTIFACT_TAMPERED: u8 = 11;
    /// The artifact was written by a newer barbacane.
    pub const ARTIFACT_TOO_NEW: u8 = 12;
}

#[derive(Parser)]
#[command(
    name = "barbacane",
    version,
    about = "An API gateway compiled from OpenAPI specs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check specs and report every problem with file:line:col.
    Validate(SpecArgs),
    /// Compile specs into a sealed .bca artifact.
    Compile {
        #[command(flatten)]
        spec: SpecArgs,
        /// Where to write the artifact.
        #[arg(short, long)]
        output: PathBuf,
        /// Re-resolve oci:// plugin tags instead of using barbacane.lock's digests.
        #[arg(long)]
        update: bool,
    },
    /// Serve an artifact (or specs compiled in memory).
    Serve(ServeArgs),
    /// Serve specs for development: `serve --dev --watch` (recompiles and swaps the running
    /// configuration when a spec, the manifest, a schema or a plugin file changes).
    Dev(ServeArgs),
    /// Create a gateway project (spec, barbacane.yaml with one plugin, README) that `dev`
    /// serves as it is.
    Init {
        /// Where to create it (created if missing; existing files are never overwritten).
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Plugins: list the built-ins; push, pull, sign, verify and inspect OCI plugins; keygen.
    Plugin {
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
}

#[derive(Args)]
struct SpecArgs {
    /// OpenAPI 3.0/3.1 spec files (YAML or JSON); repeat for several.
    #[arg(long = "spec", required = true, num_args = 1..)]
    specs: Vec<PathBuf>,
    /// Project manifest (barbacane.yaml).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Development mode: allow plaintext http:// upstreams.
    #[arg(long)]
    dev: bool,
    /// Diagnostics format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Args)]
struct ServeArgs {
    /// A compiled artifact.
    #[arg(long, conflicts_with_all = ["specs", "manifest"], required_unless_present = "specs")]
    artifact: Option<PathBuf>,
    /// Spec files to compile in memory instead of an artifact.
    #[arg(long = "spec", num_args = 1..)]
    specs: Vec<PathBuf>,
    /// Project manifest, with --spec.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Development mode: detailed validation problems; plaintext upstreams allowed with --spec.
    #[arg(long)]
    dev: bool,
    /// With --spec: recompile when a file it read changes and swap the running configuration
    /// (requests in flight finish on the old one; a broken edit keeps the old one serving).
    #[arg(long, requires = "specs")]
    watch: bool,
    /// Seconds to wait for in-flight requests on SIGTERM/SIGINT.
    #[arg(long, default_value_t = 30)]
    drain_timeout: u64,
    /// Serve TLS with this PEM certificate chain (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = Limits::default().max_body_bytes)]
    max_body_size: u64,
    /// Most request headers.
    #[arg(long, default_value_t = Limits::default().max_headers)]
    max_headers: usize,
    /// Largest total size of request headers in bytes.
    #[arg(long, default_value_t = Limits::default().max_header_bytes)]
    max_header_size: usize,
    /// Longest request target (path + query) in bytes.
    #[arg(long, default_value_t = Limits::default().max_uri_bytes)]
    max_uri_length: usize,
    /// Seconds a client may send nothing while its request body is not over (then 408).
    #[arg(long, default_value_t = Limits::default().body_read_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    body_read_timeout: u64,
    /// Worker threads, each with its own listener and upstream pools (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { 0 });
        }
    };
    match cli.command {
        Command::Validate(args) => validate(&args),
        Command::Compile {
            spec,
            output,
            update,
        } => compile_to(&spec, &output, update),
        Command::Serve(args) => serve(args),
        Command::Dev(args) => {
            if args.artifact.is_some() {
                return fail(
                    exit::USAGE,
                    miette!(
                        help = "use `barbacane serve --artifact` to serve a compiled artifact",
                        "`dev` serves specs: pass --spec"
                    ),
                );
            }
            serve(ServeArgs {
                dev: true,
                watch: true,
                ..args
            })
        }
        Command::Plugin { command } => plugin::run(command),
        Command::Init { dir } => init(&dir),
    }
}

/// Reports a registry failure: the message, the hint, and the kind's exit code.
fn init(dir: &Path) -> ExitCode {
    match crate::scaffold::init_project(dir) {
        Ok(files) => {
            for file in &files {
                println!("created {}", file.display());
            }
            let at = |name: &str| dir.join(name).display().to_string();
            println!(
                "serve it, reloading on every edit:\n  barbacane dev --spec {} --manifest {} --listen 127.0.0.1:8080",
                at("api.yaml"),
                at("barbacane.yaml")
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(
            exit::IO,
            miette!(help = "pick an empty or new directory", "{e}"),
        ),
    }
}

fn registry_fail(e: &barbacane_registry::Error) -> ExitCode {
    fail(e.exit_code(), miette!(help = e.hint(), "{e}"))
}

fn validate(args: &SpecArgs) -> ExitCode {
    // No network: oci:// plugins come from barbacane.lock and the local cache, or stay unchecked.
    let resolution = match oci::resolve(
        args.manifest.as_deref(),
        oci::Mode::Offline,
        &barbacane_registry::NoProgress,
    ) {
        Ok(r) => r,
        Err(e) => return registry_fail(&e),
    };
    for (plugin, source) in &resolution.unchecked {
        eprintln!(
            "note: plugin '{plugin}' ({source}) is not pinned in barbacane.lock and cached, so its \
             middlewares were not checked; `barbacane compile` resolves it"
        );
    }
    match compile::compile_with(
        &args.specs,
        args.manifest.as_deref(),
        Options { dev: args.dev },
        resolution.modules,
    ) {
        Ok(compiled) => {
            if args.format == Format::Json {
                println!("{}", diag::to_json(&[]));
            } else {
                println!("ok: {} operations", compiled.api.operations.len());
            }
            ExitCode::SUCCESS
        }
        Err(diagnostics) => report(&diagnostics, args.format),
    }
}

fn compile_to(args: &SpecArgs, output: &Path, update: bool) -> ExitCode {
    let mut resolution = match oci::resolve(
        args.manifest.as_deref(),
        oci::Mode::Resolve { update },
        &term::Bar::new(),
    ) {
        Ok(r) => r,
        Err(e) => return registry_fail(&e),
    };
    let compiled = match compile::compile_with(
        &args.specs,
        args.manifest.as_deref(),
        Options { dev: args.dev },
        std::mem::take(&mut resolution.modules),
    ) {
        Ok(c) => c,
        Err(diagnostics) => return report(&diagnostics, args.format),
    };
    match artifact::write(output, &compiled, args.dev) {
        Ok(manifest) => {
            // The lock records what the artifact holds: written only once the artifact is.
            match resolution.write_lock() {
                Ok(Some(path)) if args.format == Format::Human => {
                    println!("pinned oci:// plugins in {}", path.display());
                }
                Ok(_) => {}
                Err(e) => return registry_fail(&e),
            }
            if args.format == Format::Json {
                println!("{}", diag::to_json(&[]));
            } else {
                println!(
                    "compiled {} operations from {} file(s) into {}",
                    manifest.routes.len(),
                    manifest.sources.len(),
                    output.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(
            exit::IO,
            miette!(
                help = "check that the output directory exists and is writable",
                "{e}"
            ),
        ),
    }
}

fn report(diagnostics: &[Diagnostic], format: Format) -> ExitCode {
    match format {
        Format::Json => println!("{}", diag::to_json(diagnostics)),
        Format::Human => {
            let mut err = std::io::stderr().lock();
            for d in diagnostics {
                let _ = writeln!(err, "{d}");
                if let Some(snippet) = snippet(d) {
                    let _ = writeln!(err, "{snippet}");
                }
                let _ = writeln!(err);
            }
            let _ = writeln!(err, "{} error(s)", diagnostics.len());
        }
    }
    ExitCode::from(exit::INVALID_INPUT)
}

/// The offending source line with a caret under the column, when the file can be read.
fn snippet(d: &Diagnostic) -> Option<String> {
    let text = std::fs::read_to_string(&d.location.file).ok()?;
    let line = text.lines().nth(d.location.line.checked_sub(1)?)?;
    let gutter = d.location.line.to_string();
    let pad = " ".repeat(gutter.len());
    let caret = " ".repeat(d.location.column.saturating_sub(1));
    Some(format!("{pad} |\n{gutter} | {line}\n{pad} | {caret}^"))
}

fn fail(code: u8, report: miette::Report) -> ExitCode {
    eprintln!("{report:?}");
    ExitCode::from(code)
}

fn serve(args: ServeArgs) -> ExitCode {
    init_logging(args.log_format);
    // With --watch: the files the configuration came from.
    let mut watched = Vec::new();
    let loaded = match &args.artifact {
        Some(path) => artifact::read(path).map_err(|e| {
            let code = match e {
                ArtifactError::Io { .. } => exit::IO,
                ArtifactError::Corrupt(_) => exit::ARTIFACT_CORRUPT,
                ArtifactError::Tampered(_) => exit::ARTIFACT_TAMPERED,
                ArtifactError::NewerFormat { .. } => exit::ARTIFACT_TOO_NEW,
            };
            (
                code,
                miette!(help = "recompile it with `barbacane compile`", "{e}"),
            )
        }),
        None => match load_specs(&args) {
            Ok((artifact, files)) => {
                watched = files;
                Ok(artifact)
            }
            Err(code) => return ExitCode::from(code),
        },
    };
    let artifact = match loaded {
        Ok(a) => a,
        Err((code, report)) => return fail(code, report),
    };
    if artifact.manifest.dev && !args.dev {
        tracing::warn!(
            "this artifact was compiled with --dev (plaintext upstreams may be allowed)"
        );
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match server::tls_config(cert, key) {
            Ok(tls) => Some(tls),
            Err(e) => {
                return fail(
                    exit::IO,
                    miette!(
                        help = "pass a PEM certificate chain and its PEM private key",
                        "{e}"
                    ),
                );
            }
        },
        _ => None,
    };
    let config = Config {
        dev: args.dev,
        limits: Limits {
            max_body_bytes: args.max_body_size,
            max_headers: args.max_headers,
            max_header_bytes: args.max_header_size,
            max_uri_bytes: args.max_uri_length,
            body_read_timeout: Duration::from_secs(args.body_read_timeout),
        },
        drain_timeout: Duration::from_secs(args.drain_timeout),
        tls,
    };
    let mut hosts: Vec<&str> = artifact
        .api
        .operations
        .iter()
        .flat_map(|op| op.servers.iter().filter_map(|s| s.host.as_deref()))
        .collect();
    hosts.sort_unstable();
    hosts.dedup();
    if !hosts.is_empty() {
        tracing::info!(
            hosts = hosts.join(", "),
            "some routes answer only these hosts (from `servers`); add a server with a relative URL such as '/' to serve them on any host"
        );
    }
    let config_for_reload = config.clone();
    let gateway = match Gateway::new(artifact, config) {
        Ok(g) => Arc::new(g),
        Err(e) => {
            return fail(
                exit::ARTIFACT_CORRUPT,
                miette!(help = "recompile the artifact", "{e}"),
            );
        }
    };
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let listeners = match server::bind(args.listen, workers) {
        Ok(l) => l,
        Err(e) => {
            return fail(
                exit::IO,
                miette!(
                    help = "pick a free address with --listen",
                    "cannot listen on {}: {e}",
                    args.listen
                ),
            );
        }
    };
    let address = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .map_or_else(|| args.listen.to_string(), |a| a.to_string());
    let signals = match server::ShutdownSignals::install() {
        Ok(s) => s,
        Err(e) => return fail(exit::IO, miette!("cannot install signal handlers: {e}")),
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Signals are awaited on a thread of their own so that workers only ever serve traffic.
    std::thread::spawn(move || {
        signals.wait();
        tracing::info!("shutting down: draining in-flight requests");
        let _ = stop.send(true);
    });
    tracing::info!(%address, workers, "serving");
    let scheme = if args.tls_cert.is_some() {
        "https"
    } else {
        "http"
    };
    println!("listening on {scheme}://{address}");
    let _ = std::io::stdout().flush();
    let (gateways, current) = tokio::sync::watch::channel(gateway);
    if args.watch {
        let config = config_for_reload;
        std::thread::spawn(move || watch_and_reload(&args, watched, config, gateways));
    }
    match server::run_workers(current, listeners, stopped) {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => fail(exit::IO, miette!("{e}")),
    }
}

/// Compiles `args.specs` in memory for `serve --spec`: the artifact and every file it came from
/// (specs, files they reference, the manifest, schema and plugin files). On failure the
/// diagnostics or the registry error are printed and the exit code returned. `oci://` plugins
/// are resolved as by `compile` (through the lock), but no lock is written.
fn load_specs(args: &ServeArgs) -> Result<(artifact::Artifact, Vec<PathBuf>), u8> {
    let resolution = oci::resolve(
        args.manifest.as_deref(),
        oci::Mode::Resolve { update: false },
        &barbacane_registry::NoProgress,
    )
    .map_err(|e| {
        eprintln!("{:?}", miette!(help = e.hint(), "{e}"));
        e.exit_code()
    })?;
    let compiled = compile::compile_with(
        &args.specs,
        args.manifest.as_deref(),
        Options { dev: args.dev },
        resolution.modules,
    )
    .map_err(|diagnostics| {
        report(&diagnostics, Format::Human);
        exit::INVALID_INPUT
    })?;
    let mut files: Vec<PathBuf> = compiled
        .sources
        .iter()
        .map(|source| PathBuf::from(&source.name))
        .collect();
    if let Some(manifest) = &args.manifest
        && let Ok((project, _)) = crate::project::load(manifest)
    {
        files.extend(project.plugins.values().filter_map(|entry| {
            let path = entry.source.strip_prefix("file:")?;
            Some(project.dir.join(path))
        }));
    }
    Ok((
        artifact::Artifact::from_compiled(&compiled, args.dev),
        files,
    ))
}

/// `serve --watch`: polls `files` (those the running configuration came from) and, when one changes,
/// recompiles and hands the new gateway to the workers. A failed compile prints its diagnostics
/// and keeps the running configuration. Runs until the process exits.
fn watch_and_reload(
    args: &ServeArgs,
    mut files: Vec<PathBuf>,
    config: Config,
    gateways: tokio::sync::watch::Sender<Arc<Gateway>>,
) {
    // Specs and the manifest are watched even when the last edit broke them.
    let watch_list = |files: &[PathBuf]| -> Vec<PathBuf> {
        files
            .iter()
            .chain(&args.specs)
            .chain(&args.manifest)
            .cloned()
            .collect()
    };
    // Of the same list as every poll: a snapshot of `files` alone differed from the first poll's
    // and made `dev` reload once at start with nothing changed.
    let mut seen = crate::watch::Snapshot::take(&watch_list(&files));
    loop {
        std::thread::sleep(crate::watch::POLL_INTERVAL);
        let watched = watch_list(&files);
        let now = crate::watch::Snapshot::take(&watched);
        if now == seen {
            continue;
        }
        // Editors write in several steps: wait until the files stop changing.
        std::thread::sleep(crate::watch::SETTLE);
        seen = crate::watch::Snapshot::take(&watched);
        let gateway = load_specs(args).and_then(|(artifact, new_files)| {
            files = new_files;
            let operations = artifact.api.operations.len();
            Gateway::new(artifact, config.clone())
                .map(|gateway| (gateway, operations))
                .map_err(|e| {
                    eprintln!("{:?}", miette!("{e}"));
                    exit::INVALID_INPUT
                })
        });
        match gateway {
            Ok((gateway, operations)) => {
                gateways.send_replace(Arc::new(gateway));
                println!("reloaded: {operations} operations");
            }
            Err(_) => eprintln!("the edit has errors; the previous configuration keeps serving"),
        }
        let _ = std::io::stdout().flush();
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: a file or a log collector would keep the escape codes.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
