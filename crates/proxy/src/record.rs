//! The record phase: when a request is done (its response body sent, or the client gone),
//! count it in the pre-resolved metric series and queue its access log line. Only
//! records; never decides anything.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use certgate_identity::VerifyResult;
use http::request::Parts;
use http::HeaderValue;

use crate::metrics::{InFlight, NO_LABEL};
use crate::tls::ConnectionIdentity;
use crate::{Shared, State};

/// How the upstream exchange went, for `certgate_upstream_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    ConnectError,
    Timeout,
    Error,
}

/// The request line and headers the access log shows, kept only when it is on.
pub struct Logged {
    pub method: http::Method,
    pub uri: http::Uri,
    pub version: http::Version,
    pub referer: Option<HeaderValue>,
    pub user_agent: Option<HeaderValue>,
}

impl Logged {
    pub fn from_head(head: &Parts) -> Logged {
        Logged {
            method: head.method.clone(),
            uri: head.uri.clone(),
            version: head.version,
            referer: head.headers.get(http::header::REFERER).cloned(),
            user_agent: head.headers.get(http::header::USER_AGENT).cloned(),
        }
    }
}

/// Everything the record phase needs, gathered while the request goes through the others.
pub struct Record {
    pub shared: Arc<Shared>,
    pub state: Arc<State>,
    pub server_index: Option<usize>,
    pub route_index: Option<usize>,
    pub conn: Arc<ConnectionIdentity>,
    pub remote: Option<IpAddr>,
    pub started: Instant,
    pub upstream_started: Option<Instant>,
    pub outcome: Option<Outcome>,
    /// The status sent; 499 (nginx's "client closed request") until a response exists.
    pub status: u16,
    pub logged: Option<Logged>,
    /// Counts the request in flight (the SIGTERM drain waits for it) until recorded.
    pub in_flight: InFlight,
    /// Keeps the connection from counting as idle until the response is done.
    pub busy: crate::activity::Busy,
    /// Why a signed URL was refused: logged as `$ssl_client_verify` `SIGNED_FAILED:<why>`.
    pub signed_failure: Option<crate::signed::Failure>,
}

impl crate::body::OnDone for Record {
    fn done(self: Box<Self>, bytes_sent: u64, _complete: bool) {
        self.finish(bytes_sent);
    }
}

impl Record {
    /// Counts the request and logs it.
    pub fn finish(self, body_bytes_sent: u64) {
        let elapsed = self.started.elapsed();
        let handles = &self.state.handles;
        let server = handles.server(self.server_index);
        let route_handles = match self.route_index {
            Some(route) => server.routes.get(route).unwrap_or(&server.unrouted),
            None => &server.unrouted,
        };
        let metrics = &self.shared.metrics;
        route_handles.count(metrics, self.status);
        route_handles.duration.observe(elapsed.as_secs_f64());
        if let (Some(outcome), Some(upstream)) = (self.outcome, &route_handles.upstream) {
            match outcome {
                Outcome::Success => upstream.success.inc(),
                Outcome::ConnectError => upstream.connect_error.inc(),
                Outcome::Timeout => upstream.timeout.inc(),
                Outcome::Error => upstream.error.inc(),
            }
        }

        let Some(logged) = &self.logged else {
            return;
        };
        let conn = &self.conn;
        let s_dn = conn.cert.as_ref().map_or("", |cert| cert.subject_dn());
        let verify_text;
        let verify = match (&conn.verify, self.signed_failure) {
            (_, Some(failure)) => {
                verify_text = format!("SIGNED_FAILED:{}", failure.as_str());
                verify_text.as_str()
            }
            (verify, None) => match verify {
                VerifyResult::Success => "SUCCESS",
                VerifyResult::None => "NONE",
                VerifyResult::Signed => "SIGNED",
                VerifyResult::Failed(reason) => {
                    verify_text = format!("FAILED:{reason}");
                    verify_text.as_str()
                }
            },
        };
        let uri = logged
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or_else(|| logged.uri.path());
        // A signed URL is a credential until it expires: never written to the log.
        let uri = crate::signed::redact(uri);
        let text = |value: &Option<HeaderValue>| {
            value
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let (referer, user_agent) = (text(&logged.referer), text(&logged.user_agent));
        let protocol = match logged.version {
            http::Version::HTTP_10 => "HTTP/1.0",
            http::Version::HTTP_2 => "HTTP/2.0",
            _ => "HTTP/1.1",
        };
        let server_state = self
            .server_index
            .and_then(|i| self.state.compiled.servers.get(i));
        let route = server_state
            .zip(self.route_index)
            .and_then(|(s, r)| s.routes.get(r));
        let entry = crate::access_log::Entry {
            time: SystemTime::now(),
            remote_addr: self.remote,
            method: logged.method.as_str(),
            uri: &uri,
            protocol,
            status: self.status,
            body_bytes_sent: usize::try_from(body_bytes_sent).unwrap_or(usize::MAX),
            referer: &referer,
            user_agent: &user_agent,
            client_s_dn: s_dn,
            client_verify: verify,
            request_time: elapsed,
            upstream_time: self.upstream_started.map(|t| t.elapsed()),
            server: server_state.map_or(NO_LABEL, |s| s.name.as_str()),
            route: route.map_or(NO_LABEL, |r| r.label.as_str()),
        };
        self.shared.access_log.log(&entry);
    }
}

/// A request's record until its response exists: if the request's future is dropped first
/// (the client went away), it is recorded as 499 with nothing sent.
pub struct Pending(pub Option<Box<Record>>);

impl Pending {
    pub fn record(&mut self) -> Option<&mut Record> {
        self.0.as_deref_mut()
    }

    pub fn take(&mut self) -> Option<Box<Record>> {
        self.0.take()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(record) = self.0.take() {
            record.finish(0);
        }
    }
}
