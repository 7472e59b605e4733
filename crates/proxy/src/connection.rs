//! One client connection after its TLS handshake: one hyper connection (HTTP/2 when ALPN
//! chose `h2`, else HTTP/1.1) whose requests all go through [`crate::request::handle`],
//! closed after `keepalive_timeout` without a request in flight, and gracefully (requests in
//! flight finish) when the gateway shuts down.
//!
//! The client's byte stream passes through [`ClientIo`], which feeds HTTP/1.1 requests to
//! the framing guard (hyper accepts `Content-Length` with `Transfer-Encoding` and duplicated
//! `Content-Length`; nginx answers 400), times each request header out after
//! `client_header_timeout` from its first byte, and, after a refused request, reads and
//! discards what the client still sends before closing (nginx's lingering close).
//!
//! The header limits (`large_client_header_buffers`, `max_headers`) are hyper's, set here;
//! the first request must arrive within the `client_header_timeout` that started at accept.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pingora_core::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use certgate_config::ClientLimits;

use crate::activity::Activity;
use crate::h1_guard::RequestFraming;
use crate::metrics::ClientError;
use crate::request::Connection;
use crate::tls::ConnectionIdentity;
use crate::Shared;

/// How long a refused request's unread body is read and discarded (nginx's `lingering_time`).
const LINGERING_TIME: Duration = Duration::from_secs(5);

/// HTTP/2 windows towards clients, large enough that one upload or download is not held to
/// 64 KB per round trip.
const H2_STREAM_WINDOW: u32 = 1 << 20;
const H2_CONNECTION_WINDOW: u32 = 4 << 20;

/// Serves every request of one established connection until it closes.
///
/// An HTTP/1.1 connection first waits here for the first byte of its first request,
/// holding only its TLS stream: hyper's connection state and read buffer (8 KB) exist only
/// once there is a request to read, so a connection that stays idle after its handshake
/// costs what its TLS session and socket cost.
pub(crate) async fn serve(
    mut tls: TlsStream<TcpStream>,
    identity: Arc<ConnectionIdentity>,
    remote: SocketAddr,
    shared: Arc<Shared>,
    timeouts: Timeouts,
    mut shutdown: ShutdownWatch,
) {
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let mut ahead = None;
    if !h2 {
        // Idle before its first request: the earlier of the two timeouts ends it.
        let deadline = timeouts
            .first_request
            .min(tokio::time::Instant::now() + timeouts.idle);
        match first_byte(&mut tls, deadline, &mut shutdown).await {
            Some(byte) => ahead = Some(byte),
            None => return,
        }
    }
    let serving = serve_http(tls, ahead, h2, identity, remote, shared, timeouts, shutdown);
    Box::pin(serving).await;
}

/// How long a connection may wait, and what it may send.
pub(crate) struct Timeouts {
    /// `keepalive_timeout`: idle between requests.
    pub idle: Duration,
    /// The first request's header must be complete by then (`client_header_timeout` from
    /// the accept, as nginx counts it).
    pub first_request: tokio::time::Instant,
    pub limits: ClientLimits,
}

/// The first byte a client sends, or `None` when it closed the connection, sent nothing
/// until `deadline`, or the gateway is shutting down.
async fn first_byte(
    tls: &mut TlsStream<TcpStream>,
    deadline: tokio::time::Instant,
    shutdown: &mut ShutdownWatch,
) -> Option<u8> {
    use tokio::io::AsyncReadExt;
    if *shutdown.borrow() {
        return None;
    }
    let mut byte = [0u8; 1];
    tokio::select! {
        biased;
        read = tls.read(&mut byte) => match read {
            Ok(1) => Some(byte[0]),
            _ => None,
        },
        () = tokio::time::sleep_until(deadline) => None,
        _ = shutdown.wait_for(|stopping| *stopping) => None,
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve_http(
    tls: TlsStream<TcpStream>,
    ahead: Option<u8>,
    h2: bool,
    identity: Arc<ConnectionIdentity>,
    remote: SocketAddr,
    shared: Arc<Shared>,
    timeouts: Timeouts,
    mut shutdown: ShutdownWatch,
) {
    let limits = timeouts.limits;
    let metrics = shared.metrics.clone();
    let activity = Activity::new();
    let conn = Arc::new(Connection {
        shared,
        identity,
        remote,
        version: if h2 {
            http::Version::HTTP_2
        } else {
            http::Version::HTTP_11
        },
        remote_ip: http::HeaderValue::from_str(&remote.ip().to_string())
            .unwrap_or(http::HeaderValue::from_static("-")),
        activity: activity.clone(),
        limits,
    });
    let service = service_fn(move |request| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(crate::request::handle(&conn, request).await) }
    });
    let max_header = usize::try_from(limits.max_header_bytes()).unwrap_or(usize::MAX);
    let h1 = (!h2).then(|| H1Watch {
        activity: activity.clone(),
        framing: RequestFraming::new(
            usize::try_from(limits.header_buffer_size).unwrap_or(usize::MAX),
        ),
        lingering: None,
        header_timeout: limits.client_header_timeout,
        header_deadline: HeaderDeadline::First(timeouts.first_request),
    });
    let io = TokioIo::new(ClientIo::new(tls, ahead, h1));
    let watched = Watched {
        activity: &activity,
        idle_timeout: timeouts.idle,
        first_request: timeouts.first_request,
    };

    let ended = if h2 {
        let connection = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_concurrent_streams)
            .max_header_list_size(u32::try_from(max_header).unwrap_or(u32::MAX))
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .serve_connection(io, service);
        let mut connection = std::pin::pin!(connection);
        watched
            .watch(connection.as_mut(), &mut shutdown, |c| {
                c.graceful_shutdown()
            })
            .await
    } else {
        let mut builder = http1::Builder::new();
        builder
            .keep_alive(true)
            .max_header_size(max_header)
            // Room for the largest header plus what a pipelining client sends behind it; the
            // read buffer never grows past this.
            .max_buf_size(max_header.max(8192) + 16384);
        if limits.max_headers != DEFAULT_MAX_HEADERS {
            // Only when changed: a configured count makes hyper allocate the header array
            // per request instead of using the stack.
            builder.max_headers(limits.max_headers);
        }
        let connection = builder.serve_connection(io, service).with_upgrades();
        let mut connection = std::pin::pin!(connection);
        watched
            .watch(connection.as_mut(), &mut shutdown, |c| {
                c.graceful_shutdown()
            })
            .await
    };
    if let Some(Err(e)) = ended {
        match client_error(&e, h2) {
            Some(kind) => {
                metrics.client_errors.count(kind);
                tracing::debug!(%remote, kind = kind.label(), "connection ended: {e}");
            }
            None => tracing::debug!(%remote, "connection ended: {e}"),
        }
    }
}

/// hyper's own default for `max_headers`.
const DEFAULT_MAX_HEADERS: usize = 100;

/// What a connection's error says the client did wrong, if anything (a reset or a close
/// mid-request is the client's right, not an error to count).
fn client_error(e: &hyper::Error, h2: bool) -> Option<ClientError> {
    use std::error::Error as _;
    if e.is_parse_too_large() {
        return Some(ClientError::HeaderTooLarge);
    }
    if e.is_parse() || e.is_parse_version_h2() {
        return Some(ClientError::BadRequest);
    }
    let io = e
        .source()
        .and_then(|source| source.downcast_ref::<std::io::Error>());
    if io.is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut) {
        return Some(ClientError::HeaderTimeout);
    }
    if h2 && io.is_none() && !e.is_closed() && !e.is_canceled() && !e.is_incomplete_message() {
        return Some(ClientError::Http2Protocol);
    }
    None
}

/// What [`Watched::watch`] needs to know about the connection it watches.
struct Watched<'a> {
    activity: &'a Activity,
    idle_timeout: Duration,
    first_request: tokio::time::Instant,
}

impl Watched<'_> {
    /// Drives `connection` to its end, asking it to close gracefully once it has been idle
    /// (no request in flight) for `idle_timeout` (since the handshake, before the first
    /// request), when no request came by the first request's deadline, or at once when the gateway shuts down (an idle keep-alive
    /// connection closes then; one with a request in flight after its response, as nginx
    /// does).
    ///
    /// One timer per connection, moved on only when it fires: a request costs two atomic
    /// updates here, never a timer of its own.
    async fn watch<C, T>(
        &self,
        mut connection: Pin<&mut C>,
        shutdown: &mut ShutdownWatch,
        close: impl Fn(Pin<&mut C>),
    ) -> Option<T>
    where
        C: std::future::Future<Output = T>,
    {
        let activity = self.activity;
        if *shutdown.borrow() {
            close(connection.as_mut());
            return closing(connection, activity).await;
        }
        let first_look = self
            .first_request
            .min(tokio::time::Instant::now() + self.idle_timeout);
        let idle = tokio::time::sleep_until(first_look);
        let mut idle = std::pin::pin!(idle);
        let stopping = shutdown.wait_for(|stopping| *stopping);
        let mut stopping = std::pin::pin!(stopping);
        loop {
            tokio::select! {
                biased;
                ended = connection.as_mut() => return Some(ended),
                () = idle.as_mut() => {
                    let now = tokio::time::Instant::now();
                    let idle_for = activity.idle_for();
                    let untouched = activity.untouched();
                    if idle_for >= self.idle_timeout || (untouched && now >= self.first_request) {
                        break;
                    }
                    let mut next = now + (self.idle_timeout - idle_for);
                    if untouched {
                        next = next.min(self.first_request);
                    }
                    idle.as_mut().reset(next);
                }
                _ = stopping.as_mut() => break,
            }
        }
        close(connection.as_mut());
        closing(connection, activity).await
    }
}

/// How long a connection asked to close may take to do so once it has no request in
/// flight. An HTTP/2 graceful close waits for the client's PING acknowledgement after the
/// GOAWAY, which a stalled or hostile client never sends.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Lets a closing connection finish its requests in flight, then ends it.
async fn closing<C, T>(mut connection: Pin<&mut C>, activity: &Activity) -> Option<T>
where
    C: std::future::Future<Output = T>,
{
    loop {
        match tokio::time::timeout(CLOSE_WAIT, connection.as_mut()).await {
            Ok(ended) => return Some(ended),
            Err(_) if activity.idle_for() > Duration::ZERO => return None,
            Err(_) => {}
        }
    }
}

/// The client's TLS stream as hyper reads and writes it.
struct ClientIo {
    tls: TlsStream<TcpStream>,
    /// The first byte of the first request, read before hyper started.
    ahead: Option<u8>,
    /// HTTP/1.1 only: the framing guard and the connection's activity (lingering close).
    h1: Option<H1Watch>,
    /// Set once the write side is shut (close_notify sent): how that went.
    write_shut: Option<Option<std::io::ErrorKind>>,
}

struct H1Watch {
    activity: Arc<Activity>,
    framing: RequestFraming,
    /// Armed when the lingering close starts.
    lingering: Option<Pin<Box<tokio::time::Sleep>>>,
    header_timeout: Duration,
    header_deadline: HeaderDeadline,
}

/// When the request header being read must be complete.
enum HeaderDeadline {
    /// The first request: `client_header_timeout` from the accept.
    First(tokio::time::Instant),
    /// No header is being read, or it arrived in one read (the usual case: no timer).
    Unarmed,
    /// A header spread over several reads.
    Armed(Pin<Box<tokio::time::Sleep>>),
    /// Between headers, keeping the timer for the next one.
    Disarmed(Pin<Box<tokio::time::Sleep>>),
}

impl H1Watch {
    /// After a read: starts the header clock when a header is left incomplete, stops it when
    /// none is. Returns whether the header in progress is overdue.
    fn header_clock(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.framing.in_head() {
            self.header_deadline =
                match std::mem::replace(&mut self.header_deadline, HeaderDeadline::Unarmed) {
                    HeaderDeadline::Armed(sleep) | HeaderDeadline::Disarmed(sleep) => {
                        HeaderDeadline::Disarmed(sleep)
                    }
                    HeaderDeadline::First(_) | HeaderDeadline::Unarmed => HeaderDeadline::Unarmed,
                };
            return false;
        }
        let now = tokio::time::Instant::now();
        let sleep = match std::mem::replace(&mut self.header_deadline, HeaderDeadline::Unarmed) {
            HeaderDeadline::Armed(sleep) => sleep,
            HeaderDeadline::First(at) => Box::pin(tokio::time::sleep_until(at)),
            HeaderDeadline::Unarmed => {
                Box::pin(tokio::time::sleep_until(now + self.header_timeout))
            }
            HeaderDeadline::Disarmed(mut sleep) => {
                sleep.as_mut().reset(now + self.header_timeout);
                sleep
            }
        };
        let mut sleep = sleep;
        let overdue = sleep.as_mut().poll(cx).is_ready();
        self.header_deadline = HeaderDeadline::Armed(sleep);
        overdue
    }

    /// While waiting for more of a header: whether it is overdue (registers the wake-up).
    fn header_overdue(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.header_deadline {
            HeaderDeadline::Armed(sleep) => sleep.as_mut().poll(cx).is_ready(),
            _ => false,
        }
    }
}

fn header_timed_out() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "request header not complete within client_header_timeout",
    )
}

impl ClientIo {
    fn new(tls: TlsStream<TcpStream>, ahead: Option<u8>, h1: Option<H1Watch>) -> ClientIo {
        ClientIo {
            tls,
            ahead,
            h1,
            write_shut: None,
        }
    }

    /// Reads and discards what the client sends until it closes, errs, or
    /// [`LINGERING_TIME`] is over (nginx's lingering close, after the write side is shut).
    fn poll_linger(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(h1) = &mut self.h1 else {
            return Poll::Ready(());
        };
        if !h1.activity.should_linger() {
            return Poll::Ready(());
        }
        let deadline = h1
            .lingering
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(LINGERING_TIME)));
        let mut scratch = [0u8; 4096];
        loop {
            if deadline.as_mut().poll(cx).is_ready() {
                tracing::debug!("refused request body still arriving after {LINGERING_TIME:?}");
                return Poll::Ready(());
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut self.tls).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if !buf.filled().is_empty() => continue,
                Poll::Ready(_) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

use std::future::Future as _;

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match this.ahead.take() {
            Some(byte) if buf.remaining() > 0 => {
                buf.put_slice(&[byte]);
                // The rest of the request is usually decrypted already: hand it over in
                // the same read. An error or "nothing yet" shows up on the next read.
                if let Poll::Ready(Err(e)) = Pin::new(&mut this.tls).poll_read(cx, buf) {
                    tracing::debug!("read after the first byte: {e}");
                }
            }
            ahead => {
                this.ahead = ahead;
                match Pin::new(&mut this.tls).poll_read(cx, buf) {
                    Poll::Ready(read) => read?,
                    Poll::Pending => {
                        if let Some(h1) = &mut this.h1 {
                            if h1.header_overdue(cx) {
                                return Poll::Ready(Err(header_timed_out()));
                            }
                        }
                        return Poll::Pending;
                    }
                }
            }
        }
        if let Some(h1) = &mut this.h1 {
            let read = &buf.filled()[before..];
            if let Err(violation) = h1.framing.feed(read) {
                h1.activity.set_violation(violation);
            }
            // At the end of the stream there is nothing left to wait for.
            if !read.is_empty() && h1.header_clock(cx) {
                return Poll::Ready(Err(header_timed_out()));
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tls).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tls).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tls).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        // The answer and close_notify go out and the write side closes first (the client
        // reads to the end and sees it), then what the client still sends is drained.
        if this.write_shut.is_none() {
            let shut = ready!(Pin::new(&mut this.tls).poll_shutdown(cx));
            this.write_shut = Some(shut.as_ref().err().map(std::io::Error::kind));
        }
        ready!(this.poll_linger(cx));
        match this.write_shut {
            Some(Some(kind)) => Poll::Ready(Err(kind.into())),
            _ => Poll::Ready(Ok(())),
        }
    }
}
