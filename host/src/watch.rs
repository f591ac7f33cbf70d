//! Change detection for `serve --watch` and `dev`: a snapshot of files' modification times and
//! sizes, compared between polls. Polling (rather than inotify) works the same on every
//! filesystem, including editors that replace a file by renaming a new one over it, and a
//! project's handful of files costs nothing to stat a few times a second.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// How often the files are checked.
pub const POLL_INTERVAL: Duration = Duration::from_millis(300);

/// How long to wait after a change before reading the files, so that an editor's multi-step save
/// is seen whole.
pub const SETTLE: Duration = Duration::from_millis(100);

/// What each file looked like: `None` when it could not be read (missing, mid-rename).
#[derive(Debug, PartialEq, Eq)]
pub struct Snapshot(Vec<(PathBuf, Option<(SystemTime, u64)>)>);

impl Snapshot {
    /// The current state of `paths`.
    pub fn take(paths: &[PathBuf]) -> Snapshot {
        Snapshot(
            paths
                .iter()
                .map(|path| {
                    let seen = std::fs::metadata(path)
                        .ok()
                        .and_then(|m| Some((m.modified().ok()?, m.len())));
                    (path.clone(), seen)
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;

    #[test]
    fn a_changed_or_removed_file_changes_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("api.yaml");
        std::fs::write(&file, "a").unwrap();
        let paths = [file.clone()];
        let before = Snapshot::take(&paths);
        assert_eq!(before, Snapshot::take(&paths));
        std::fs::write(&file, "ab").unwrap();
        let grown = Snapshot::take(&paths);
        assert_ne!(before, grown);
        std::fs::remove_file(&file).unwrap();
        assert_ne!(grown, Snapshot::take(&paths));
    }
}
