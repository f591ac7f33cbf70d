//! The local content-addressed blob cache: `<root>/blobs/sha256/<hex>`, where the root is
//! `$BARBACANE_CACHE_DIR`, else `$XDG_CACHE_HOME/barbacane`, else `~/.cache/barbacane`.
//!
//! A blob is written to a uniquely named temporary file in the same directory, checked against
//! its digest, synced, and renamed into place, so a reader never sees a partial file and several
//! processes may store the same blob at once (the last rename wins with identical bytes). Reads
//! re-hash the file and drop it when it does not match its name.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::module::sha256_digest;

/// A content-addressed cache rooted at a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// A cache rooted at `root` (blobs under `root/blobs/sha256/`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache { root: root.into() }
    }

    /// The default cache: `$BARBACANE_CACHE_DIR`, `$XDG_CACHE_HOME/barbacane` or
    /// `~/.cache/barbacane`; `None` when none of these can be determined.
    pub fn from_env() -> Option<Self> {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(dir) = var("BARBACANE_CACHE_DIR") {
            return Some(Cache::new(dir));
        }
        if let Some(dir) = var("XDG_CACHE_HOME") {
            return Some(Cache::new(PathBuf::from(dir).join("barbacane")));
        }
        var("HOME").map(|h| Cache::new(PathBuf::from(h).join(".cache").join("barbacane")))
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` (`sha256:<hex>`) lives (whether or not it is there).
    pub fn path(&self, digest: &str) -> Result<PathBuf> {
        crate::reference::check_digest(digest).map_err(|reason| Error::BadFile {
            path: self.root.clone(),
            reason,
        })?;
        let hex = &digest["sha256:".len()..];
        Ok(self.root.join("blobs").join("sha256").join(hex))
    }

    /// The blob's bytes if it is cached and intact; a corrupt entry is removed and `None` returned.
    pub fn get(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(digest)?;
        match std::fs::read(&path) {
            Ok(bytes) => {
                if sha256_digest(&bytes) == digest {
                    Ok(Some(bytes))
                } else {
                    // Not what its name says (disk corruption, manual edit): forget it.
                    let _ = std::fs::remove_file(&path);
                    Ok(None)
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    /// Stores `bytes` as blob `digest` after checking that they hash to it.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<PathBuf> {
        let path = self.path(digest)?;
        let actual = sha256_digest(bytes);
        if actual != digest {
            return Err(Error::Tampered {
                reference: path.display().to_string(),
                what: format!("blob is {actual}, expected {digest}; not cached"),
            });
        }
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
            // Already stored (content-addressed; reads re-check the hash).
            return Ok(path);
        }
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        write_atomic(&path, bytes)?;
        Ok(path)
    }
}

/// A temporary file removed on drop unless disarmed.
struct TempFile(PathBuf, bool);

impl TempFile {
    fn new(dir: &Path, stem: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(".tmp-{stem}-{}-{n}-{nanos}", std::process::id());
        TempFile(dir.join(name), true)
    }

    fn disarm(mut self) {
        self.1 = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.1 {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, synced, then renamed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = TempFile::new(&dir, &stem);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp.0)
            .map_err(|e| Error::io(&tmp.0, e))?;
        f.write_all(bytes).map_err(|e| Error::io(&tmp.0, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp.0, e))?;
    }
    std::fs::rename(&tmp.0, path).map_err(|e| Error::io(path, e))?;
    tmp.disarm();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_refuse_wrong_digest() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let data = b"some blob";
        let d = sha256_digest(data);
        assert_eq!(cache.get(&d).unwrap(), None);
        let p = cache.put(&d, data).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), data);
        assert_eq!(cache.get(&d).unwrap().as_deref(), Some(&data[..]));

        let other = sha256_digest(b"other");
        let e = cache.put(&other, data).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Tampered);
        assert!(!cache.path(&other).unwrap().exists());

        // A corrupt entry is dropped on read.
        std::fs::write(&p, b"corrupted").unwrap();
        assert_eq!(cache.get(&d).unwrap(), None);
        assert!(!p.exists());
        let leftovers: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn concurrent_puts_of_one_blob() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
        let d = sha256_digest(&data);
        std::thread::scope(|s| {
            for _ in 0..8 {
                let cache = Cache::new(dir.path());
                let (data, d) = (&data, &d);
                s.spawn(move || {
                    for _ in 0..5 {
                        cache.put(d, data).unwrap();
                        // A reader never sees a partial file.
                        let got = cache.get(d).unwrap().unwrap();
                        assert_eq!(got.len(), data.len());
                    }
                });
            }
        });
        let blob_dir = Cache::new(dir.path()).path(&d).unwrap();
        let names: Vec<_> = std::fs::read_dir(blob_dir.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "temporary files left: {names:?}");
    }
}
