//! One request, top to bottom, as its phases run: decide (reject, route, authorize), pick
//! the upstream server, rewrite the headers (strip, then set), forward with both bodies
//! streaming, respond, and record when the response is done. Each phase is its own module;
//! this one only strings them together and turns failures into answers in one place.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use certgate_config::UpstreamProtocol;
use http::header::{self, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::activity::Activity;
use crate::body::{RequestBody, ResponseBody, Source};
use crate::decide::{self, Decision, Refusal};
use crate::record::{Logged, Outcome, Pending, Record};
use crate::responses::{self, Rejection};
use crate::tls::ConnectionIdentity;
use crate::upstream::{self, Target, UpstreamError};
use crate::Shared;

/// What every request on one client connection shares.
pub struct Connection {
    pub shared: Arc<Shared>,
    pub identity: Arc<ConnectionIdentity>,
    pub remote: SocketAddr,
    /// HTTP/2 (ALPN `h2`) or HTTP/1.1.
    pub version: Version,
    /// The client's address as `X-Real-IP` sends it, made once per connection.
    pub remote_ip: HeaderValue,
    pub activity: Arc<Activity>,
    /// The client limits in force when the connection was accepted.
    pub limits: certgate_config::ClientLimits,
}

/// Serves one request; never fails (every failure is an answer).
pub async fn handle(conn: &Connection, mut request: Request<Incoming>) -> Response<ResponseBody> {
    let started = Instant::now();
    let state = conn.shared.current.load_full();
    let upgrade = wants_upgrade(&request);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
    let (mut head, body) = request.into_parts();
    let is_grpc = decide::is_grpc(&head);
    // Normalize first: the access log, every decision and the upstream see one spelling.
    // (`CONNECT` names an authority, not a path: the decide phase answers it 405.)
    let bad_path = (head.method != http::Method::CONNECT)
        .then(|| decide::normalize_path(&mut head.uri, state.compiled.paths).err())
        .flatten();
    let mut pending = Pending(Some(Box::new(Record {
        shared: conn.shared.clone(),
        state: state.clone(),
        server_index: None,
        route_index: None,
        conn: conn.identity.clone(),
        remote: Some(conn.remote.ip()),
        started,
        upstream_started: None,
        outcome: None,
        status: 499,
        logged: conn
            .shared
            .access_log
            .enabled()
            .then(|| Logged::from_head(&head)),
        in_flight: crate::metrics::InFlight::new(&conn.shared.metrics.requests_in_flight),
        busy: conn.activity.begin(),
        signed_failure: None,
    })));

    if let Some(violation) = conn.activity.violation() {
        let (kind, page) = responses::framing_violation(violation);
        conn.shared.metrics.client_errors.count(kind);
        tracing::debug!(remote = %conn.remote, kind = kind.label(), "refused a request: {violation:?}");
        conn.activity.linger();
        return respond(pending, close(page));
    }
    if conn.version == Version::HTTP_2 && head.headers.len() > conn.limits.max_headers {
        // HTTP/1.1's count is hyper's (`max_headers`); HTTP/2 gets the same limit here.
        conn.shared
            .metrics
            .client_errors
            .count(crate::metrics::ClientError::HeaderTooLarge);
        drain(body, conn.version);
        return respond(pending, responses::error_page(431, is_grpc));
    }

    // Decide.
    if let Some(refused) = bad_path {
        tracing::debug!(remote = %conn.remote, path = head.uri.path(), "refused a request path: {refused}");
        let refusal = Refusal {
            rejection: Rejection::BadPath,
            server_index: Some(conn.identity.server),
            route_index: None,
            signed_failure: None,
        };
        return refuse(conn, pending, refusal, body, is_grpc);
    }
    let decision = match decide::decide(&state, &conn.identity, &head, Some(conn.remote.ip())) {
        Ok(decision) => decision,
        Err(refusal) => return refuse(conn, pending, refusal, body, is_grpc),
    };
    if decision.mint {
        return mint(conn, pending, &decision, &head);
    }
    let (Some(server), Some(route)) = (decision.server(&state), decision.route(&state)) else {
        return respond(pending, responses::error_page(500, is_grpc));
    };
    if let Some(record) = pending.record() {
        record.server_index = Some(decision.server_index);
        record.route_index = Some(decision.route_index);
        record.conn = decision.conn.clone();
    }

    if decision.signed {
        // The signature is certgate's: the upstream sees the path and its own parameters.
        head.uri = crate::signed::strip(&head.uri);
        count_signed(conn, server, route, "ok");
    }
    if let Some(upstream_path) = &route.upstream_path {
        match crate::forward::upstream_uri(&head.uri, upstream_path) {
            Some(uri) => head.uri = uri,
            None => {
                let refusal = Refusal {
                    rejection: Rejection::BadPath,
                    server_index: Some(decision.server_index),
                    route_index: Some(decision.route_index),
                    signed_failure: None,
                };
                return refuse(conn, pending, refusal, body, is_grpc);
            }
        }
    }

    // Pick the upstream server.
    let upstream = &route.upstream;
    let hash_key = hash_key(&decision, conn, upstream.is_consistent_hash());
    let Some(backend) = upstream.select(&hash_key) else {
        tracing::warn!(upstream = %upstream.name, "no server to send the request to");
        return respond(pending, responses::error_page(502, is_grpc));
    };
    let Some(addr) = backend.addr.as_inet().copied() else {
        return respond(pending, responses::error_page(502, is_grpc));
    };

    // Rewrite: strip, then set.
    let authority = (upstream.protocol != UpstreamProtocol::Http)
        .then(|| client_authority(&head))
        .flatten();
    crate::forward::strip_hop_by_hop(&mut head.headers, is_grpc, upgrade);
    head.headers.remove(header::EXPECT);
    let (identity, prepared) = decision.conn.prepared(server, Some(conn.remote));
    crate::forward::apply(
        &mut head.headers,
        server,
        route,
        identity,
        prepared,
        Some(&conn.remote_ip),
        crate::compile::unix_now(),
    );
    if !head.headers.contains_key(header::HOST) {
        // An HTTP/2 client names the host in `:authority`; an HTTP/1.1 upstream needs Host.
        if let Some(value) = head
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            head.headers.insert(header::HOST, value);
        }
    }
    let client_version = head.version;
    head.uri = origin_form(&head.uri);
    head.version = Version::HTTP_11;
    let (body, progress) =
        RequestBody::new(body, route.max_body_size, conn.limits.client_body_timeout);
    let outbound = Request::from_parts(head, body);

    // Forward.
    let mut read_timeout = route.read_timeout;
    if is_grpc {
        // A gRPC deadline shorter than the route's read timeout bounds the wait for the
        // upstream, so an overdue call ends as DEADLINE_EXCEEDED from here too.
        if let Some(deadline) = outbound
            .headers()
            .get("grpc-timeout")
            .and_then(|v| parse_grpc_timeout(v.as_bytes()))
        {
            read_timeout = read_timeout.min(deadline);
        }
    }
    let server_name = || upstream.server_name(&backend);
    let target = Target {
        upstream,
        addr,
        server_name: &server_name,
        connect_timeout: route.connect_timeout,
        read_timeout,
        send_timeout: route.send_timeout,
        body: progress.clone(),
        upgrade,
        authority,
    };
    if let Some(record) = pending.record() {
        record.upstream_started = Some(Instant::now());
    }
    let exchanged = upstream::send(&target, outbound).await;
    let too_large = progress.as_ref().is_some_and(|p| p.exceeded());
    if progress.as_ref().is_some_and(|p| p.timed_out()) {
        // The client stopped sending its body: the upstream request was aborted.
        conn.shared
            .metrics
            .client_errors
            .count(crate::metrics::ClientError::BodyTimeout);
        tracing::debug!(remote = %conn.remote, "request body stalled for client_body_timeout; answered 408");
        return respond(pending, close(responses::error_page(408, is_grpc)));
    }

    // Respond.
    let mut response = match exchanged {
        Ok(response) => response,
        Err(_) if too_large => {
            tracing::info!(
                remote = %conn.remote,
                limit = route.max_body_size,
                "request body larger than max_body_size; answered 413"
            );
            return too_large_body(conn, pending, progress.as_deref(), is_grpc);
        }
        Err(e) => {
            let outcome = upstream_failed(upstream, &e);
            if let Some(record) = pending.record() {
                record.outcome = Some(outcome);
            }
            let code = if e.is_timeout() { 504 } else { 502 };
            return respond(pending, responses::error_page(code, is_grpc));
        }
    };
    if let Some(record) = pending.record() {
        record.outcome = Some(Outcome::Success);
    }
    if too_large {
        return too_large_body(conn, pending, progress.as_deref(), is_grpc);
    }
    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if let (true, Some(client_upgrade)) = (switching, client_upgrade) {
        tunnel(client_upgrade, hyper::upgrade::on(&mut response), addr);
    }
    crate::forward::strip_hop_by_hop(response.headers_mut(), false, switching);
    *response.version_mut() = client_version;
    let response = response.map(|body| ResponseBody::new(Source::Upstream(body), None));
    if upgrade && !switching {
        // The HTTP/1.1 framing guard stopped reading this connection at the Upgrade
        // request: it must not carry another one.
        return respond(pending, close(response));
    }
    respond(pending, response)
}

/// Attaches the request's record to its response: it is written when the body is done.
fn respond(mut pending: Pending, mut response: Response<ResponseBody>) -> Response<ResponseBody> {
    if let Some(mut record) = pending.take() {
        record.status = response.status().as_u16();
        response.body_mut().set_on_done(record);
    }
    response
}

/// Asks an HTTP/1.x client to close the connection after this response, as nginx does
/// after a certificate error or a refused body.
fn close(mut response: Response<ResponseBody>) -> Response<ResponseBody> {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Counts one signed-URL outcome in `certgate_signed_url_requests_total`.
fn count_signed(
    conn: &Connection,
    server: &crate::compile::CompiledServer,
    route: &crate::compile::CompiledRoute,
    result: &str,
) {
    conn.shared
        .metrics
        .signed_urls
        .with_label_values(&[server.name.as_str(), route.label.as_str(), result])
        .inc();
}

/// `POST /.certgate/sign`, answered here; never forwarded.
fn mint(
    conn: &Connection,
    mut pending: Pending,
    decision: &Decision,
    head: &http::request::Parts,
) -> Response<ResponseBody> {
    let state = conn.shared.current.load_full();
    let Some(server) = decision.server(&state) else {
        return respond(pending, responses::error_page(500, false));
    };
    let host = decide::request_host(head);
    let now = u64::try_from(crate::compile::unix_now()).unwrap_or(0);
    let minted = crate::signed::mint(
        server,
        &decision.conn,
        head,
        &host,
        Some(conn.remote.ip()),
        now,
    );
    let route = minted.route_index.and_then(|r| server.routes.get(r));
    if let Some(record) = pending.record() {
        record.server_index = Some(decision.server_index);
        record.conn = decision.conn.clone();
        if minted.denied {
            let handles = record.state.handles.server(Some(decision.server_index));
            if let Some(denied) = minted.route_index.and_then(|r| handles.routes.get(r)) {
                denied.authz_denied.inc();
            }
        }
    }
    if let (Some(route), true) = (route, minted.response.status() == StatusCode::OK) {
        count_signed(conn, server, route, "minted");
        tracing::debug!(
            server = %server.name,
            route = %route.label,
            subject = decision.conn.cert.as_ref().map_or("", |c| c.subject_dn()),
            "minted a signed URL"
        );
    }
    respond(pending, minted.response)
}

fn refuse(
    conn: &Connection,
    mut pending: Pending,
    refusal: Refusal,
    body: Incoming,
    is_grpc: bool,
) -> Response<ResponseBody> {
    if refusal.rejection == Rejection::BadPath {
        conn.shared
            .metrics
            .client_errors
            .count(crate::metrics::ClientError::BadPath);
    }
    if let Some(record) = pending.record() {
        record.server_index = refusal.server_index;
        record.route_index = refusal.route_index;
        record.signed_failure = refusal.signed_failure;
        if let Some(failure) = refusal.signed_failure {
            let server = record
                .state
                .compiled
                .servers
                .get(refusal.server_index.unwrap_or(usize::MAX));
            if let Some((server, route)) = server.and_then(|s| {
                s.routes
                    .get(refusal.route_index.unwrap_or(usize::MAX))
                    .map(|r| (s, r))
            }) {
                count_signed(conn, server, route, failure.as_str());
                tracing::debug!(
                    server = %server.name,
                    route = %route.label,
                    remote = %conn.remote,
                    "refused a signed URL: {}",
                    failure.as_str()
                );
            }
        }
        if refusal.rejection == Rejection::Forbidden {
            let server = record.state.handles.server(refusal.server_index);
            if let Some(route) = refusal.route_index.and_then(|r| server.routes.get(r)) {
                route.authz_denied.inc();
            }
        }
    }
    let mut response = responses::reject(refusal.rejection, is_grpc);
    let body_unread = !http_body::Body::is_end_stream(&body);
    let status = refusal.rejection.status();
    if status == 400 || status == 405 || body_unread {
        // The body stays unread: the connection cannot carry another request. Drain what
        // the client still sends before closing, so it reads this answer instead of a reset.
        conn.activity.linger();
        response = close(response);
    }
    if body_unread {
        drain(body, conn.version);
    }
    respond(pending, response)
}

fn too_large_body(
    conn: &Connection,
    pending: Pending,
    progress: Option<&crate::body::Progress>,
    is_grpc: bool,
) -> Response<ResponseBody> {
    conn.activity.linger();
    if let Some(rest) = progress.and_then(|p| p.take_parked()) {
        drain(rest, conn.version);
    }
    respond(pending, close(responses::error_page(413, is_grpc)))
}

/// How long the unread rest of a refused HTTP/2 request body is read and discarded.
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// Reads and discards the rest of a refused request body for a while, in a task of its own.
/// On HTTP/2 the stream then ends cleanly once the client has sent it all, rather than with
/// a reset that makes clients still uploading (curl among them) drop the answer they were
/// given; an HTTP/1.1 connection drains in its lingering close instead, when it closes.
fn drain(body: Incoming, version: Version) {
    if version != Version::HTTP_2 {
        return;
    }
    use http_body_util::BodyExt;
    tokio::spawn(async move {
        let mut body = body;
        let read_all = async {
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, read_all).await;
    });
}

/// Logs why an upstream exchange failed, in OpenSSL's words for TLS failures (what an
/// nginx operator greps for), and classifies it for the metrics.
fn upstream_failed(upstream: &crate::compile::CompiledUpstream, e: &UpstreamError) -> Outcome {
    let detail = e.detail();
    match e {
        UpstreamError::Tls { .. } => {
            tracing::warn!(
                upstream = %upstream.name,
                reason = upstream::tls_reason(&detail),
                "upstream TLS handshake failed: {detail}"
            );
        }
        UpstreamError::Exchange { .. } | UpstreamError::Handshake { .. }
            if upstream
                .tls
                .as_ref()
                .is_some_and(|tls| tls.client_cert.is_none()) =>
        {
            // With TLS 1.3 the client's handshake completes before the server has checked
            // our certificate; its refusal arrives as a closed connection on first use.
            tracing::warn!(
                upstream = %upstream.name,
                "upstream closed the TLS connection: {detail}; if it requires a client \
                 certificate, set tls.cert and tls.key"
            );
        }
        _ => tracing::warn!(upstream = %upstream.name, "upstream request failed: {detail}"),
    }
    if e.is_timeout() {
        Outcome::Timeout
    } else if e.is_connect() {
        Outcome::ConnectError
    } else {
        Outcome::Error
    }
}

/// An HTTP/1.1 `Upgrade` (WebSocket) request.
fn wants_upgrade(request: &Request<Incoming>) -> bool {
    request.version() == Version::HTTP_11
        && request.headers().contains_key(header::UPGRADE)
        && request
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .any(|v| {
                v.to_str()
                    .unwrap_or("")
                    .split(',')
                    .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// Copies bytes both ways between the client and the upstream once both have switched
/// protocols. One task per upgraded connection, on this worker.
fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    addr: SocketAddr,
) {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(both) => both,
            Err(e) => {
                tracing::debug!(%addr, "upgrade did not complete: {e}");
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            tracing::debug!(%addr, "upgraded connection ended: {e}");
        }
    });
}

/// The key `consistent_hash` hashes: the same caller keeps reaching the same server — by
/// certificate (SHA-256 fingerprint) when there is one, else by client address (nginx's
/// `ip_hash`).
fn hash_key(decision: &Decision, conn: &Connection, consistent: bool) -> Vec<u8> {
    if !consistent {
        return Vec::new();
    }
    match decision.conn.cert.as_ref() {
        Some(cert) => cert.fingerprint_sha256_hex().as_bytes().to_vec(),
        None => conn.remote.ip().to_string().into_bytes(),
    }
}

/// The client's Host (HTTP/1.1) or `:authority` (HTTP/2), for an HTTP/2 upstream.
fn client_authority(head: &http::request::Parts) -> Option<Authority> {
    if let Some(authority) = head.uri.authority() {
        return Some(authority.clone());
    }
    let host = head.headers.get(header::HOST)?;
    Authority::try_from(host.as_bytes()).ok()
}

/// `/path?query` of `uri`, as an HTTP/1.1 upstream expects it.
fn origin_form(uri: &Uri) -> Uri {
    let path = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::from(path)
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n), per the gRPC HTTP/2 spec.
fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn upstream_requests_use_origin_form() {
        let uri: Uri = "https://example.org:8443/a/b?c=d".parse().unwrap();
        assert_eq!(origin_form(&uri), "/a/b?c=d");
        let uri: Uri = "/x".parse().unwrap();
        assert_eq!(origin_form(&uri), "/x");
    }
}
