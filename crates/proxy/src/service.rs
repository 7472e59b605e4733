//! The request path: one [`ProxyHttp`] implementation. `request_filter` decides (reject,
//! route, authorize), `upstream_peer` picks the backend, `upstream_request_filter` edits
//! the forwarded request (anti-spoofing, identity and forwarding headers), and
//! `fail_to_proxy` answers errors the way nginx does (or with a gRPC status).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use certgate_config::VerifyMode;
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
#[derive(Default)]
pub struct RequestCtx {
    state: Option<Arc<State>>,
    conn: Option<Arc<ConnectionIdentity>>,
    route: Option<usize>,
    grpc: bool,
    body_bytes: u64,
}

impl RequestCtx {
    fn server(&self) -> Option<&CompiledServer> {
        let state = self.state.as_ref()?;
        let conn = self.conn.as_ref()?;
        state.compiled.servers.get(conn.server)
    }

    fn route(&self) -> Option<&CompiledRoute> {
        self.server()?.routes.get(self.route?)
    }
}

fn connection_identity(session: &Session) -> Option<Arc<ConnectionIdentity>> {
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
        RequestCtx::default()
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        ctx.grpc = is_grpc(session.req_header());
        match self.decide(session, ctx) {
            Ok(()) => Ok(false),
            Err(rejection) => {
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
        _session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route selected"))?;
        let backend = route.upstream.select(b"").ok_or_else(|| {
            Error::explain(
                ErrorType::HTTPStatus(502),
                format!("upstream `{}` has no healthy server", route.upstream.name),
            )
        })?;
        let mut peer = HttpPeer::new(backend.addr, false, String::new());
        peer.options.connection_timeout = Some(route.connect_timeout);
        peer.options.read_timeout = Some(route.read_timeout);
        peer.options.write_timeout = Some(route.send_timeout);
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

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy
    where
        Self::CTX: Send + Sync,
    {
        let code = match e.etype() {
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
