//! What happens when a request is done (`ProxyHttp::logging`): count it in the pre-resolved
//! metric series and queue its access log line. Only records; never decides anything.

use std::time::{Instant, SystemTime};

use certgate_identity::VerifyResult;
use pingora::proxy::Session;
use pingora::{Error, ErrorSource, ErrorType};

use crate::compile::CompiledRoute;
use crate::metrics::{RouteHandles, NO_LABEL};
use crate::tls::ConnectionIdentity;
use crate::{Shared, State};

/// The parts of a request's context that metrics and the access log read.
pub struct Observed<'a> {
    pub state: Option<&'a std::sync::Arc<State>>,
    pub server_index: Option<usize>,
    pub server_name: Option<&'a str>,
    pub route: Option<&'a CompiledRoute>,
    pub route_handles: Option<&'a RouteHandles>,
    pub conn: Option<&'a ConnectionIdentity>,
    pub started: Instant,
    pub upstream_started: Option<Instant>,
}

enum Outcome {
    Success,
    ConnectError,
    Timeout,
    Error,
}

/// How the upstream exchange went: failures to connect, timeouts, and other upstream-side
/// errors (reset, malformed response); anything else (including a client that went away)
/// is a success for the upstream.
fn outcome(e: Option<&Error>) -> Outcome {
    let Some(e) = e else {
        return Outcome::Success;
    };
    match e.etype() {
        ErrorType::ConnectTimedout
        | ErrorType::ReadTimedout
        | ErrorType::WriteTimedout
        | ErrorType::TLSHandshakeTimedout => Outcome::Timeout,
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::ConnectProxyFailure
        | ErrorType::TLSHandshakeFailure
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError => Outcome::ConnectError,
        _ if e.esource() == &ErrorSource::Upstream => Outcome::Error,
        _ => Outcome::Success,
    }
}

pub fn request_done(shared: &Shared, session: &Session, e: Option<&Error>, seen: Observed<'_>) {
    // No response written means the client went away first: nginx's 499, in the access
    // log and in the metrics alike.
    let status = session
        .response_written()
        .map(|r| r.status.as_u16())
        .unwrap_or(499);
    let elapsed = seen.started.elapsed();
    let metrics = &shared.metrics;

    let current;
    let route_handles = match seen.route_handles {
        Some(h) => h,
        None => {
            current = shared.current.load();
            &current.handles.server(None).unrouted
        }
    };
    route_handles.count(metrics, status);
    route_handles.duration.observe(elapsed.as_secs_f64());
    if let (Some(_), Some(upstream)) = (seen.upstream_started, &route_handles.upstream) {
        match outcome(e) {
            Outcome::Success => upstream.success.inc(),
            Outcome::ConnectError => upstream.connect_error.inc(),
            Outcome::Timeout => upstream.timeout.inc(),
            Outcome::Error => upstream.error.inc(),
        }
    }

    if !shared.access_log.enabled() {
        return;
    }
    // A refused request never got its identity attached to the context: read it from the
    // connection, so refusals are logged with the certificate that caused them.
    let from_connection = match seen.conn {
        Some(_) => None,
        None => crate::service::connection_identity(session),
    };
    let conn = seen.conn.or(from_connection.as_deref());
    let (s_dn, verify): (&str, &str) = match conn {
        Some(c) => (
            c.cert.as_ref().map_or("", |cert| cert.subject_dn()),
            match &c.verify {
                VerifyResult::Success => "SUCCESS",
                VerifyResult::None => "NONE",
                VerifyResult::Failed(_) => "FAILED",
            },
        ),
        None => ("", "NONE"),
    };
    let verify_text;
    let verify = match conn.map(|c| &c.verify) {
        Some(VerifyResult::Failed(reason)) => {
            verify_text = format!("FAILED:{reason}");
            verify_text.as_str()
        }
        _ => verify,
    };
    let req = session.req_header();
    let uri = req
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or_else(|| req.uri.path());
    let header = |name: http::header::HeaderName| {
        req.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let protocol = match req.version {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2.0",
        _ => "HTTP/1.1",
    };
    let entry = crate::access_log::Entry {
        time: SystemTime::now(),
        remote_addr: session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip()),
        method: req.method.as_str(),
        uri,
        protocol,
        status,
        body_bytes_sent: session.body_bytes_sent(),
        referer: header(http::header::REFERER),
        user_agent: header(http::header::USER_AGENT),
        client_s_dn: s_dn,
        client_verify: verify,
        request_time: elapsed,
        upstream_time: seen.upstream_started.map(|t| t.elapsed()),
        server: seen.server_name.unwrap_or(NO_LABEL),
        route: seen.route.map_or(NO_LABEL, |r| r.label.as_str()),
    };
    shared.access_log.log(&entry);
}
