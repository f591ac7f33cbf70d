//! The bodies of a chain's streams: each chunk through the filters that want it, in the order
//! the body flows (`flow_order`), with what a filter keeps when it pauses on a chunk and what
//! it lets go when it resumes (`Passage::next_frame`); request bodies pumped through the filters
//! to the dispatcher as they stream, once their first chunk has passed (`pump_request`);
//! response bodies pumped to the client likewise (`pump_response`); trailers; headers a filter
//! holds for the body (Envoy's `allow_on_headers_stop_iteration`); and the bodies the gateway
//! answers with (`EndsStreams`, `Counted`, `FramesBody`, `ChannelBody`).

use super::{
    Admitted, OpenStream, Passage, Stop, StreamReset, Verdict, decide, listen, map_callback,
    map_phase, settle_map, stopped, wait,
};
use crate::problem::{Kind, Problem};
use crate::proxywasm::http::Pairs;
use crate::proxywasm::properties::StreamInfo;
use crate::proxywasm::{Direction, MapType};
use crate::request_body;
use crate::server::{Body, BoxError};
use crate::upstream::ResponseStalled;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Response};
use http_body::Frame;
use http_body_util::BodyExt;
use std::collections::VecDeque;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The indices of `streams` in the order `direction` flows through them.
fn flow_order(streams: Range<usize>, direction: Direction) -> impl Iterator<Item = usize> {
    let Range { start, end } = streams;
    (start..end).map(move |i| match direction {
        Direction::Request => i,
        Direction::Response => end - 1 - (i - start),
    })
}

/// A body's next frame as it reads it: `None` at the end.
type NextFrame = Option<Result<Frame<Bytes>, BoxError>>;

/// What passed a filter that held the response headers for the body (and the filters before it
/// in the response's order), for the filters after it.
pub(super) struct Held {
    /// The filter's stream.
    holder: usize,
    passed: HeldPart,
    /// The filters before it that still keep a chunk they paused on.
    keepers: Vec<usize>,
}

impl Held {
    /// What passed the last holder, if any (`(holder, passed)`), and the filters keeping chunks.
    fn split(held: Option<Box<Held>>) -> (Option<(usize, HeldPart)>, Vec<usize>) {
        match held.map(|held| *held) {
            Some(Held {
                holder,
                passed,
                keepers,
            }) => (Some((holder, passed)), keepers),
            None => (None, Vec::new()),
        }
    }
}

enum HeldPart {
    /// The first chunk it let through; more follow unless it ended the body.
    Chunk { data: Bytes, end_of_stream: bool },
    /// The body ended with trailers: what the filters still buffered, and the trailers.
    Trailers { flushed: Bytes, trailers: HeaderMap },
}

impl HeldPart {
    /// Whether nothing passed (the holder resumed before any body came): an empty chunk that
    /// does not end the body is not a body call.
    fn is_nothing(&self) -> bool {
        matches!(self, HeldPart::Chunk { data, end_of_stream: false } if data.is_empty())
    }

    /// Adds what passed to `frames`; returns whether the body is over.
    fn into_frames(self, frames: &mut VecDeque<Frame<Bytes>>) -> bool {
        match self {
            HeldPart::Chunk {
                data,
                end_of_stream,
            } => {
                if !data.is_empty() {
                    frames.push_back(Frame::data(data));
                }
                end_of_stream
            }
            HeldPart::Trailers { flushed, trailers } => {
                if !flushed.is_empty() {
                    frames.push_back(Frame::data(flushed));
                }
                frames.push_back(Frame::trailers(trailers));
                true
            }
        }
    }
}

/// The streams of `streams` that a body flowing in `direction` reaches after stream `index`.
fn after(streams: Range<usize>, index: usize, direction: Direction) -> Range<usize> {
    match direction {
        Direction::Request => index + 1..streams.end,
        Direction::Response => streams.start..index,
    }
}

/// The streams of `0..count` that a body flowing in `direction` passes up to stream `index`,
/// that one included.
fn through(count: usize, index: usize, direction: Direction) -> Range<usize> {
    match direction {
        Direction::Request => 0..index + 1,
        Direction::Response => index..count,
    }
}

/// The streams a body flowing in `direction` passes after stream `earlier` up to stream
/// `index`, that one included.
fn between(earlier: usize, index: usize, direction: Direction) -> Range<usize> {
    match direction {
        Direction::Request => earlier + 1..index + 1,
        Direction::Response => index..earlier,
    }
}

/// The headers map of `direction`.
fn headers_map(direction: Direction) -> MapType {
    match direction {
        Direction::Request => MapType::RequestHeaders,
        Direction::Response => MapType::ResponseHeaders,
    }
}

/// What comes next while a body waits for its next frame (see [`Passage::next_frame`]).
enum Next {
    Frame(NextFrame),
    /// A filter that kept chunks resumed the stream: what it let go, once through the filters
    /// after it (`None`: another one kept it).
    Released(Option<Bytes>),
}

impl Passage {
    pub(super) fn wants_body(&self, direction: Direction) -> bool {
        self.streams.iter().any(|s| s.wants_body(direction))
    }

    /// All the streams.
    fn all(&self) -> Range<usize> {
        0..self.streams.len()
    }

    /// The response headers callback of stream `index`, whose entry lets it hold them for the
    /// body (Envoy's `allow_on_headers_stop_iteration`): when it pauses, see
    /// [`Passage::hold_for_body`].
    pub(super) async fn response_headers_or_hold(
        &self,
        index: usize,
        pairs: &mut Pairs,
        body: &mut Body,
        held: &mut Option<Box<Held>>,
    ) -> Result<(), Stop> {
        let stream = &self.streams[index];
        let (map, context) = (MapType::ResponseHeaders, stream.context);
        let step = stream.replica.with_generation(stream.generation, |vm| {
            map_callback(vm, context, map, pairs, false)
        });
        match step {
            Some(Ok(Verdict::Pause)) => {}
            Some(verdict) => return settle_map(stream, map, pairs, verdict).await,
            None => return stream.lost(Direction::Response),
        }
        self.hold_for_body(Direction::Response, index, pairs, body, held)
            .await
    }

    /// Stream `index` paused on `direction`'s headers, and its entry lets it hold them for the
    /// body (Envoy's `allow_on_headers_stop_iteration`): the body runs through it and the
    /// filters before it in `direction`'s order until it lets a chunk through (its body
    /// callback continues, or it resumes the stream); the headers then go on, with what it
    /// changed in them meanwhile, and that chunk (`held`) after them. When a filter before it
    /// held them already, what that one let through (`held` on entry) reaches it first.
    pub(super) async fn hold_for_body(
        &self,
        direction: Direction,
        index: usize,
        pairs: &mut Pairs,
        body: &mut Body,
        held: &mut Option<Box<Held>>,
    ) -> Result<(), Stop> {
        let (earlier, mut keepers) = Held::split(held.take());
        // It keeps the headers: a resume from it lets them go at once, with what it buffered.
        keepers.push(index);
        let released = match earlier {
            Some((holder, passed)) if !passed.is_nothing() => {
                let streams = between(holder, index, direction);
                self.pass_held(direction, streams, passed, &mut keepers)
                    .await?
            }
            _ => None,
        };
        let passed = match released {
            Some(passed) => passed,
            None => {
                let streams = through(self.streams.len(), index, direction);
                self.hold_until_released(direction, streams, body, &mut keepers)
                    .await?
            }
        };
        self.streams[index].take_map_back(headers_map(direction), pairs);
        *held = Some(Box::new(Held {
            holder: index,
            passed,
            keepers,
        }));
        Ok(())
    }

    /// Reads `direction`'s body through `streams` (the holder of the headers, last in the
    /// body's order, and the filters before it) until a chunk passes them all, or the trailers
    /// do.
    async fn hold_until_released(
        &self,
        direction: Direction,
        streams: Range<usize>,
        body: &mut Body,
        keepers: &mut Vec<usize>,
    ) -> Result<HeldPart, Stop> {
        loop {
            let next = self
                .next_frame(direction, streams.clone(), body, keepers)
                .await?;
            let (chunk, end_of_stream) = match next {
                Next::Released(Some(data)) => {
                    return Ok(HeldPart::Chunk {
                        data,
                        end_of_stream: false,
                    });
                }
                Next::Released(None) => continue,
                Next::Frame(None) => (Bytes::new(), true),
                Next::Frame(Some(Err(e))) => return Err(Self::unreadable(direction, &e)),
                Next::Frame(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        self.count(direction, &data);
                        (data, http_body::Body::is_end_stream(body))
                    }
                    Err(frame) => {
                        let Ok(trailers) = frame.into_trailers() else {
                            continue;
                        };
                        let (flushed, trailers) =
                            self.trailers_in(direction, streams, trailers).await?;
                        return Ok(HeldPart::Trailers { flushed, trailers });
                    }
                },
            };
            // At the end of the body a filter that pauses is waited for: the chunk comes back.
            let passed = self
                .body_chunk_in(direction, streams.clone(), chunk, end_of_stream, keepers)
                .await?;
            if let Some(data) = passed {
                return Ok(HeldPart::Chunk {
                    data,
                    end_of_stream,
                });
            }
        }
    }

    /// Counts a response body's data as the filters read it (a request body is counted as it
    /// is read from the client, see [`Counted`]).
    fn count(&self, direction: Direction, data: &Bytes) {
        if let Direction::Response = direction {
            self.info.body_sizes.add(direction, data.len());
        }
    }

    /// What a body that could not be read becomes: a request's is over the size limit (413),
    /// stalled (408) or broken (400); a response's stalled (504) or failed (502) upstream.
    #[cold]
    #[inline(never)]
    fn unreadable(direction: Direction, error: &BoxError) -> Stop {
        let problem = match direction {
            Direction::Request => request_body::read_problem(error.as_ref()).unwrap_or_else(|| {
                Problem::new(
                    Kind::Validation,
                    format!("the request body could not be read: {error}"),
                )
            }),
            Direction::Response if error.is::<ResponseStalled>() => {
                Problem::new(Kind::GatewayTimeout, error.to_string())
            }
            Direction::Response => Problem::new(
                Kind::BadGateway,
                format!("the upstream's response body failed: {error}"),
            ),
        };
        Stop::fail(problem)
    }

    /// Runs what passed a holder of `direction`'s headers through `streams`, the filters after
    /// it in the body's order (up to the next holder): what passed them all, or `None` when one
    /// keeps the chunk. Trailers always pass, with what the filters still buffered.
    async fn pass_held(
        &self,
        direction: Direction,
        streams: Range<usize>,
        passed: HeldPart,
        keepers: &mut Vec<usize>,
    ) -> Result<Option<HeldPart>, Stop> {
        if passed.is_nothing() {
            return Ok(Some(passed));
        }
        match passed {
            HeldPart::Chunk {
                data,
                end_of_stream,
            } => {
                let passed = self
                    .body_chunk_in(direction, streams, data, end_of_stream, keepers)
                    .await?;
                Ok(passed.map(|data| HeldPart::Chunk {
                    data,
                    end_of_stream,
                }))
            }
            HeldPart::Trailers { flushed, trailers } => {
                let mut data = Vec::new();
                if !flushed.is_empty() {
                    let passed = self
                        .body_chunk_in(direction, streams.clone(), flushed, false, keepers)
                        .await?;
                    data.extend_from_slice(&passed.unwrap_or_default());
                }
                let (flushed, trailers) = self.trailers_in(direction, streams, trailers).await?;
                data.extend_from_slice(&flushed);
                Ok(Some(HeldPart::Trailers {
                    flushed: Bytes::from(data),
                    trailers,
                }))
            }
        }
    }

    /// The response after a filter held its headers for the body: what passed it goes through
    /// the filters after it, then the rest of the body, if any, streams through all of them.
    pub(super) async fn after_held_response(
        self: Arc<Self>,
        mut parts: http::response::Parts,
        held: Box<Held>,
        body: Body,
    ) -> Result<Response<Body>, StreamReset> {
        // The filters may have changed the body: its length is no longer known.
        parts.headers.remove(http::header::CONTENT_LENGTH);
        let Held {
            holder,
            passed,
            mut keepers,
        } = *held;
        let streams = after(self.all(), holder, Direction::Response);
        let frames = match self
            .pass_held(Direction::Response, streams, passed, &mut keepers)
            .await
        {
            // A filter keeps the chunk: the head waits for one to pass them all.
            Ok(None) => return self.pump_response(parts, None, None, body, keepers).await,
            // (Even an empty one: the head goes at once.)
            Ok(Some(HeldPart::Chunk {
                data,
                end_of_stream: false,
            })) => {
                return self
                    .pump_response(parts, Some(data), None, body, keepers)
                    .await;
            }
            Ok(Some(part)) => {
                let mut frames = VecDeque::new();
                part.into_frames(&mut frames);
                frames
            }
            Err(stop) => return stopped(&self, stop),
        };
        let body = EndsStreams {
            body: FramesBody(frames),
            passage: Some(self),
        };
        Ok(Response::from_parts(parts, body.boxed_unsync()))
    }

    /// The body's next frame; or, while filters keep chunks they paused on (`keepers`, indices
    /// in `streams`), what one of them lets go first. As in Envoy, a filter that resumes the
    /// stream (after a callout, from a tick) has what it buffered passed on at once, and a local
    /// response or a reset from one stops the body at once, not when the next frame comes.
    async fn next_frame(
        &self,
        direction: Direction,
        streams: Range<usize>,
        body: &mut Body,
        keepers: &mut Vec<usize>,
    ) -> Result<Next, Stop> {
        if keepers.is_empty() {
            return Ok(Next::Frame(body.frame().await));
        }
        Box::pin(self.frame_or_release(direction, streams, body, keepers)).await
    }

    /// [`Passage::next_frame`] while filters keep chunks.
    async fn frame_or_release(
        &self,
        direction: Direction,
        streams: Range<usize>,
        body: &mut Body,
        keepers: &mut Vec<usize>,
    ) -> Result<Next, Stop> {
        loop {
            let mut wakers = Vec::with_capacity(keepers.len());
            let mut resumed = None;
            for (position, &index) in keepers.iter().enumerate() {
                match listen(&self.streams[index], direction)? {
                    Some(notify) => wakers.push(notify),
                    None => {
                        resumed = Some(position);
                        break;
                    }
                }
            }
            if let Some(position) = resumed {
                let index = keepers.remove(position);
                let stream = &self.streams[index];
                let kept = stream
                    .replica
                    .with_generation(stream.generation, |vm| {
                        vm.take_body(stream.context, direction)
                    })
                    .unwrap_or_default();
                let later = after(streams, index, direction);
                if kept.is_empty() {
                    // Nothing to pass on: the chunk is let go, unless a filter after it keeps one.
                    let kept_later = keepers.iter().any(|k| later.contains(k));
                    return Ok(Next::Released((!kept_later).then(Bytes::new)));
                }
                let passed = self
                    .body_chunk_in(direction, later, kept, false, keepers)
                    .await?;
                return Ok(Next::Released(passed));
            }
            // Every keeper has a waker here: `select_all` gets at least one future.
            let woken = futures_util::future::select_all(
                wakers.iter().map(|notify| Box::pin(notify.notified())),
            );
            tokio::select! {
                frame = body.frame() => return Ok(Next::Frame(frame)),
                _ = woken => {}
            }
        }
    }

    /// Runs one body chunk through the filters it has still to pass; `None` when a filter keeps
    /// it (buffering): it joins `keepers`.
    pub(super) fn body_chunk<'a>(
        &'a self,
        direction: Direction,
        chunk: Bytes,
        end_of_stream: bool,
        keepers: &'a mut Vec<usize>,
    ) -> impl Future<Output = Result<Option<Bytes>, Stop>> + 'a {
        self.body_chunk_in(direction, self.all(), chunk, end_of_stream, keepers)
    }

    /// [`Passage::body_chunk`] through the filters `streams` only.
    async fn body_chunk_in(
        &self,
        direction: Direction,
        streams: Range<usize>,
        chunk: Bytes,
        end_of_stream: bool,
        keepers: &mut Vec<usize>,
    ) -> Result<Option<Bytes>, Stop> {
        // The chunk goes from filter to filter as one buffer, lent to each: copied only by a
        // filter that changes it.
        let mut data = chunk;
        for index in flow_order(streams, direction) {
            let stream = &self.streams[index];
            if !stream.wants_body(direction) {
                continue;
            }
            // What the filter kept goes on with this chunk, or stays with it (it joins again).
            if !keepers.is_empty() {
                keepers.retain(|&kept| kept != index);
            }
            let context = stream.context;
            let step = stream.replica.with_generation(stream.generation, |vm| {
                let size = vm.append_body(context, direction, std::mem::take(&mut data));
                let verdict = vm
                    .on_body(context, direction, size, end_of_stream)
                    .map(|r| decide(r, vm.take_signals(context, direction), direction))
                    .map_err(Box::new);
                // What passes on: the (possibly changed) buffer, or, when the plugin failed, the
                // chunk as it was lent.
                let passed = match verdict {
                    Ok(Verdict::Continue) | Err(_) => Some(vm.take_body(context, direction)),
                    _ => None,
                };
                (verdict, passed, size)
            });
            let (verdict, passed, size) = match step {
                None => {
                    stream.lost(direction)?;
                    continue;
                }
                Some((Err(error), passed, _)) => {
                    data = passed.unwrap_or_default();
                    stream.failed(&error)?;
                    continue;
                }
                Some(step) => step,
            };
            match verdict {
                Ok(Verdict::Continue) => data = passed.unwrap_or_default(),
                Ok(Verdict::Respond(local)) => return Err(Stop::Respond(local)),
                Ok(Verdict::Close) => return Err(Stop::Close),
                Ok(Verdict::Pause) if size > self.body_limit => {
                    return Err(self.too_large(direction, stream));
                }
                Ok(Verdict::Pause) if !end_of_stream => {
                    keepers.push(index);
                    return Ok(None);
                }
                Ok(Verdict::Pause) => {
                    Box::pin(wait(stream, direction)).await?;
                    let body = stream
                        .replica
                        .with_generation(stream.generation, |vm| vm.take_body(context, direction));
                    data = body.unwrap_or_default();
                }
                Err(_) => {}
            }
        }
        Ok(Some(data))
    }

    #[cold]
    #[inline(never)]
    fn too_large(&self, direction: Direction, stream: &OpenStream) -> Stop {
        let (kind, what) = match direction {
            Direction::Request => (Kind::PayloadTooLarge, "request"),
            Direction::Response => (Kind::PluginFailed, "response"),
        };
        Stop::fail(Problem::new(
            kind,
            format!(
                "plugin '{}' buffered more than {} bytes of the {what} body",
                stream.plugin(),
                self.body_limit
            ),
        ))
    }

    /// Trailers end the body: what filters still buffer goes on unchanged, then the trailers
    /// pass through the trailer callbacks.
    fn trailers(
        &self,
        direction: Direction,
        trailers: HeaderMap,
    ) -> impl Future<Output = Result<(Bytes, HeaderMap), Stop>> {
        self.trailers_in(direction, self.all(), trailers)
    }

    /// [`Passage::trailers`] through the filters `streams` only.
    async fn trailers_in(
        &self,
        direction: Direction,
        streams: Range<usize>,
        trailers: HeaderMap,
    ) -> Result<(Bytes, HeaderMap), Stop> {
        let map = match direction {
            Direction::Request => MapType::RequestTrailers,
            Direction::Response => MapType::ResponseTrailers,
        };
        let mut flushed = Vec::new();
        let mut pairs = Pairs::from_iter(&trailers);
        for index in flow_order(streams, direction) {
            let stream = &self.streams[index];
            if !stream.wants_body(direction) {
                continue;
            }
            let buffered = stream.replica.with_generation(stream.generation, |vm| {
                vm.take_body(stream.context, direction)
            });
            flushed.extend_from_slice(&buffered.unwrap_or_default());
            map_phase(stream, map, &mut pairs, true).await?;
        }
        let mut trailers = HeaderMap::new();
        for (key, value) in &pairs {
            if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(key), HeaderValue::from_bytes(value)) {
                trailers.append(k, v);
            }
        }
        Ok((Bytes::from(flushed), trailers))
    }

    /// One step of a request body: its next frame (or what a filter that kept chunks lets go)
    /// through the filters, what passed them all added to `out`. Returns whether the body is
    /// over.
    async fn request_step(
        &self,
        body: &mut Body,
        keepers: &mut Vec<usize>,
        out: &mut VecDeque<Frame<Bytes>>,
    ) -> Result<bool, Stop> {
        let direction = Direction::Request;
        let next = self
            .next_frame(direction, self.all(), body, keepers)
            .await?;
        let (chunk, end_of_stream) = match next {
            Next::Released(passed) => {
                if let Some(data) = passed.filter(|data| !data.is_empty()) {
                    out.push_back(Frame::data(data));
                }
                return Ok(false);
            }
            Next::Frame(None) => (Bytes::new(), true),
            Next::Frame(Some(Err(e))) => return Err(Self::unreadable(direction, &e)),
            Next::Frame(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => (data, http_body::Body::is_end_stream(body)),
                Err(frame) => {
                    let Ok(trailers) = frame.into_trailers() else {
                        return Ok(false);
                    };
                    let (flushed, trailers) = self.trailers(direction, trailers).await?;
                    if !flushed.is_empty() {
                        out.push_back(Frame::data(flushed));
                    }
                    out.push_back(Frame::trailers(trailers));
                    return Ok(true);
                }
            },
        };
        if let Some(data) = self
            .body_chunk(direction, chunk, end_of_stream, keepers)
            .await?
            && !data.is_empty()
        {
            out.push_back(Frame::data(data));
        }
        Ok(end_of_stream)
    }

    /// Runs the request body through the filters until a chunk has passed them all, or the body
    /// is over: what passed goes to `passed`. As for responses, the request goes on only then,
    /// so a filter that buffers the body can still answer in the upstream's place. When a
    /// filter held the headers for the body (`held`), what it let through passes the filters
    /// after it first. Returns the rest of the body, if any, for [`Passage::pump_request`], and
    /// the filters keeping chunks.
    pub(super) async fn start_request_body(
        &self,
        mut body: Body,
        held: Option<Box<Held>>,
        passed: &mut VecDeque<Frame<Bytes>>,
    ) -> Result<Option<(Body, Vec<usize>)>, Stop> {
        let direction = Direction::Request;
        let (held, mut keepers) = Held::split(held);
        if let Some((holder, part)) = held {
            let streams = after(self.all(), holder, direction);
            // (`None`: a filter after the holder keeps the chunk.)
            let part = self
                .pass_held(direction, streams, part, &mut keepers)
                .await?;
            if part.is_some_and(|part| part.into_frames(passed)) {
                return Ok(None);
            }
        }
        while passed.is_empty() {
            if self.request_step(&mut body, &mut keepers, passed).await? {
                return Ok(None);
            }
        }
        Ok(Some((body, keepers)))
    }

    /// The request goes on with its body still streaming: the rest of it (`rest`, after
    /// `passed`, which went through the filters already) goes through the filters in a task of
    /// its own (`pump_request`) into the body the dispatcher forwards.
    pub(super) fn stream_request_body(
        self,
        rest: Body,
        keepers: Vec<usize>,
        passed: VecDeque<Frame<Bytes>>,
    ) -> (Admitted, Body) {
        let passage = Arc::new(self);
        let (frames_tx, frames_rx) = tokio::sync::mpsc::channel(8);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let pump = passage
            .clone()
            .pump_request(rest, keepers, passed, frames_tx, stop_tx);
        tokio::spawn(pump);
        let admitted = Admitted {
            passage,
            body_stop: Some(stop_rx),
        };
        (admitted, ChannelBody(frames_rx).boxed_unsync())
    }

    /// Streams the rest of a request body (after `passed`, which went through the filters
    /// already) through the filters into `frames`, the body the dispatcher forwards, as Envoy
    /// does. A stop (a filter's local response or reset, a read failure, the size limit) goes
    /// to `stop`, where the dispatch is awaited, and fails the forwarded body: the upstream
    /// request is abandoned. Once the forwarded body is dropped (the exchange with the upstream
    /// is over: its response was, or was replaced, or it failed, or the dispatcher does not
    /// read bodies), the pump stops at once: the filters get no more of the body, and the
    /// client's is no longer read.
    async fn pump_request(
        self: Arc<Self>,
        mut body: Body,
        mut keepers: Vec<usize>,
        mut passed: VecDeque<Frame<Bytes>>,
        frames: tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
        stop: tokio::sync::oneshot::Sender<Stop>,
    ) {
        let pump = async {
            let mut over = false;
            loop {
                for frame in passed.drain(..) {
                    if frames.send(Ok(frame)).await.is_err() {
                        return;
                    }
                }
                if over {
                    return;
                }
                over = match self
                    .request_step(&mut body, &mut keepers, &mut passed)
                    .await
                {
                    Ok(over) => over,
                    Err(halt) => {
                        let _ = stop.send(halt);
                        let _ = frames.send(Err(Box::new(StreamReset))).await;
                        return;
                    }
                };
            }
        };
        tokio::select! {
            biased;
            () = frames.closed() => {}
            () = pump => {}
        }
    }

    /// A response body that streams on goes through the filters in a task of its own
    /// (`response_body`), from `first`, a frame already read, if any; the head is sent once the
    /// first chunk has passed them (or at once with `passed`, a chunk that already has: see
    /// `after_held_response`).
    pub(super) async fn pump_response(
        self: Arc<Self>,
        mut parts: http::response::Parts,
        passed: Option<Bytes>,
        first: Option<NextFrame>,
        body: Body,
        keepers: Vec<usize>,
    ) -> Result<Response<Body>, StreamReset> {
        let (head_tx, head_rx) = tokio::sync::oneshot::channel();
        let (frames_tx, frames_rx) = tokio::sync::mpsc::channel(8);
        // Kept for a local response from the body filters, which becomes the exchange's.
        let passage = Arc::clone(&self);
        let pump = self.response_body(passed, first, keepers, body, head_tx, frames_tx);
        tokio::spawn(pump);
        match head_rx.await {
            Ok(Ok(())) => {
                // The filters may have changed the body: its length is no longer known.
                parts.headers.remove(http::header::CONTENT_LENGTH);
                let body = ChannelBody(frames_rx);
                Ok(Response::from_parts(parts, body.boxed_unsync()))
            }
            Ok(Err(stop)) => stopped(&passage, stop),
            Err(_) => Ok(
                Problem::new(Kind::PluginFailed, "the response body filters stopped")
                    .into_response(),
            ),
        }
    }

    /// Pumps the response body (`passed` and `first` as `pump_response` has them, then the rest
    /// of `body`) through the filters into `frames`. The response head waits on `head` until the
    /// first chunk has passed all filters, so a plugin that buffers the body can still replace
    /// the response (local response, or 500 over the limit); after that a failure can only
    /// reset the stream.
    async fn response_body(
        self: Arc<Self>,
        passed: Option<Bytes>,
        mut first: Option<NextFrame>,
        mut keepers: Vec<usize>,
        mut body: Body,
        head: tokio::sync::oneshot::Sender<Result<(), Stop>>,
        frames: tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
    ) {
        let direction = Direction::Response;
        let mut head = Some(head);
        let fail = |head: &mut Option<tokio::sync::oneshot::Sender<Result<(), Stop>>>,
                    stop: Stop|
         -> Option<Result<Frame<Bytes>, BoxError>> {
            match head.take() {
                Some(head) => {
                    let _ = head.send(Err(stop));
                    None
                }
                None => Some(Err(Box::new(StreamReset))),
            }
        };
        // A chunk that already passed every filter (after one held the headers for it).
        if let Some(data) = passed {
            if let Some(head) = head.take() {
                let _ = head.send(Ok(()));
            }
            if !data.is_empty() && frames.send(Ok(Frame::data(data))).await.is_err() {
                return;
            }
        }
        loop {
            let next = match first.take() {
                Some(frame) => Ok(Next::Frame(frame)),
                None => {
                    self.next_frame(direction, self.all(), &mut body, &mut keepers)
                        .await
                }
            };
            let (passed, end_of_stream) = match next {
                Err(stop) => (Err(stop), false),
                Ok(Next::Released(passed)) => (Ok(passed), false),
                Ok(Next::Frame(frame)) => {
                    let (chunk, end_of_stream) = match frame {
                        None => (Bytes::new(), true),
                        Some(Err(e)) => {
                            // Before the head has gone: a 502 or 504 in the response's place.
                            if let Some(error) = fail(&mut head, Self::unreadable(direction, &e)) {
                                let _ = frames.send(error).await;
                            }
                            return;
                        }
                        Some(Ok(frame)) => match frame.into_data() {
                            Ok(data) => {
                                self.info.body_sizes.add(direction, data.len());
                                (data, http_body::Body::is_end_stream(&body))
                            }
                            Err(frame) => {
                                let Ok(trailers) = frame.into_trailers() else {
                                    continue;
                                };
                                match self.trailers(direction, trailers).await {
                                    Ok((flushed, trailers)) => {
                                        if let Some(head) = head.take() {
                                            let _ = head.send(Ok(()));
                                        }
                                        if !flushed.is_empty() {
                                            let _ = frames.send(Ok(Frame::data(flushed))).await;
                                        }
                                        let _ = frames.send(Ok(Frame::trailers(trailers))).await;
                                    }
                                    Err(stop) => {
                                        if let Some(error) = fail(&mut head, stop) {
                                            let _ = frames.send(error).await;
                                        }
                                    }
                                }
                                return;
                            }
                        },
                    };
                    let passed = self
                        .body_chunk(direction, chunk, end_of_stream, &mut keepers)
                        .await;
                    (passed, end_of_stream)
                }
            };
            match passed {
                Ok(Some(data)) => {
                    if let Some(head) = head.take() {
                        let _ = head.send(Ok(()));
                    }
                    if !data.is_empty() && frames.send(Ok(Frame::data(data))).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {}
                Err(stop) => {
                    if let Some(error) = fail(&mut head, stop) {
                        let _ = frames.send(error).await;
                    }
                    return;
                }
            }
            if end_of_stream {
                if let Some(head) = head.take() {
                    let _ = head.send(Ok(()));
                }
                return;
            }
        }
    }
}

/// A response body that ends the chain's streams once it is over (or dropped).
pub(super) struct EndsStreams<B = Body> {
    pub(super) body: B,
    pub(super) passage: Option<Arc<Passage>>,
}

impl<B> http_body::Body for EndsStreams<B>
where
    B: http_body::Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            self.passage = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A body that counts its data bytes into the request's body sizes as they pass.
pub(super) struct Counted {
    body: Body,
    info: Arc<StreamInfo>,
    direction: Direction,
}

impl Counted {
    pub(super) fn boxed(body: Body, info: &Arc<StreamInfo>, direction: Direction) -> Body {
        let info = info.clone();
        Counted {
            body,
            info,
            direction,
        }
        .boxed_unsync()
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.info.body_sizes.add(self.direction, data.len());
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The frames a response-body pump sends.
pub(super) struct ChannelBody(
    pub(super) tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx)
    }
}

/// A request body the filters have been through, as frames.
pub(super) struct FramesBody(pub(super) VecDeque<Frame<Bytes>>);

impl http_body::Body for FramesBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let len = self
            .0
            .iter()
            .filter_map(|f| f.data_ref().map(Bytes::len))
            .sum::<usize>();
        if self.0.iter().all(Frame::is_data) {
            http_body::SizeHint::with_exact(len as u64)
        } else {
            http_body::SizeHint::default()
        }
    }
}
