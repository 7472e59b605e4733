//! The bodies on the request path: the client's request body as it streams upstream
//! (counted against `max_body_size`), and the response body the client receives (the
//! upstream's, streamed, or a page the gateway wrote), which records the request in the
//! access log and metrics when it is done.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Errors a body on the request path can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The request body grew past the route's `max_body_size` while it streamed.
#[derive(Debug, thiserror::Error)]
#[error("request body larger than max_body_size ({limit} bytes)")]
pub struct TooLarge {
    pub limit: u64,
}

/// The client sent nothing of its request body for `client_body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("request body stalled for client_body_timeout ({after:?})")]
pub struct BodyTimeout {
    pub after: Duration,
}

/// How a request body's trip upstream is going, shared with the exchange's timers: the
/// send timeout runs between two pieces of the body, the read timeout from its end.
pub struct Progress {
    started: Instant,
    /// When the last piece went through, as nanoseconds since `started`.
    last: AtomicU64,
    done: AtomicBool,
    /// The body grew past `max_body_size`: the request path answers 413 however the
    /// upstream exchange ended (an HTTP/2 upstream sees only a reset stream).
    exceeded: AtomicBool,
    /// The client stalled for `client_body_timeout`: the request path answers 408.
    timed_out: AtomicBool,
    /// The rest of an oversized body, kept for the request path to drain: an HTTP/2 client
    /// still uploading reads the 413 only if its stream is not reset under it.
    parked: std::sync::Mutex<Option<Incoming>>,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            started: Instant::now(),
            last: AtomicU64::new(0),
            done: AtomicBool::new(false),
            exceeded: AtomicBool::new(false),
            timed_out: AtomicBool::new(false),
            parked: std::sync::Mutex::new(None),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    /// When the last piece of the body went through (or the body was set out).
    pub fn last_activity(&self) -> Instant {
        self.started + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }

    /// Whether the whole body has gone upstream.
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }

    pub fn exceeded(&self) -> bool {
        self.exceeded.load(Ordering::Relaxed)
    }

    /// Whether the client stalled its body for `client_body_timeout`.
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }

    /// What is left of a body that grew past `max_body_size`.
    pub fn take_parked(&self) -> Option<Incoming> {
        self.parked.lock().ok().and_then(|mut parked| parked.take())
    }
}

/// The client's request body on its way upstream. Counts what streams through when the
/// route has a `max_body_size` (chunked and HTTP/2 uploads carry no `Content-Length`), and
/// ends with [`TooLarge`] at the first byte over it, which aborts the upstream request:
/// the upstream never receives the body whole. Ends with [`BodyTimeout`] when the client
/// sends nothing for `client_body_timeout` while the upstream waits for more.
pub struct RequestBody {
    inner: Option<Incoming>,
    limit: u64,
    seen: u64,
    /// `None` for a request without a body (most of them): nothing to time or count.
    progress: Option<Arc<Progress>>,
    client_body_timeout: Duration,
    /// Armed the first time the client keeps the upstream waiting; moved on only when it
    /// fires, so a streaming upload does not reset a timer per read.
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl RequestBody {
    /// `limit` 0 means unlimited. Returns the body's progress, shared with the exchange.
    pub fn new(
        inner: Incoming,
        limit: u64,
        client_body_timeout: Duration,
    ) -> (RequestBody, Option<Arc<Progress>>) {
        let progress = (!inner.is_end_stream()).then(|| Arc::new(Progress::new()));
        let body = RequestBody {
            inner: Some(inner),
            limit,
            seen: 0,
            progress: progress.clone(),
            client_body_timeout,
            stall: None,
        };
        (body, progress)
    }

    /// While the client's next piece is awaited: whether it has stalled for
    /// `client_body_timeout` since the last one (registers the wake-up otherwise).
    fn stalled(&mut self, cx: &mut Context<'_>, progress: &Progress) -> bool {
        let deadline = progress.last_activity() + self.client_body_timeout;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        loop {
            if stall.as_mut().poll(cx).is_pending() {
                return false;
            }
            let deadline = progress.last_activity() + self.client_body_timeout;
            if Instant::now() >= deadline {
                return true;
            }
            stall.as_mut().reset(deadline.into());
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(polled) => polled,
            Poll::Pending => {
                let Some(progress) = this.progress.clone() else {
                    return Poll::Pending;
                };
                if !this.stalled(cx, &progress) {
                    return Poll::Pending;
                }
                progress.timed_out.store(true, Ordering::Relaxed);
                this.inner = None;
                let after = this.client_body_timeout;
                return Poll::Ready(Some(Err(BodyTimeout { after }.into())));
            }
        };
        let Some(progress) = &this.progress else {
            return Poll::Ready(polled.map(|frame| frame.map_err(Into::into)));
        };
        progress.touch();
        let frame = match polled {
            Some(Ok(frame)) => frame,
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            None => {
                progress.done.store(true, Ordering::Relaxed);
                return Poll::Ready(None);
            }
        };
        if let Some(data) = frame.data_ref() {
            this.seen += data.len() as u64;
            if this.limit > 0 && this.seen > this.limit {
                progress.exceeded.store(true, Ordering::Relaxed);
                let rest = this.inner.take();
                if let Ok(mut parked) = progress.parked.lock() {
                    *parked = rest;
                }
                return Poll::Ready(Some(Err(TooLarge { limit: this.limit }.into())));
            }
        }
        if this.inner.as_ref().is_none_or(Body::is_end_stream) {
            progress.done.store(true, Ordering::Relaxed);
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Some(inner) => inner.size_hint(),
            None => SizeHint::with_exact(0),
        }
    }
}

/// Called once when a response body is done: with the bytes sent and whether the whole
/// body went out.
pub trait OnDone: Send {
    fn done(self: Box<Self>, bytes_sent: u64, complete: bool);
}

/// Where a response body's bytes come from.
pub enum Source {
    /// The upstream's response, streamed as it arrives.
    Upstream(crate::upstream::UpstreamBody),
    /// A page or status the gateway wrote itself (nginx's error pages, gRPC statuses).
    Gateway(Option<Bytes>),
}

/// The body of every response the client receives.
pub struct ResponseBody {
    source: Source,
    sent: u64,
    on_done: Option<Box<dyn OnDone>>,
}

impl ResponseBody {
    pub fn new(source: Source, on_done: Option<Box<dyn OnDone>>) -> ResponseBody {
        ResponseBody {
            source,
            sent: 0,
            on_done,
        }
    }

    /// Bytes written by the gateway, with no recording attached.
    pub fn gateway(bytes: Bytes) -> ResponseBody {
        ResponseBody::new(Source::Gateway(Some(bytes).filter(|b| !b.is_empty())), None)
    }

    pub fn set_on_done(&mut self, on_done: Box<dyn OnDone>) {
        self.on_done = Some(on_done);
    }

    fn finish(&mut self, complete: bool) {
        if let Some(on_done) = self.on_done.take() {
            on_done.done(self.sent, complete);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = match &mut this.source {
            Source::Upstream(body) => ready!(Pin::new(body).poll_frame(cx)),
            Source::Gateway(bytes) => bytes.take().map(|b| Ok(Frame::data(b))),
        };
        match &polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                }
            }
            Some(Err(_)) => this.finish(false),
            None => this.finish(true),
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Upstream(body) => body.is_end_stream(),
            Source::Gateway(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Upstream(body) => body.size_hint(),
            Source::Gateway(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // hyper drops a body it never polls (HEAD, 204, 304) and one whose client went
        // away; either way the request is recorded once.
        let complete = self.is_end_stream();
        self.finish(complete);
    }
}
