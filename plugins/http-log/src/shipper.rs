//! The batching, retry and bounding of log lines on one worker, as a state machine with the
//! clock passed in (no Proxy-Wasm calls, so it is unit-tested natively); the root context feeds
//! it lines from the shared queue and carries out the sends it asks for.
//!
//! * Lines wait in a bounded buffer; when it is full the oldest line is dropped.
//! * A batch (up to `batch_size` lines, newline-delimited JSON) leaves when `batch_size` lines
//!   wait, or when the oldest waiting line has waited `flush_interval`.
//! * One batch is in flight at a time, so lines reach the collector in order. A failed batch
//!   (an answer other than 2xx, a timeout, a reset, a callout refused) is retried after
//!   `retry_backoff` doubled at each attempt (at most `retry_max_backoff`), up to
//!   `max_retries` times; then it is dropped.
//! * Once closing (the VM shuts down), every waiting line is due at once.

use std::collections::VecDeque;

/// The limits, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Lines per batch.
    pub batch_size: usize,
    /// The most lines waiting.
    pub queue_size: usize,
    /// The longest a line waits for its batch, in milliseconds.
    pub flush_interval_ms: u64,
    /// Retries of a failed batch.
    pub max_retries: u32,
    /// The first retry's wait, in milliseconds.
    pub retry_backoff_ms: u64,
    /// The longest wait between retries, in milliseconds.
    pub retry_max_backoff_ms: u64,
}

/// Where the batch in hand is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Sent; waiting for the answer to this callout.
    InFlight(u32),
    /// Failed; sent again at this time (milliseconds).
    Waiting(u64),
}

/// A batch being delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Batch {
    body: Vec<u8>,
    lines: u64,
    /// Failed attempts so far.
    failures: u32,
    state: State,
}

/// What became of a batch attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered: this many lines.
    Shipped(u64),
    /// Failed; it will be retried (this was failure number n).
    Retrying(u32),
    /// Failed for the last time: this many lines are dropped.
    Dropped(u64),
    /// The answer was not for the batch in hand (a stale callout): nothing changed.
    Ignored,
}

/// The lines of one worker and the batch in hand.
#[derive(Debug, Clone)]
pub struct Shipper {
    limits: Limits,
    /// Lines waiting, with when they arrived (milliseconds).
    waiting: VecDeque<(u64, Vec<u8>)>,
    batch: Option<Batch>,
    closing: bool,
}

impl Shipper {
    /// An empty shipper.
    pub fn new(limits: Limits) -> Shipper {
        Shipper {
            limits,
            waiting: VecDeque::new(),
            batch: None,
            closing: false,
        }
    }

    /// From now on every waiting line is due: the worker is going away.
    pub fn close(&mut self) {
        self.closing = true;
    }

    /// Nothing waits and no batch is in hand.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty() && self.batch.is_none()
    }

    /// Lines waiting (not counting the batch in hand).
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Adds a line at `now`; returns how many old lines were dropped to make room (0 or 1).
    pub fn push(&mut self, line: Vec<u8>, now: u64) -> u64 {
        let mut dropped = 0;
        while self.waiting.len() >= self.limits.queue_size.max(1) {
            self.waiting.pop_front();
            dropped += 1;
        }
        self.waiting.push_back((now, line));
        dropped
    }

    /// The body to send now, if any: a batch due for a retry, or a new batch when enough lines
    /// wait or the oldest has waited long enough. The caller sends it and reports with
    /// [`Shipper::sent`] or [`Shipper::failed`].
    pub fn due(&mut self, now: u64) -> Option<&[u8]> {
        match &self.batch {
            Some(Batch {
                state: State::InFlight(_),
                ..
            }) => return None,
            Some(Batch {
                state: State::Waiting(at),
                ..
            }) => {
                if now < *at {
                    return None;
                }
            }
            None => {
                let full = self.waiting.len() >= self.limits.batch_size;
                let stale = self.closing
                    || self.waiting.front().is_some_and(|(since, _)| {
                        now.saturating_sub(*since) >= self.limits.flush_interval_ms
                    });
                if self.waiting.is_empty() || !(full || stale) {
                    return None;
                }
                let take = self.waiting.len().min(self.limits.batch_size);
                let mut body = Vec::new();
                for (_, line) in self.waiting.drain(..take) {
                    body.extend_from_slice(&line);
                    body.push(b'\n');
                }
                self.batch = Some(Batch {
                    body,
                    lines: take as u64,
                    failures: 0,
                    // Until `sent`: a batch that is never sent is retried at once.
                    state: State::Waiting(now),
                });
            }
        }
        self.batch.as_ref().map(|b| b.body.as_slice())
    }

    /// The batch from [`Shipper::due`] went out as callout `token`.
    pub fn sent(&mut self, token: u32) {
        if let Some(batch) = &mut self.batch {
            batch.state = State::InFlight(token);
        }
    }

    /// The answer to callout `token`: `ok` when the collector took the batch (2xx).
    pub fn answered(&mut self, token: u32, ok: bool, now: u64) -> Outcome {
        match &self.batch {
            Some(Batch {
                state: State::InFlight(t),
                ..
            }) if *t == token => {}
            _ => return Outcome::Ignored,
        }
        if ok {
            let lines = self.batch.take().map_or(0, |b| b.lines);
            return Outcome::Shipped(lines);
        }
        self.failed(now)
    }

    /// The batch in hand failed (or could not be sent) at `now`.
    pub fn failed(&mut self, now: u64) -> Outcome {
        let Some(batch) = &mut self.batch else {
            return Outcome::Ignored;
        };
        batch.failures += 1;
        if batch.failures > self.limits.max_retries {
            let lines = batch.lines;
            self.batch = None;
            return Outcome::Dropped(lines);
        }
        let doublings = batch.failures.saturating_sub(1).min(32);
        let wait = self
            .limits
            .retry_backoff_ms
            .saturating_mul(1u64 << doublings)
            .min(self.limits.retry_max_backoff_ms);
        batch.state = State::Waiting(now.saturating_add(wait));
        Outcome::Retrying(batch.failures)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "test code: a failed unwrap is a failed test"
    )]
    use super::*;

    fn limits() -> Limits {
        Limits {
            batch_size: 3,
            queue_size: 5,
            flush_interval_ms: 1000,
            max_retries: 2,
            retry_backoff_ms: 100,
            retry_max_backoff_ms: 150,
        }
    }

    fn line(n: u8) -> Vec<u8> {
        vec![b'0' + n]
    }

    #[test]
    fn closing_makes_every_waiting_line_due_at_once() {
        let mut s = Shipper::new(limits());
        s.push(line(1), 0);
        assert_eq!(s.due(1), None);
        assert!(!s.is_empty());
        s.close();
        assert_eq!(s.due(1), Some(&b"1\n"[..]));
        s.sent(1);
        assert!(!s.is_empty(), "the batch is in hand until answered");
        assert_eq!(s.answered(1, true, 2), Outcome::Shipped(1));
        assert!(s.is_empty());
    }

    #[test]
    fn a_full_batch_leaves_at_once_and_a_partial_one_after_the_interval() {
        let mut s = Shipper::new(limits());
        s.push(line(1), 0);
        s.push(line(2), 10);
        assert_eq!(s.due(20), None);
        s.push(line(3), 30);
        assert_eq!(s.due(30), Some(&b"1\n2\n3\n"[..]));
        s.sent(7);
        // One batch at a time.
        s.push(line(4), 40);
        s.push(line(5), 50);
        s.push(line(6), 60);
        assert_eq!(s.due(60), None);
        assert_eq!(s.answered(7, true, 70), Outcome::Shipped(3));
        assert_eq!(s.due(70), Some(&b"4\n5\n6\n"[..]));
        s.sent(8);
        assert_eq!(s.answered(8, true, 80), Outcome::Shipped(3));
        s.push(line(7), 100);
        assert_eq!(s.due(1099), None);
        assert_eq!(s.due(1100), Some(&b"7\n"[..]));
    }

    #[test]
    fn failures_are_retried_with_backoff_then_dropped() {
        let mut s = Shipper::new(limits());
        for n in 1..=3 {
            s.push(line(n), 0);
        }
        assert!(s.due(0).is_some());
        s.sent(1);
        assert_eq!(
            s.answered(99, true, 5),
            Outcome::Ignored,
            "another callout's answer"
        );
        assert_eq!(s.answered(1, false, 10), Outcome::Retrying(1));
        assert_eq!(s.due(109), None);
        assert_eq!(s.due(110), Some(&b"1\n2\n3\n"[..]));
        s.sent(2);
        assert_eq!(s.answered(2, false, 200), Outcome::Retrying(2));
        // Doubled, but capped at 150.
        assert_eq!(s.due(349), None);
        assert!(s.due(350).is_some());
        s.sent(3);
        assert_eq!(s.answered(3, false, 400), Outcome::Dropped(3));
        assert_eq!(s.due(400), None);
    }

    #[test]
    fn a_batch_that_could_not_be_sent_counts_as_a_failure() {
        let mut s = Shipper::new(Limits {
            max_retries: 0,
            ..limits()
        });
        for n in 1..=3 {
            s.push(line(n), 0);
        }
        assert!(s.due(0).is_some());
        assert_eq!(s.failed(0), Outcome::Dropped(3));
        assert_eq!(s.failed(0), Outcome::Ignored);
    }

    #[test]
    fn the_oldest_lines_are_dropped_when_the_buffer_is_full() {
        let mut s = Shipper::new(Limits {
            batch_size: 100,
            ..limits()
        });
        let dropped: u64 = (0..8).map(|n| s.push(line(n), u64::from(n))).sum();
        assert_eq!(dropped, 3);
        assert_eq!(s.waiting(), 5);
        assert_eq!(s.due(1002), None, "the oldest kept line arrived at 3");
        assert_eq!(s.due(1003), Some(&b"3\n4\n5\n6\n7\n"[..]));
    }
}
