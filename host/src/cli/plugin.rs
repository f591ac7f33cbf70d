//! `barbacane plugin …`: `list` (the built-ins), `init` (a new plugin, see
//! [`crate::scaffold`]) and the OCI verbs `push`, `pull`, `sign`,
//! `verify`, `inspect` and `keygen`, on top of [`barbacane_registry`]. Registry errors exit with
//! the crate's codes (10–24) and print its hint ([`super::registry_fail`]).

use super::term::{self, Bar};
use super::{Format, registry_fail};
use barbacane_registry::{
    Error, Options, PluginManifest, PluginRef, Registry, inspect_file, keygen,
};
use clap::{Args, Subcommand};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A plugin's language, on the command line.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(super) enum Lang {
    Rust,
    Go,
}

fn init(name: &str, lang: Lang, dir: Option<PathBuf>, sdk: Option<&Path>) -> ExitCode {
    use crate::scaffold;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    let (lang, build) = match lang {
        Lang::Rust => (
            scaffold::Lang::Rust,
            "cargo build --release --target wasm32-wasip1 && cargo test",
        ),
        Lang::Go => (
            scaffold::Lang::Go,
            "GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm . && go test ./...",
        ),
    };
    match scaffold::init_plugin(&dir, name, lang, sdk) {
        Ok(files) => {
            for file in files {
                println!("created {}", file.display());
            }
            println!("build and test it:\n  cd {} && {build}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            let code = match e {
                scaffold::ScaffoldError::BadName(_) => super::exit::USAGE,
                _ => super::exit::IO,
            };
            super::fail(
                code,
                miette::miette!(
                    help = "pick a new directory and a name like my-plugin",
                    "{e}"
                ),
            )
        }
    }
}

#[derive(Subcommand)]
pub(super) enum PluginCommand {
    /// List the built-in plugins (usable by name, without barbacane.yaml).
    List {
        /// Output format (json includes each plugin's config schema).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Create a plugin (Rust or Go) that builds to Wasm with one command and has a test that
    /// drives it through the real host, with plugin.toml, a config schema and a README.
    Init {
        /// The plugin's name: lowercase letters, digits and '-'.
        name: String,
        /// Its language.
        #[arg(long, value_enum)]
        lang: Lang,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The SDK to depend on by path (default: the one in the checkout barbacane was built
        /// from, when it is still there).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Push a Proxy-Wasm module to an OCI registry (CNCF Wasm layout), optionally signing it.
    Push {
        /// The module (.wasm).
        file: PathBuf,
        /// Where: [oci://]HOST[:PORT]/REPO:TAG.
        reference: String,
        /// plugin.toml to carry in the artifact's config (with its config schema).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Sign the pushed digest with this cosign private key (password: COSIGN_PASSWORD or
        /// prompt).
        #[arg(long)]
        key: Option<PathBuf>,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Pull a plugin's module, optionally verifying its signature first.
    Pull {
        /// [oci://]HOST[:PORT]/REPO[:TAG][@sha256:HEX].
        reference: String,
        /// Where to write the module (default: the repository's last segment + .wasm).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Verify the signature with this cosign public key first (repeat for several).
        #[arg(long)]
        key: Vec<PathBuf>,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Sign a plugin's manifest digest (cosign-compatible `sha256-<hex>.sig` tag).
    Sign {
        /// [oci://]HOST[:PORT]/REPO[:TAG][@sha256:HEX].
        reference: String,
        /// The cosign private key (password: COSIGN_PASSWORD or prompt).
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Verify that a plugin is signed by one of these keys.
    Verify {
        /// [oci://]HOST[:PORT]/REPO[:TAG][@sha256:HEX].
        reference: String,
        /// A trusted cosign public key (repeat for several).
        #[arg(long, required = true)]
        key: Vec<PathBuf>,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Describe a plugin in a registry, or a local .wasm file.
    Inspect {
        /// A reference, or a .wasm file.
        target: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Generate a cosign key pair: cosign.key (encrypted) and cosign.pub.
    Keygen {
        /// Where to write the keys.
        #[arg(long, default_value = ".")]
        output_dir: PathBuf,
    },
}

/// How the verbs reach registries.
#[derive(Args)]
pub(super) struct NetArgs {
    /// Use plain HTTP for this registry (host or host:port; loopback ones always are). Repeat
    /// for several.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    insecure: Vec<String>,
}

impl NetArgs {
    fn registry(&self) -> Registry {
        Registry::new(Options {
            insecure: self.insecure.clone(),
            ..Options::default()
        })
    }
}

/// Runs a plugin verb.
pub(super) fn run(command: PluginCommand) -> ExitCode {
    let result = match command {
        PluginCommand::List { format } => return list(format),
        PluginCommand::Init {
            name,
            lang,
            dir,
            sdk_path,
        } => return init(&name, lang, dir, sdk_path.as_deref()),
        PluginCommand::Push {
            file,
            reference,
            manifest,
            key,
            net,
        } => push(&file, &reference, manifest.as_deref(), key.as_deref(), &net),
        PluginCommand::Pull {
            reference,
            output,
            key,
            net,
        } => pull(&reference, output, &key, &net),
        PluginCommand::Sign {
            reference,
            key,
            net,
        } => sign(&reference, &key, &net),
        PluginCommand::Verify {
            reference,
            key,
            net,
        } => verify(&reference, &key, &net),
        PluginCommand::Inspect {
            target,
            format,
            net,
        } => inspect(&target, format, &net),
        PluginCommand::Keygen { output_dir } => keys(&output_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => registry_fail(&e),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn read_keys(paths: &[PathBuf]) -> Result<Vec<String>, Error> {
    paths
        .iter()
        .map(|p| {
            let text = String::from_utf8(read(p)?).map_err(|_| Error::BadKey {
                reason: format!("{}: not a PEM file", p.display()),
            })?;
            barbacane_registry::key_fingerprint(&text).map_err(|e| Error::BadKey {
                reason: format!("{}: {e}", p.display()),
            })?;
            Ok(text)
        })
        .collect()
}

fn push(
    file: &Path,
    reference: &str,
    manifest: Option<&Path>,
    key: Option<&Path>,
    net: &NetArgs,
) -> Result<(), Error> {
    let reference = PluginRef::parse(reference)?;
    let wasm = read(file)?;
    barbacane_registry::check_module(&wasm, &file.display().to_string())?;
    let manifest = manifest.map(PluginManifest::load).transpose()?;
    // The key is read and decrypted before anything is pushed: a wrong password pushes nothing.
    let signing = match key {
        Some(key) => {
            let pem = read(key)?;
            let password = term::password(false)?;
            barbacane_registry::check_private_key(&pem, password.as_bytes())?;
            Some((pem, password))
        }
        None => None,
    };
    let registry = net.registry();
    let runtime = crate::oci::runtime()?;
    let pushed =
        runtime.block_on(registry.push(&wasm, &reference, manifest.as_ref(), &Bar::new()))?;
    println!("pushed {}", pushed.reference);
    println!("  manifest {}", pushed.manifest_digest);
    println!("  layer    {} ({} bytes)", pushed.layer_digest, pushed.size);
    if let Some((key, password)) = signing {
        let signed =
            runtime.block_on(registry.sign(&pushed.reference, &key, password.as_bytes()))?;
        println!("signed with key {}", signed.key_fingerprint);
    }
    Ok(())
}

fn pull(
    reference: &str,
    output: Option<PathBuf>,
    keys: &[PathBuf],
    net: &NetArgs,
) -> Result<(), Error> {
    let mut reference = PluginRef::parse(reference)?;
    let trusted = read_keys(keys)?;
    let output = output.unwrap_or_else(|| {
        let name = reference
            .repository()
            .rsplit('/')
            .next()
            .unwrap_or("plugin");
        PathBuf::from(format!("{name}.wasm"))
    });
    let registry = net.registry();
    let runtime = crate::oci::runtime()?;
    if !trusted.is_empty() {
        let verified = runtime.block_on(registry.verify(&reference, &trusted))?;
        println!(
            "verified {} (key {})",
            verified.reference, verified.key_fingerprint
        );
        reference = reference.with_digest(&verified.manifest_digest);
    }
    let pulled = runtime.block_on(registry.pull(&reference, &Bar::new()))?;
    write_atomic(&output, &pulled.bytes)?;
    println!("pulled {}", pulled.reference);
    println!(
        "  layer {} ({} bytes, {}) → {}",
        pulled.layer_digest,
        pulled.bytes.len(),
        pulled.layout.name(),
        output.display()
    );
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file beside it: never a partial file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

fn sign(reference: &str, key: &Path, net: &NetArgs) -> Result<(), Error> {
    let reference = PluginRef::parse(reference)?;
    let key = read(key)?;
    let password = term::password(false)?;
    let runtime = crate::oci::runtime()?;
    let signed = runtime.block_on(net.registry().sign(&reference, &key, password.as_bytes()))?;
    if signed.added {
        println!(
            "signed {}@{} with key {}",
            reference.repository_ref(),
            signed.manifest_digest,
            signed.key_fingerprint
        );
    } else {
        println!(
            "{}@{} was already signed with key {}",
            reference.repository_ref(),
            signed.manifest_digest,
            signed.key_fingerprint
        );
    }
    println!(
        "  signature {} ({} signature(s))",
        signed.signature_ref, signed.signatures
    );
    Ok(())
}

fn verify(reference: &str, keys: &[PathBuf], net: &NetArgs) -> Result<(), Error> {
    let reference = PluginRef::parse(reference)?;
    let trusted = read_keys(keys)?;
    let runtime = crate::oci::runtime()?;
    let verified = runtime.block_on(net.registry().verify(&reference, &trusted))?;
    println!(
        "verified {}: signed by key {}",
        verified.reference, verified.key_fingerprint
    );
    Ok(())
}

fn inspect(target: &str, format: Format, net: &NetArgs) -> Result<(), Error> {
    let path = Path::new(target);
    if path.is_file() || target.ends_with(".wasm") {
        let info = inspect_file(path)?;
        if format == Format::Json {
            print_json(&info);
            return Ok(());
        }
        println!("file:     {}", path.display());
        println!("digest:   {}", info.digest);
        println!("size:     {} bytes", info.size);
        println!("abi:      {} ({})", info.abi_marker, info.abi_version());
        // The manifest travels beside the module until it is pushed (then in the artifact).
        let beside = path.with_file_name("plugin.toml");
        if beside.is_file() {
            let text = std::fs::read_to_string(&beside).map_err(|e| Error::Io {
                path: beside.clone(),
                source: e,
            })?;
            let plugin = PluginManifest::from_toml(&text, &beside)?;
            println!(
                "plugin:   {} {} ({}) from {}",
                plugin.name,
                plugin.version,
                plugin.kind,
                beside.display()
            );
        } else {
            println!("plugin:   no plugin.toml beside the file");
        }
        print_imports(&info.imports);
        println!("exports ({}):", info.exports.len());
        for name in &info.exports {
            println!("  {name}");
        }
        return Ok(());
    }
    let reference = PluginRef::parse(target)?;
    let runtime = crate::oci::runtime()?;
    let found = runtime.block_on(net.registry().inspect(&reference, &Bar::new()))?;
    if format == Format::Json {
        print_json(&found);
        return Ok(());
    }
    println!("reference: {}", found.reference);
    println!("manifest:  {}", found.manifest_digest);
    println!("layout:    {}", found.layout.name());
    println!("layer:     {} ({})", found.layer_digest, found.media_type);
    println!("size:      {} bytes", found.module.size);
    println!(
        "abi:       {} ({})",
        found.module.abi_marker,
        found.module.abi_version()
    );
    if let Some(plugin) = &found.plugin {
        let field = |k: &str| plugin.get(k).and_then(|v| v.as_str()).unwrap_or("?");
        println!(
            "plugin:    {} {} ({})",
            field("name"),
            field("version"),
            field("kind")
        );
    }
    print_imports(&found.module.imports);
    println!("manifest JSON:");
    print_json(&found.manifest);
    Ok(())
}

fn print_imports(imports: &[barbacane_registry::module::ModuleImport]) {
    println!("imports ({}):", imports.len());
    for i in imports {
        println!("  {}.{} ({})", i.module, i.name, i.kind);
    }
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| String::from("null"))
    );
}

fn keys(dir: &Path) -> Result<(), Error> {
    let private = dir.join("cosign.key");
    let public = dir.join("cosign.pub");
    for path in [&private, &public] {
        if path.exists() {
            return Err(Error::Io {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "already exists (remove it, or pick another --output-dir)",
                ),
            });
        }
    }
    let password = term::password(true)?;
    let pair = keygen(password.as_bytes())?;
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    create_new(&private, pair.private_pem.as_bytes(), 0o600)?;
    create_new(&public, pair.public_pem.as_bytes(), 0o644)?;
    println!("Private key written to {}", private.display());
    println!("Public key written to {}", public.display());
    println!("fingerprint {}", pair.fingerprint);
    Ok(())
}

/// Creates `path` (refusing to overwrite) with `bytes` and unix permissions `mode`.
fn create_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

fn list(format: Format) -> ExitCode {
    let builtins = crate::builtins::all();
    if format == Format::Json {
        let list: Vec<serde_json::Value> = builtins
            .iter()
            .map(|b| {
                serde_json::json!({
                    "name": b.name,
                    "version": b.version,
                    "kind": b.kind.as_str(),
                    "abi": b.abi,
                    "description": b.description,
                    "capabilities": b.capabilities,
                    "schema": serde_json::from_str::<serde_json::Value>(b.schema).ok(),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_else(|_| String::from("[]"))
        );
        return ExitCode::SUCCESS;
    }
    if builtins.is_empty() {
        println!("no built-in plugins (this barbacane was built with BARBACANE_NO_BUILTINS=1)");
        return ExitCode::SUCCESS;
    }
    let width = |column: fn(&crate::builtins::Builtin) -> &str, title: &str| {
        builtins
            .iter()
            .map(|b| column(b).len())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
    };
    let name_width = width(|b| b.name, "NAME");
    let version_width = width(|b| b.version, "VERSION");
    let kind_width = width(|b| b.kind.as_str(), "KIND");
    let capabilities = |b: &crate::builtins::Builtin| match b.capabilities {
        [] => String::from("-"),
        list => list.join(","),
    };
    let capabilities_width = builtins
        .iter()
        .map(|b| capabilities(b).len())
        .chain(["CAPABILITIES".len()])
        .max()
        .unwrap_or(0);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:name_width$}  {:version_width$}  {:kind_width$}  {:capabilities_width$}  DESCRIPTION",
        "NAME", "VERSION", "KIND", "CAPABILITIES"
    );
    for b in builtins {
        let _ = writeln!(
            out,
            "{:name_width$}  {:version_width$}  {:kind_width$}  {:capabilities_width$}  {}",
            b.name,
            b.version,
            b.kind.as_str(),
            capabilities(b),
            b.description
        );
    }
    ExitCode::SUCCESS
}
