//! Scaffolding: `barbacane init` (a spec, a `barbacane.yaml` with one plugin and a README, which
//! `barbacane dev` serves as they are) and `barbacane plugin init` (a Rust or Go plugin that
//! builds to Wasm with one command and has a test through the real host). The templates are
//! files under `src/scaffold/`, so they read (and can be edited) as the user will see them;
//! `{{…}}` placeholders are filled in when they are written.

use std::path::{Path, PathBuf};

/// What `init` writes: (file name, contents).
const PROJECT: &[(&str, &str)] = &[
    ("api.yaml", include_str!("scaffold/project_api.yaml")),
    (
        "barbacane.yaml",
        include_str!("scaffold/project_manifest.yaml"),
    ),
    ("README.md", include_str!("scaffold/project_README.md")),
];

/// A plugin's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Rust, with the upstream `proxy-wasm` crate and `barbacane-sdk`.
    Rust,
    /// Go ≥ 1.24 (`wasip1`), with `sdk-tinygo`.
    Go,
}

/// The SDKs beside this binary's sources, when it was built from a checkout that is still
/// there: a scaffold then depends on them by path (the SDKs are not published to a registry).
fn sdk_in_checkout(lang: Lang) -> Option<PathBuf> {
    let dir = match lang {
        Lang::Rust => "sdk-rust",
        Lang::Go => "sdk-tinygo",
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    path.canonicalize().ok()
}

/// Writes plugin `name` in `lang` into `dir`; `sdk` is the SDK's directory (default: the one in
/// this binary's source checkout, else the SDK's published name). Refuses, writing nothing,
/// when a file exists or the name is not `[a-z][a-z0-9-]*`.
pub fn init_plugin(
    dir: &Path,
    name: &str,
    lang: Lang,
    sdk: Option<&Path>,
) -> Result<Vec<PathBuf>, ScaffoldError> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(ScaffoldError::BadName(name.to_string()));
    }
    let sdk = sdk.map(Path::to_path_buf).or_else(|| sdk_in_checkout(lang));
    let sdk = sdk.as_deref().map(|p| p.display().to_string());
    let fill = |text: &str| {
        let (dependency, testing, replace) = match &sdk {
            Some(path) => (
                format!("barbacane-sdk = {{ path = \"{path}\" }}"),
                format!("barbacane-sdk = {{ path = \"{path}\", features = [\"testing\"] }}"),
                format!("replace github.com/barbacane/sdk-tinygo => {path}"),
            ),
            None => (
                String::from("barbacane-sdk = \"0.1\""),
                String::from("barbacane-sdk = { version = \"0.1\", features = [\"testing\"] }"),
                String::from(
                    "// replace github.com/barbacane/sdk-tinygo => /path/to/barbacane/sdk-tinygo",
                ),
            ),
        };
        text.replace("{{sdk}}", &dependency)
            .replace("{{sdk_testing}}", &testing)
            .replace("{{go_replace}}", &replace)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{name}}", name)
    };
    let files: &[(&str, &str)] = match lang {
        Lang::Rust => &[
            ("Cargo.toml", include_str!("scaffold/rust/Cargo.toml")),
            ("plugin.toml", include_str!("scaffold/rust/plugin.toml")),
            ("schema.json", include_str!("scaffold/schema.json")),
            ("src/lib.rs", include_str!("scaffold/rust/lib.rs")),
            ("tests/e2e.rs", include_str!("scaffold/rust/e2e.rs")),
            ("README.md", include_str!("scaffold/rust/README.md")),
            (".gitignore", "/target\n"),
        ],
        Lang::Go => &[
            ("go.mod", include_str!("scaffold/go/go.mod")),
            ("main.go", include_str!("scaffold/go/main.go")),
            ("main_test.go", include_str!("scaffold/go/main_test.go")),
            ("plugin.toml", include_str!("scaffold/go/plugin.toml")),
            ("schema.json", include_str!("scaffold/schema.json")),
            ("README.md", include_str!("scaffold/go/README.md")),
            (".gitignore", "*.wasm\n"),
        ],
    };
    let filled: Vec<(&str, String)> = files.iter().map(|(n, t)| (*n, fill(t))).collect();
    let borrowed: Vec<(&str, &str)> = filled.iter().map(|(n, t)| (*n, t.as_str())).collect();
    write_all(dir, &borrowed)
}

/// Why a scaffold was not written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// A file it would write is already there: nothing is overwritten.
    #[error("{} already exists; nothing was written", .0.display())]
    Exists(PathBuf),
    /// A plugin name that would not make a crate, module or header name.
    #[error(
        "'{0}' is not a plugin name: use lowercase letters, digits and '-', starting with a letter"
    )]
    BadName(String),
    /// The directory or a file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Writes a new project into `dir` (created if needed); returns the files written. Refuses,
/// writing nothing, when any of them exists.
pub fn init_project(dir: &Path) -> Result<Vec<PathBuf>, ScaffoldError> {
    write_all(dir, PROJECT)
}

fn write_all(dir: &Path, files: &[(&str, &str)]) -> Result<Vec<PathBuf>, ScaffoldError> {
    let paths: Vec<PathBuf> = files.iter().map(|(name, _)| dir.join(name)).collect();
    if let Some(existing) = paths.iter().find(|path| path.exists()) {
        return Err(ScaffoldError::Exists(existing.clone()));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ScaffoldError::Io { path, source }
    };
    for (path, (_, text)) in paths.iter().zip(files) {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(path, text).map_err(io(path))?;
    }
    Ok(paths)
}
