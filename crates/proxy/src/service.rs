//! The request path: one [`ProxyHttp`] implementation. `request_filter` decides (reject,
//! route, authorize), `upstream_peer` picks the backend, `upstream_request_filter` edits
//! the forwarded request (anti-spoofing, identity and forwarding headers), and
//! `fail_to_proxy` answers errors the way nginx does (or with a gRPC status).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use certgate_config::{UpstreamProtocol, VerifyMode};
use certgate_identity::VerifyResult;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::compile::{CompiledRoute, CompiledServer};
use crate::responses::{self, Rejection};
use crate::tls::{select_server, ConnectionIdentity};
use crate::{Shared, State};

/// The gateway's `ProxyHttp`: shared, read-mostly state only; per-request state is [`RequestCtx`].
pub struct Gateway {
    shared: Arc<Shared>,
}

impl Gateway {
    pub fn new(shared: Arc<Shared>) -> Self {
        Gateway { shared }
    }
}

/// Per-request state.
pub struct RequestCtx {
    state: Option<Arc<State>>,
    conn: Option<Arc<ConnectionIdentity>>,
    route: Option<usize>,
    grpc: bool,
    body_bytes: u64,
    /// For metrics and the access log: when the request started, which server it was
    /// decided for, and when it was sent upstream.
    started: std::time::Instant,
    server_index: Option<usize>,
    upstream_started: Option<std::time::Instant>,
    _in_flight: crate::metrics::InFlight,
}

impl RequestCtx {
    fn observed(&self) -> crate::observe::Observed<'_> {
        let state = self.state.as_ref();
        let server = state
            .zip(self.server_index)
            .and_then(|(s, i)| s.compiled.servers.get(i));
        crate::observe::Observed {
            state,
            server_index: self.server_index,
            server_name: server.map(|s| s.name.as_str()),
            route: server.zip(self.route).and_then(|(s, r)| s.routes.get(r)),
            route_handles: self.route_handles(),
            conn: self.conn.as_deref(),
            started: self.started,
            upstream_started: self.upstream_started,
        }
    }

    fn server(&self) -> Option<&CompiledServer> {
        let state = self.state.as_ref()?;
        let conn = self.conn.as_ref()?;
        state.compiled.servers.get(conn.server)
    }

    fn route(&self) -> Option<&CompiledRoute> {
        self.server()?.routes.get(self.route?)
    }

    /// The metric series of the server and route this request was decided for.
    fn route_handles(&self) -> Option<&crate::metrics::RouteHandles> {
        let state = self.state.as_ref()?;
        let server = state.handles.servers.get(self.server_index?)?;
        match self.route {
            Some(route) => server.routes.get(route),
            None => Some(&server.unrouted),
        }
    }
}

pub(crate) fn connection_identity(session: &Session) -> Option<Arc<ConnectionIdentity>> {
    let digest = session.digest()?;
    let ssl = digest.ssl_digest.as_ref()?;
    ssl.extension.get::<Arc<ConnectionIdentity>>().cloned()
}

/// Host (HTTP/1.1) or :authority (HTTP/2), without port, lower-cased.
fn request_host(req: &RequestHeader) -> String {
    let raw = req
        .uri
        .authority()
        .map(|a| a.host().to_string())
        .or_else(|| {
            req.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| {
                    match h.rsplit_once(':') {
                        // An IPv6 literal keeps its brackets; a port after them is dropped.
                        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => {
                            host.to_string()
                        }
                        _ => h.to_string(),
                    }
                })
        })
        .unwrap_or_default();
    raw.trim_end_matches('.').to_ascii_lowercase()
}

fn is_grpc(req: &RequestHeader) -> bool {
    req.headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// OpenSSL-style wording for rustls's handshake errors, for the log line an operator
/// greps for (nginx logs `upstream SSL certificate verify error: (N:reason)`).
fn upstream_tls_reason(detail: &str) -> &'static str {
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

/// Concurrent streams per upstream h2 connection before pingora opens another one.
const H2_STREAMS_PER_CONNECTION: usize = 100;

/// A number unique to the calling worker thread, mixed into the pool key so each worker
/// reuses only the upstream connections it opened itself. A tokio socket stays registered
/// with the I/O driver of the thread that created it; reused from another worker, every
/// read on it becomes a cross-thread wake-up. Per-worker pools measured ~10 % more
/// keep-alive requests/s with 2 workers (benches/load, bare pingora A/B).
fn worker_slot() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    thread_local! {
        static SLOT: u64 = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    SLOT.with(|slot| *slot)
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n), per the gRPC HTTP/2 spec.
fn parse_grpc_timeout(value: &[u8]) -> Option<std::time::Duration> {
    use std::time::Duration;
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n.checked_mul(3600)?),
        b'M' => Duration::from_secs(n.checked_mul(60)?),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

impl Gateway {
    /// Every check that can refuse a request before anything is sent upstream.
    fn decide(&self, session: &Session, ctx: &mut RequestCtx) -> Result<(), Rejection> {
        let state = self.shared.current.load_full();
        let conn = connection_identity(session).ok_or(Rejection::Internal)?;
        let compiled = &state.compiled;
        let mut server_index = conn.server;
        let group = compiled
            .listeners
            .iter()
            .find(|g| g.servers.contains(&server_index) && Some(g.addr) == conn.listen)
            .or_else(|| {
                compiled
                    .listeners
                    .iter()
                    .find(|g| g.servers.contains(&server_index))
            });
        if conn.generation != state.generation {
            // The configuration was reloaded since the handshake: re-resolve by SNI.
            if let Some(group) = group {
                server_index = select_server(compiled, group, conn.sni.as_deref());
            }
        }
        let req = session.req_header();
        let host = request_host(req);
        if let Some(group) = group {
            if group.servers.len() > 1
                && !host.is_empty()
                && select_server(compiled, group, Some(&host)) != server_index
            {
                // The TLS policy of one server must not admit a request for another.
                return Err(Rejection::Misdirected);
            }
        }
        let server = compiled
            .servers
            .get(server_index)
            .ok_or(Rejection::Internal)?;
        ctx.server_index = Some(server_index);
        ctx.state = Some(state.clone());

        let cert_sent = conn.cert_sent();
        let verified = matches!(conn.verify, VerifyResult::Success);
        match server.verify {
            VerifyMode::On if !cert_sent => return Err(Rejection::NoCertificate),
            VerifyMode::On | VerifyMode::Optional if cert_sent && !verified => {
                return Err(Rejection::BadCertificate)
            }
            // nginx forwards only "issuer not trusted" failures under optional_no_ca.
            VerifyMode::OptionalNoCa
                if cert_sent
                    && !verified
                    && !conn
                        .verify_code
                        .is_some_and(certgate_pki::verify::untrusted_issuer_only) =>
            {
                return Err(Rejection::BadCertificate)
            }
            _ => {}
        }

        let path = req.uri.path();
        let route_index = server
            .routes
            .iter()
            .position(|r| r.matcher.matches(path, &host))
            .ok_or(Rejection::NoRoute)?;
        let route = &server.routes[route_index];
        ctx.route = Some(route_index);
        if route.require_client_cert && server.verify != VerifyMode::Off && !cert_sent {
            return Err(Rejection::NoCertificate);
        }
        if !route.allow.is_empty() {
            let allowed = verified && conn.cert.as_ref().is_some_and(|c| route.allow.allows(c));
            if !allowed {
                return Err(Rejection::Forbidden);
            }
        }
        if route.max_body_size > 0 {
            let declared = req
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|len| len > route.max_body_size) {
                return Err(Rejection::TooLarge);
            }
        }
        let conn = if server_index != conn.server || conn.generation != state.generation {
            Arc::new(conn.for_server(server_index, state.generation))
        } else {
            conn
        };
        ctx.conn = Some(conn);
        ctx.route = Some(route_index);
        ctx.state = Some(state);
        Ok(())
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            state: None,
            conn: None,
            route: None,
            grpc: false,
            body_bytes: 0,
            started: std::time::Instant::now(),
            server_index: None,
            upstream_started: None,
            _in_flight: crate::metrics::InFlight::new(&self.shared.metrics.requests_in_flight),
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        ctx.grpc = is_grpc(session.req_header());
        match self.decide(session, ctx) {
            Ok(()) => Ok(false),
            Err(rejection) => {
                if matches!(rejection, Rejection::Forbidden) {
                    if let Some(route) = ctx.route_handles() {
                        route.authz_denied.inc();
                    }
                }
                responses::reject(session, rejection, ctx.grpc).await;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        // Chunked and HTTP/2 uploads carry no Content-Length: count as they stream.
        let limit = ctx.route().map(|route| route.max_body_size).unwrap_or(0);
        if let (Some(chunk), true) = (body.as_ref(), limit > 0) {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > limit {
                return Error::e_explain(
                    ErrorType::HTTPStatus(413),
                    "request body larger than max_body_size",
                );
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        ctx.upstream_started = Some(std::time::Instant::now());
        let route = ctx
            .route()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route selected"))?;
        // consistent_hash: the same caller keeps reaching the same server — by certificate
        // (SHA-256 fingerprint) when there is one, else by client address (nginx's ip_hash).
        let hash_key: Vec<u8> = if route.upstream.is_consistent_hash() {
            match ctx.conn.as_ref().and_then(|c| c.cert.as_ref()) {
                Some(cert) => cert.fingerprint_sha256_hex().as_bytes().to_vec(),
                None => session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip().to_string().into_bytes())
                    .unwrap_or_default(),
            }
        } else {
            Vec::new()
        };
        let backend = route.upstream.select(&hash_key).ok_or_else(|| {
            Error::explain(
                ErrorType::HTTPStatus(502),
                format!("upstream `{}` has no healthy server", route.upstream.name),
            )
        })?;
        let upstream = &route.upstream;
        let server_name = upstream.server_name(&backend);
        let mut peer = HttpPeer::new(backend.addr, upstream.protocol.is_tls(), server_name);
        peer.group_key = upstream.pool_key ^ (worker_slot() << 48);
        peer.options.connection_timeout = Some(route.connect_timeout);
        peer.options.read_timeout = Some(route.read_timeout);
        peer.options.write_timeout = Some(route.send_timeout);
        crate::compile::configure_peer(&mut peer, upstream.protocol, upstream.tls.as_ref());
        // Multiplex concurrent requests over one h2 connection (pingora's default is 1).
        peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
        if session.is_upgrade_req() && upstream.protocol == UpstreamProtocol::Https {
            // An HTTP/1.1 Upgrade (WebSocket) cannot cross h2: offer only HTTP/1.1.
            peer.options.set_http_version(1, 1);
        }
        if ctx.grpc {
            // A gRPC deadline shorter than the route's read timeout bounds the wait for
            // the upstream, so an overdue call ends as DEADLINE_EXCEEDED from here too.
            if let Some(deadline) = session
                .req_header()
                .headers
                .get("grpc-timeout")
                .and_then(|v| parse_grpc_timeout(v.as_bytes()))
            {
                if deadline < route.read_timeout {
                    peer.options.read_timeout = Some(deadline);
                }
            }
        }
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        let (Some(server), Some(route), Some(conn)) =
            (ctx.server(), ctx.route(), ctx.conn.as_ref())
        else {
            return Error::e_explain(
                ErrorType::InternalError,
                "request reached upstream without a decision",
            );
        };
        let remote = session.client_addr().and_then(|a| a.as_inet()).copied();
        let (identity, prepared) = conn.prepared(server, remote);

        crate::forward::apply(
            upstream_request,
            server,
            route,
            identity,
            prepared,
            remote,
            crate::compile::unix_now(),
        )
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX)
    where
        Self::CTX: Send + Sync,
    {
        crate::observe::request_done(&self.shared, session, e, ctx.observed());
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Self::CTX, e: &Error) -> bool {
        // A client that hangs up or sends a broken request is not the gateway's error:
        // nginx logs these at `info`, below its default `error_log` level. The access log
        // still has the request (499 when nothing was answered).
        if e.esource() == &ErrorSource::Downstream {
            tracing::debug!("request ended by the client: {e}");
            return true;
        }
        false
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy
    where
        Self::CTX: Send + Sync,
    {
        if matches!(
            e.etype(),
            ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert | ErrorType::HandshakeError
        ) {
            let upstream = ctx.route().map(|r| r.upstream.name.as_str()).unwrap_or("?");
            let detail = e.to_string();
            tracing::warn!(
                upstream,
                reason = upstream_tls_reason(&detail),
                "upstream TLS handshake failed: {detail}"
            );
        } else if e.esource() == &ErrorSource::Upstream
            && matches!(
                e.etype(),
                ErrorType::ReadError
                    | ErrorType::WriteError
                    | ErrorType::ConnectionClosed
                    | ErrorType::H2Error
            )
        {
            // With TLS 1.3 the client's handshake completes before the server has checked
            // our certificate; its refusal arrives as a closed connection on first use.
            if let Some(upstream) = ctx.route().map(|r| &r.upstream) {
                if upstream
                    .tls
                    .as_ref()
                    .is_some_and(|tls| tls.client_cert.is_none())
                {
                    tracing::warn!(
                        upstream = upstream.name.as_str(),
                        "upstream closed the TLS connection: {e}; if it requires a client \
                         certificate, set tls.cert and tls.key"
                    );
                }
            }
        }
        let code = match e.etype() {
            // A failed upstream handshake is a bad gateway, whichever side pingora blames.
            ErrorType::TLSHandshakeFailure | ErrorType::InvalidCert | ErrorType::HandshakeError => {
                502
            }
            ErrorType::HTTPStatus(code) => *code,
            ErrorType::ConnectTimedout | ErrorType::ReadTimedout | ErrorType::WriteTimedout => 504,
            _ => match e.esource() {
                ErrorSource::Upstream => 502,
                ErrorSource::Downstream => match e.etype() {
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => 0,
                    _ => 400,
                },
                ErrorSource::Internal | ErrorSource::Unset => 500,
            },
        };
        if code > 0 {
            responses::error_page(session, code, ctx.grpc).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(
            parse_grpc_timeout(b"200m"),
            Some(Duration::from_millis(200))
        );
        assert_eq!(parse_grpc_timeout(b"3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse_grpc_timeout(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout(b"5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse_grpc_timeout(b"7n"), Some(Duration::from_nanos(7)));
        // At most 8 digits, a unit, nothing else.
        assert_eq!(parse_grpc_timeout(b"123456789S"), None);
        assert_eq!(parse_grpc_timeout(b"S"), None);
        assert_eq!(parse_grpc_timeout(b"10"), None);
        assert_eq!(parse_grpc_timeout(b"-1S"), None);
        assert_eq!(parse_grpc_timeout(b"1.5S"), None);
    }

    #[test]
    fn upstream_tls_reasons_use_openssl_words() {
        assert_eq!(
            upstream_tls_reason("invalid peer certificate: UnknownIssuer"),
            "unable to get local issuer certificate (unknown CA)"
        );
        assert_eq!(
            upstream_tls_reason(
                "invalid peer certificate: certificate not valid for name \"x\"; certificate is only valid for DnsName(\"y\")"
            ),
            "certificate name mismatch"
        );
        assert_eq!(
            upstream_tls_reason(
                "invalid peer certificate: certificate expired: verification time 1 (UNIX)"
            ),
            "certificate has expired"
        );
        assert_eq!(upstream_tls_reason("eof"), "handshake failed");
    }
}
