//! A bound on how long a body may keep its reader waiting (a client that stops sending, an
//! upstream that stops answering): it expires once nothing has been read for its timeout.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// The idle timer of one body. It is armed at the body's first wait: a body whose frames are
/// all there when read (most small ones) costs neither a timer nor a clock read. Once armed, a
/// read costs a clock read; the timer itself moves only when it fires.
pub struct IdleTimer {
    timeout: Duration,
    armed: Option<Armed>,
}

struct Armed {
    sleep: Pin<Box<Sleep>>,
    /// When the last frame came (or the first wait began).
    last_read: Instant,
}

impl IdleTimer {
    /// A timer that expires after `timeout` without a read.
    pub fn new(timeout: Duration) -> IdleTimer {
        IdleTimer {
            timeout,
            armed: None,
        }
    }

    /// The timeout it was made with.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A frame was read.
    #[inline]
    pub fn read(&mut self) {
        if let Some(armed) = &mut self.armed {
            armed.last_read = Instant::now();
        }
    }

    /// Ready once nothing has been read for the timeout; otherwise `cx` is woken when it may be.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let timeout = self.timeout;
        // At the first wait the time counts from now: the last read was just before.
        let armed = self.armed.get_or_insert_with(|| {
            let now = Instant::now();
            Armed {
                sleep: Box::pin(tokio::time::sleep_until(now + timeout)),
                last_read: now,
            }
        });
        loop {
            ready!(armed.sleep.as_mut().poll(cx));
            let deadline = armed.last_read + timeout;
            if deadline <= Instant::now() {
                return Poll::Ready(());
            }
            armed.sleep.as_mut().reset(deadline);
        }
    }
}
