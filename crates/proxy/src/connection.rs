//! One client connection after its TLS handshake: one hyper connection (HTTP/2 when ALPN
//! chose `h2`, else HTTP/1.1) whose requests all go through [`crate::request::handle`],
//! closed after `keepalive_timeout` without a request in flight, and gracefully (requests in
//! flight finish) when the gateway shuts down.
//!
//! The client's byte stream passes through [`ClientIo`], which feeds HTTP/1.1 requests to
//! the framing guard (hyper accepts `Content-Length` with `Transfer-Encoding` and duplicated
//! `Content-Length`; nginx answers 400) and, after a refused request, reads and discards what
//! the client still sends before closing (nginx's lingering close).

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

use crate::activity::Activity;
use crate::h1_guard::RequestFraming;
use crate::request::Connection;
use crate::tls::ConnectionIdentity;
use crate::Shared;

/// How long a refused request's unread body is read and discarded (nginx's `lingering_time`).
const LINGERING_TIME: Duration = Duration::from_secs(5);

/// HTTP/2 settings towards clients: nginx's `http2_max_concurrent_streams` default, and
/// windows large enough that one upload or download is not held to 64 KB per round trip.
const H2_MAX_STREAMS: u32 = 128;
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
    idle_timeout: Duration,
    mut shutdown: ShutdownWatch,
) {
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let mut ahead = None;
    if !h2 {
        match first_byte(&mut tls, idle_timeout, &mut shutdown).await {
            Some(byte) => ahead = Some(byte),
            None => return,
        }
    }
    let serving = serve_http(
        tls,
        ahead,
        h2,
        identity,
        remote,
        shared,
        idle_timeout,
        shutdown,
    );
    Box::pin(serving).await;
}

/// The first byte a client sends, or `None` when it closed the connection, stayed idle
/// for `idle_timeout`, or the gateway is shutting down.
async fn first_byte(
    tls: &mut TlsStream<TcpStream>,
    idle_timeout: Duration,
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
        () = tokio::time::sleep(idle_timeout) => None,
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
    idle_timeout: Duration,
    mut shutdown: ShutdownWatch,
) {
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
    });
    let service = service_fn(move |request| {
        let conn = conn.clone();
        async move { Ok::<_, Infallible>(crate::request::handle(&conn, request).await) }
    });
    let io = TokioIo::new(ClientIo::new(tls, ahead, (!h2).then(|| activity.clone())));

    if h2 {
        let connection = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_STREAMS)
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .serve_connection(io, service);
        let mut connection = std::pin::pin!(connection);
        let ended = watch(
            connection.as_mut(),
            &activity,
            idle_timeout,
            &mut shutdown,
            |c| c.graceful_shutdown(),
        )
        .await;
        if let Some(Err(e)) = ended {
            tracing::debug!(%remote, "HTTP/2 connection ended: {e}");
        }
    } else {
        let connection = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(io, service)
            .with_upgrades();
        let mut connection = std::pin::pin!(connection);
        let ended = watch(
            connection.as_mut(),
            &activity,
            idle_timeout,
            &mut shutdown,
            |c| c.graceful_shutdown(),
        )
        .await;
        if let Some(Err(e)) = ended {
            tracing::debug!(%remote, "HTTP/1.1 connection ended: {e}");
        }
    }
}

/// Drives `connection` to its end, asking it to close gracefully once it has been idle
/// (no request in flight) for `idle_timeout`, or at once when the gateway shuts down (an
/// idle keep-alive connection closes then; one with a request in flight after its
/// response, as nginx does).
///
/// One timer per connection, moved on only when it fires: a request costs two atomic
/// updates here, never a timer of its own.
async fn watch<C, T>(
    mut connection: Pin<&mut C>,
    activity: &Activity,
    idle_timeout: Duration,
    shutdown: &mut ShutdownWatch,
    close: impl Fn(Pin<&mut C>),
) -> Option<T>
where
    C: std::future::Future<Output = T>,
{
    if *shutdown.borrow() {
        close(connection.as_mut());
        return closing(connection, activity).await;
    }
    let idle = tokio::time::sleep(idle_timeout);
    let mut idle = std::pin::pin!(idle);
    let stopping = shutdown.wait_for(|stopping| *stopping);
    let mut stopping = std::pin::pin!(stopping);
    loop {
        tokio::select! {
            biased;
            ended = connection.as_mut() => return Some(ended),
            () = idle.as_mut() => {
                let idle_for = activity.idle_for();
                if idle_for >= idle_timeout {
                    break;
                }
                let left = idle_timeout - idle_for;
                idle.as_mut().reset(tokio::time::Instant::now() + left);
            }
            _ = stopping.as_mut() => break,
        }
    }
    close(connection.as_mut());
    closing(connection, activity).await
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
}

impl ClientIo {
    fn new(tls: TlsStream<TcpStream>, ahead: Option<u8>, h1: Option<Arc<Activity>>) -> ClientIo {
        ClientIo {
            tls,
            ahead,
            h1: h1.map(|activity| H1Watch {
                activity,
                framing: RequestFraming::new(),
                lingering: None,
            }),
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
                ready!(Pin::new(&mut this.tls).poll_read(cx, buf))?;
            }
        }
        if let Some(h1) = &mut this.h1 {
            if let Err(violation) = h1.framing.feed(&buf.filled()[before..]) {
                h1.activity.set_violation(violation);
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
