//! The client's request body as the gateway reads it: the size limit, the read timeout (a client
//! that stops sending mid-body, nginx's `client_body_timeout`), and the problem a failed read
//! becomes wherever it is noticed (body validation, the filters, the upstream request).

use crate::idle::IdleTimer;
use crate::problem::{Kind, Problem};
use crate::server::{Body, BoxError, Limits};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::error::Error;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

/// Why a request body could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The body went past the size limit.
    #[error("the request body exceeds {0} bytes")]
    TooLarge(u64),
    /// The client sent nothing for the read timeout while its body was not over.
    #[error("the client sent no request body for {0:?}")]
    Timeout(Duration),
}

impl ReadError {
    /// The problem the client gets: 413 past the size limit, 408 after the read timeout.
    pub fn problem(&self) -> Problem {
        let kind = match self {
            ReadError::TooLarge(_) => Kind::PayloadTooLarge,
            ReadError::Timeout(_) => Kind::RequestTimeout,
        };
        Problem::new(kind, self.to_string())
    }
}

/// A request body read under `limits`: past `max_body_bytes`, or after `body_read_timeout`
/// without a frame, it fails with a [`ReadError`].
pub fn limited(body: Incoming, limits: &Limits) -> Body {
    ClientBody {
        body,
        max: limits.max_body_bytes,
        left: limits.max_body_bytes,
        idle: IdleTimer::new(limits.body_read_timeout),
        failed: false,
    }
    .boxed_unsync()
}

/// The problem for a request body that could not be read, when `error` (or what it wraps,
/// e.g. a failed upstream request) is a [`ReadError`] (see [`ReadError::problem`]).
pub fn read_problem(error: &(dyn Error + 'static)) -> Option<Problem> {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(read) = error.downcast_ref::<ReadError>() {
            return Some(read.problem());
        }
        source = error.source();
    }
    None
}

struct ClientBody {
    body: Incoming,
    max: u64,
    /// Bytes the body may still carry.
    left: u64,
    idle: IdleTimer,
    /// An error was returned: the body is over.
    failed: bool,
}

impl ClientBody {
    fn fail(&mut self, error: ReadError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.failed = true;
        Poll::Ready(Some(Err(error.into())))
    }
}

impl http_body::Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            self.idle.read();
            let frame = match frame {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => return Poll::Ready(None),
            };
            if let Some(data) = frame.data_ref() {
                let size = data.len() as u64;
                if size > self.left {
                    let max = self.max;
                    return self.fail(ReadError::TooLarge(max));
                }
                self.left -= size;
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        ready!(self.idle.poll_expired(cx));
        let timeout = self.idle.timeout();
        self.fail(ReadError::Timeout(timeout))
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that wraps another, as hyper's errors wrap a failed request body.
    #[derive(Debug, thiserror::Error)]
    #[error("the request failed")]
    struct Wrapping(#[source] BoxError);

    #[test]
    fn a_read_error_is_found_under_the_errors_that_wrap_it() {
        let timeout = Wrapping(ReadError::Timeout(Duration::from_millis(300)).into());
        let problem = read_problem(&timeout).map(|p| p.into_response());
        assert_eq!(problem.map(|r| r.status().as_u16()), Some(408));
        let too_large = Wrapping(ReadError::TooLarge(8).into());
        let problem = read_problem(&too_large).map(|p| p.into_response());
        assert_eq!(problem.map(|r| r.status().as_u16()), Some(413));
        assert!(read_problem(&Wrapping("reset".into())).is_none());
    }
}
