//! The admin listener (`admin.listen`, plain HTTP): `GET /metrics` (Prometheus text format),
//! `/healthz` (the process answers) and `/readyz` (listeners accept and every upstream has a
//! healthy server; 503 while shutting down). Bind it to loopback or a private address: it
//! has no authentication, as is usual for metrics endpoints.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;

use crate::Shared;

/// The admin HTTP application.
pub struct Admin {
    pub shared: Arc<Shared>,
    /// Set once every listen address accepted a connection; listeners never go away after.
    listeners_up: AtomicBool,
}

impl Admin {
    pub fn new(shared: Arc<Shared>) -> Admin {
        Admin {
            shared,
            listeners_up: AtomicBool::new(false),
        }
    }

    /// Why the gateway is not ready, or `None` when it is.
    fn not_ready(&self) -> Option<String> {
        if self.shared.shutting_down.load(Ordering::Relaxed) {
            return Some("shutting down".into());
        }
        let state = self.shared.current.load();
        if !self.listeners_up.load(Ordering::Relaxed) {
            for group in &state.compiled.listeners {
                let mut addr = group.addr;
                if addr.ip().is_unspecified() {
                    addr = SocketAddr::new(
                        if addr.is_ipv4() {
                            std::net::Ipv4Addr::LOCALHOST.into()
                        } else {
                            std::net::Ipv6Addr::LOCALHOST.into()
                        },
                        addr.port(),
                    );
                }
                // A blocking connect to our own listener on loopback: immediate either way.
                if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
                    return Some(format!("listener {} is not accepting yet", group.addr));
                }
            }
            self.listeners_up.store(true, Ordering::Relaxed);
        }
        for upstream in state.compiled.upstreams.values() {
            if upstream.health_check.is_some() && !has_healthy_backend(upstream) {
                return Some(format!(
                    "upstream `{}` has no healthy server",
                    upstream.name
                ));
            }
        }
        None
    }
}

/// Whether health checks leave at least one server of `upstream` up (the request path falls
/// back to a down one, as nginx does; readiness must not).
fn has_healthy_backend(upstream: &crate::compile::CompiledUpstream) -> bool {
    upstream.has_healthy_backend()
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if let Ok(value) = http::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, value);
    }
    let len = response.body().len();
    response
        .headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    response
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"method not allowed\n".to_vec(),
            );
        }
        match req.uri.path() {
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.shared.metrics.render(),
            ),
            "/healthz" => reply(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" => match self.not_ready() {
                None => reply(StatusCode::OK, "text/plain", b"ready\n".to_vec()),
                Some(why) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: {why}\n").into_bytes(),
                ),
            },
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                b"not found; try /metrics, /healthz or /readyz\n".to_vec(),
            ),
        }
    }
}
