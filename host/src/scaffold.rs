//! Project scaffolding for `barbacane init`: a spec, a `barbacane.yaml` with one plugin and a
//! README, which `barbacane dev` serves as they are. The templates are files under
//! `src/scaffold/`, so they read (and can be edited) as the user will see them.

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

/// Why a scaffold was not written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// A file it would write is already there: nothing is overwritten.
    #[error("{} already exists; nothing was written", .0.display())]
    Exists(PathBuf),
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
