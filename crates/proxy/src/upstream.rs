//! The upstream side of the request path: connection pools, connecting (TCP, then TLS with
//! the rustls `ClientConfig` certgate built, verified by certgate's own verifier), and one
//! request/response exchange with its timeouts.
//!
//! Pools are per worker thread (a connection is driven by the thread whose I/O driver
//! watches its socket, as the client side is) and per upstream of one configuration
//! generation, so a reload that changes trust settings never reuses a connection verified
//! under the old ones. HTTP/1.1 connections are kept idle, up to `keepalive`, and reused
//! one request at a time; an HTTP/2 connection (`h2c`, `grpc`, `grpcs`, or `https` when
//! ALPN picks h2) carries every concurrent request of the worker to that server.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use certgate_config::UpstreamProtocol;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;

use crate::body::{BoxError, RequestBody};
use crate::compile::CompiledUpstream;

/// Why an upstream exchange failed; the request path turns it into 502 or 504.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect to {addr} timed out after {after:?}")]
    ConnectTimeout { addr: SocketAddr, after: Duration },
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP handshake with {addr}: {source}")]
    Handshake {
        addr: SocketAddr,
        source: hyper::Error,
    },
    #[error("no response from {addr} within {after:?}")]
    Timeout { addr: SocketAddr, after: Duration },
    #[error("{addr} took no request body for {after:?}")]
    SendTimeout { addr: SocketAddr, after: Duration },
    #[error("exchange with {addr} failed: {source}")]
    Exchange {
        addr: SocketAddr,
        source: hyper::Error,
    },
}

impl UpstreamError {
    /// Whether the upstream was never reached (for `certgate_upstream_requests_total`).
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            UpstreamError::Connect { .. }
                | UpstreamError::Tls { .. }
                | UpstreamError::Handshake { .. }
        )
    }

    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            UpstreamError::ConnectTimeout { .. }
                | UpstreamError::Timeout { .. }
                | UpstreamError::SendTimeout { .. }
        )
    }

    /// The chain of causes in one line, for the log.
    pub fn detail(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let more = cause.to_string();
            if !text.contains(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            source = cause.source();
        }
        text
    }
}

/// Where one request goes and how long it may take.
pub struct Target<'a> {
    pub upstream: &'a Arc<CompiledUpstream>,
    pub addr: SocketAddr,
    /// The name sent as SNI and verified (TLS upstreams only).
    pub server_name: &'a (dyn Fn() -> String + Sync),
    pub connect_timeout: Duration,
    /// For the response header once the request body is sent, and between two reads of
    /// the response body (`proxy_read_timeout`).
    pub read_timeout: Duration,
    /// Between two pieces of the request body taken by the upstream (`proxy_send_timeout`).
    pub send_timeout: Duration,
    /// The request body's progress; `None` when there is no body.
    pub body: Option<Arc<crate::body::Progress>>,
    /// An HTTP/1.1 `Upgrade` (WebSocket): a fresh HTTP/1.1 connection of its own.
    pub upgrade: bool,
    /// `:authority` for an HTTP/2 upstream (the client's Host).
    pub authority: Option<Authority>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct PoolKey {
    upstream: u64,
    addr: SocketAddr,
}

#[derive(Default)]
struct Slot {
    owner: Weak<CompiledUpstream>,
    idle: Vec<http1::SendRequest<RequestBody>>,
    h2: Option<http2::SendRequest<RequestBody>>,
}

thread_local! {
    /// This worker thread's connections to every upstream server.
    static POOLS: RefCell<HashMap<PoolKey, Slot>> = RefCell::new(HashMap::new());
}

enum Pooled {
    H1(http1::SendRequest<RequestBody>),
    H2(http2::SendRequest<RequestBody>),
}

fn take_pooled(key: PoolKey) -> Option<Pooled> {
    POOLS.with_borrow_mut(|pools| {
        let slot = pools.get_mut(&key)?;
        if let Some(h2) = &slot.h2 {
            if !h2.is_closed() {
                return Some(Pooled::H2(h2.clone()));
            }
            slot.h2 = None;
        }
        slot.idle.retain(|sender| !sender.is_closed());
        // A connection goes back to the list as soon as its response body ends, before its
        // driver task has run and made it ready for the next request: prefer one that is
        // ready (the most recently used first), so this request does not wait for a wake-up.
        let ready = slot.idle.iter().rposition(http1::SendRequest::is_ready);
        let index = ready.or_else(|| slot.idle.len().checked_sub(1))?;
        Some(Pooled::H1(slot.idle.swap_remove(index)))
    })
}

fn slot_for<'p>(
    pools: &'p mut HashMap<PoolKey, Slot>,
    key: PoolKey,
    upstream: &Arc<CompiledUpstream>,
) -> &'p mut Slot {
    if !pools.contains_key(&key) {
        // A new upstream generation: forget the connections of generations no request
        // holds any more.
        pools.retain(|_, slot| slot.owner.strong_count() > 0);
    }
    pools.entry(key).or_insert_with(|| Slot {
        owner: Arc::downgrade(upstream),
        ..Slot::default()
    })
}

fn keep_h2(
    key: PoolKey,
    upstream: &Arc<CompiledUpstream>,
    sender: &http2::SendRequest<RequestBody>,
) {
    POOLS.with_borrow_mut(|pools| slot_for(pools, key, upstream).h2 = Some(sender.clone()));
}

/// An HTTP/1.1 connection whose response has been read to the end, back to the idle list.
struct Release {
    key: PoolKey,
    upstream: Weak<CompiledUpstream>,
    sender: http1::SendRequest<RequestBody>,
}

impl Release {
    fn give_back(self) {
        let Some(upstream) = self.upstream.upgrade() else {
            return;
        };
        if self.sender.is_closed() {
            return;
        }
        POOLS.with_borrow_mut(|pools| {
            let keepalive = upstream.keepalive;
            let slot = slot_for(pools, self.key, &upstream);
            if slot.idle.len() < keepalive {
                slot.idle.push(self.sender);
            }
        });
    }
}

/// The upstream's response body, streamed to the client. Its connection goes back to the
/// pool when the body has been read to the end; a read that waits longer than
/// `read_timeout` ends the body with an error (nginx's `proxy_read_timeout`).
pub struct UpstreamBody {
    inner: Incoming,
    release: Option<Release>,
    read_timeout: Duration,
    /// Made on the first read that waits, so a response that arrives whole costs no
    /// timer; then re-armed for each wait.
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Whether `waiting` counts the current wait.
    armed: bool,
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // A body read to its end whose last poll was not seen (hyper stops at the length it
        // knows): the connection is still good.
        if let Some(release) = self.release.take() {
            if self.inner.is_end_stream() {
                release.give_back();
            }
        }
    }
}

/// The upstream sent nothing for longer than `read_timeout` in the middle of a body.
#[derive(Debug, thiserror::Error)]
#[error("upstream timed out reading the response body ({0:?} without data)")]
pub struct BodyTimeout(Duration);

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.armed = false;
                match &frame {
                    None => {
                        if let Some(release) = this.release.take() {
                            release.give_back();
                        }
                    }
                    Some(Err(_)) => this.release = None,
                    Some(Ok(_)) => {
                        if this.inner.is_end_stream() {
                            if let Some(release) = this.release.take() {
                                release.give_back();
                            }
                        }
                    }
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.read_timeout;
                let sleep = this
                    .waiting
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if !this.armed {
                    // A new wait: the timeout counts from now.
                    sleep.as_mut().reset(tokio::time::Instant::now() + timeout);
                    this.armed = true;
                }
                ready!(sleep.as_mut().poll(cx));
                this.release = None;
                Poll::Ready(Some(Err(BodyTimeout(timeout).into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Sends `request` (origin-form URI) to `target`, on a pooled connection when one is free.
pub async fn send(
    target: &Target<'_>,
    mut request: Request<RequestBody>,
) -> Result<Response<UpstreamBody>, UpstreamError> {
    let key = PoolKey {
        upstream: target.upstream.pool_key,
        addr: target.addr,
    };
    if !target.upgrade {
        while let Some(pooled) = take_pooled(key) {
            match pooled {
                Pooled::H2(sender) => return send_h2(target, key, sender, request).await,
                Pooled::H1(mut sender) => {
                    if sender.ready().await.is_err() {
                        continue;
                    }
                    match with_timeout(target, sender.try_send_request(request)).await? {
                        Ok(response) => return Ok(wrap(target, key, response, Some(sender))),
                        // The connection closed before the request went out (an idle
                        // connection the upstream had just timed out): try the next one.
                        Err(mut e) => match e.take_message() {
                            Some(unsent) => request = unsent,
                            None => {
                                return Err(UpstreamError::Exchange {
                                    addr: target.addr,
                                    source: e.into_error(),
                                })
                            }
                        },
                    }
                }
            }
        }
    }
    // Boxed: connecting (TCP, TLS handshake, HTTP/2 handshake) holds a lot of state that
    // would otherwise sit inline in every request's future and be copied with it, though
    // most requests find a pooled connection.
    match Box::pin(connect(target)).await? {
        Pooled::H2(sender) => {
            keep_h2(key, target.upstream, &sender);
            send_h2(target, key, sender, request).await
        }
        Pooled::H1(mut sender) => {
            sender
                .ready()
                .await
                .map_err(|source| UpstreamError::Handshake {
                    addr: target.addr,
                    source,
                })?;
            let response = with_timeout(target, sender.send_request(request))
                .await?
                .map_err(|source| UpstreamError::Exchange {
                    addr: target.addr,
                    source,
                })?;
            // An upgraded connection belongs to the tunnel, never to the pool.
            let sender = (!target.upgrade).then_some(sender);
            Ok(wrap(target, key, response, sender))
        }
    }
}

/// Waits for the response header: at most `send_timeout` between two pieces of the request
/// body, then at most `read_timeout` from its end. One timer, moved on only when it fires.
async fn with_timeout<T>(
    target: &Target<'_>,
    exchange: impl std::future::Future<Output = T>,
) -> Result<T, UpstreamError> {
    let addr = target.addr;
    let Some(body) = &target.body else {
        return tokio::time::timeout(target.read_timeout, exchange)
            .await
            .map_err(|_| UpstreamError::Timeout {
                addr,
                after: target.read_timeout,
            });
    };
    let mut exchange = std::pin::pin!(exchange);
    let timer = tokio::time::sleep(target.send_timeout.min(target.read_timeout));
    let mut timer = std::pin::pin!(timer);
    loop {
        tokio::select! {
            biased;
            answered = exchange.as_mut() => return Ok(answered),
            () = timer.as_mut() => {
                let (wait, error) = if body.is_done() {
                    (target.read_timeout, UpstreamError::Timeout { addr, after: target.read_timeout })
                } else {
                    (target.send_timeout, UpstreamError::SendTimeout { addr, after: target.send_timeout })
                };
                let deadline = body.last_activity() + wait;
                if std::time::Instant::now() >= deadline {
                    return Err(error);
                }
                timer.as_mut().reset(deadline.into());
            }
        }
    }
}

async fn send_h2(
    target: &Target<'_>,
    key: PoolKey,
    mut sender: http2::SendRequest<RequestBody>,
    mut request: Request<RequestBody>,
) -> Result<Response<UpstreamBody>, UpstreamError> {
    // HTTP/2 needs the scheme and authority in the request itself; the Host header's
    // value travels as `:authority` instead.
    let scheme = if target.upstream.protocol.is_tls() {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    };
    let authority = target
        .authority
        .clone()
        .or_else(|| target.addr.to_string().parse().ok());
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.scheme = Some(scheme);
    parts.authority = authority;
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *request.uri_mut() = uri;
    }
    request.headers_mut().remove(http::header::HOST);
    *request.version_mut() = http::Version::HTTP_2;
    let response = with_timeout(target, sender.send_request(request))
        .await?
        .map_err(|source| UpstreamError::Exchange {
            addr: target.addr,
            source,
        })?;
    Ok(wrap(target, key, response, None))
}

fn wrap(
    target: &Target<'_>,
    key: PoolKey,
    response: Response<Incoming>,
    sender: Option<http1::SendRequest<RequestBody>>,
) -> Response<UpstreamBody> {
    let release = sender.map(|sender| Release {
        key,
        upstream: Arc::downgrade(target.upstream),
        sender,
    });
    response.map(|inner| {
        let mut body = UpstreamBody {
            inner,
            release,
            read_timeout: target.read_timeout,
            waiting: None,
            armed: false,
        };
        // A response without a body (204, 304, `Content-Length: 0`) frees its connection now.
        if body.inner.is_end_stream() {
            if let Some(release) = body.release.take() {
                release.give_back();
            }
        }
        body
    })
}

/// A new connection to `target`: TCP, TLS for `https`/`grpcs`, then HTTP/1.1 or HTTP/2
/// (by protocol, or by ALPN for `https`). Its driver runs on this worker thread.
async fn connect(target: &Target<'_>) -> Result<Pooled, UpstreamError> {
    let addr = target.addr;
    let upstream = target.upstream;
    let connecting = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| UpstreamError::Connect { addr, source })?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &upstream.tls else {
            return Ok((Io::Plain(tcp), false));
        };
        let config = if target.upgrade {
            tls.client_h1.clone()
        } else {
            tls.client.clone()
        };
        let name = (target.server_name)();
        let server_name = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|e| {
            UpstreamError::Tls {
                addr,
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("`{name}` is not a valid TLS server name: {e}"),
                ),
            }
        })?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .map_err(|source| UpstreamError::Tls { addr, source })?;
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok((Io::Tls(Box::new(stream)), h2))
    };
    let (io, alpn_h2) = tokio::time::timeout(target.connect_timeout, connecting)
        .await
        .map_err(|_| UpstreamError::ConnectTimeout {
            addr,
            after: target.connect_timeout,
        })??;
    let h2 = !target.upgrade
        && match upstream.protocol {
            UpstreamProtocol::Http => false,
            UpstreamProtocol::H2c | UpstreamProtocol::Grpc | UpstreamProtocol::Grpcs => true,
            UpstreamProtocol::Https => alpn_h2,
        };
    let io = TokioIo::new(io);
    if h2 {
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .handshake(io)
            .await
            .map_err(|source| UpstreamError::Handshake { addr, source })?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%addr, "upstream HTTP/2 connection ended: {e}");
            }
        });
        Ok(Pooled::H2(sender))
    } else {
        let (sender, connection) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|source| UpstreamError::Handshake { addr, source })?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(%addr, "upstream HTTP/1.1 connection ended: {e}");
            }
        });
        Ok(Pooled::H1(sender))
    }
}

/// HTTP/2 flow-control windows towards upstreams: large enough that one stream's 16 MB
/// gRPC message or a video download is not held to the 64 KB default per round trip.
const H2_STREAM_WINDOW: u32 = 1 << 20;
const H2_CONNECTION_WINDOW: u32 = 4 << 20;

/// A connection to an upstream, in plain text or TLS.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl tokio::io::AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// OpenSSL-style wording for rustls's handshake errors, for the log line an operator
/// greps for (nginx logs `upstream SSL certificate verify error: (N:reason)`).
pub fn tls_reason(detail: &str) -> &'static str {
    const REASONS: &[(&str, &str)] = &[
        (
            "UnknownIssuer",
            "unable to get local issuer certificate (unknown CA)",
        ),
        ("BadSignature", "certificate signature failure"),
        ("NotValidForName", "certificate name mismatch"),
        ("not valid for name", "certificate name mismatch"),
        ("Expired", "certificate has expired"),
        ("certificate expired", "certificate has expired"),
        ("NotValidYet", "certificate is not yet valid"),
        ("not valid yet", "certificate is not yet valid"),
        ("Revoked", "certificate revoked"),
        ("certificate chain too long", "certificate chain too long"),
        ("InvalidPurpose", "unsupported certificate purpose"),
        (
            "CertificateRequired",
            "upstream requires a client certificate",
        ),
        (
            "UnknownCA",
            "upstream rejected our client certificate (unknown CA)",
        ),
        ("BadCertificate", "upstream rejected our client certificate"),
        ("DecryptError", "upstream rejected our client certificate"),
        ("NoApplicationProtocol", "upstream does not speak h2 (ALPN)"),
    ];
    REASONS
        .iter()
        .find(|(needle, _)| detail.contains(needle))
        .map(|(_, reason)| *reason)
        .unwrap_or("handshake failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_tls_reasons_use_openssl_words() {
        assert_eq!(
            tls_reason("invalid peer certificate: UnknownIssuer"),
            "unable to get local issuer certificate (unknown CA)"
        );
        assert_eq!(
            tls_reason(
                "invalid peer certificate: certificate not valid for name \"x\"; certificate is only valid for DnsName(\"y\")"
            ),
            "certificate name mismatch"
        );
        assert_eq!(
            tls_reason("invalid peer certificate: certificate expired: verification time 1 (UNIX)"),
            "certificate has expired"
        );
        assert_eq!(tls_reason("eof"), "handshake failed");
    }
}
