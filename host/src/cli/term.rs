//! Terminal interaction for the plugin verbs: a transfer progress bar on stderr (hidden when
//! stderr is not a terminal) and key passwords (`COSIGN_PASSWORD`, as cosign reads it, else a
//! prompt on the terminal).

use barbacane_registry::{Error, Progress};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// A progress bar for registry transfers; draws nothing unless stderr is a terminal.
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    /// A bar on stderr, hidden when stderr is not a terminal.
    pub fn new() -> Self {
        let bar = if std::io::stderr().is_terminal() {
            ProgressBar::new(0)
        } else {
            ProgressBar::hidden()
        };
        Bar { bar }
    }
}

impl Progress for Bar {
    fn start(&self, what: &str, total: Option<u64>) {
        let style = match total {
            Some(_) => ProgressStyle::with_template(
                "{msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            ),
            None => ProgressStyle::with_template("{msg:12} {spinner} {bytes} {bytes_per_sec}"),
        };
        // Style and message first: setting the length draws the bar.
        if let Ok(style) = style {
            self.bar.set_style(style.progress_chars("=> "));
        }
        self.bar.set_message(what.to_string());
        self.bar.reset();
        if let Some(total) = total {
            self.bar.set_length(total);
        }
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The password of a private key: `COSIGN_PASSWORD` when set (even empty), else asked on the
/// terminal, twice when `confirm` (a new key).
pub fn password(confirm: bool) -> Result<String, Error> {
    if let Some(password) = std::env::var_os("COSIGN_PASSWORD") {
        return password.into_string().map_err(|_| Error::BadKey {
            reason: "COSIGN_PASSWORD is not valid UTF-8".to_string(),
        });
    }
    let prompt_failed = |e: std::io::Error| Error::BadKey {
        reason: format!(
            "no password: COSIGN_PASSWORD is not set and the terminal cannot be read ({e})"
        ),
    };
    let first =
        rpassword::prompt_password("Enter password for private key: ").map_err(prompt_failed)?;
    if confirm {
        let again = rpassword::prompt_password("Enter password for private key again: ")
            .map_err(prompt_failed)?;
        if again != first {
            return Err(Error::BadKey {
                reason: "the passwords do not match".to_string(),
            });
        }
    }
    Ok(first)
}
