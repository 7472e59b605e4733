//! Prometheus metrics. One [`Metrics`] registry per process; per configuration generation a
//! [`Handles`] table resolves the labelled series of every server, route and upstream once,
//! so the request path only bumps atomics (no label strings, no map look-ups, no allocation).
//!
//! Label sets stay bounded by the configuration: server names, route labels, upstream names,
//! OpenSSL's fixed verification reasons and certificate subjects from the configured files.
//! Nothing is labelled by client certificate or address.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use certgate_config::Config;
use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::compile::Compiled;

/// Label value for a request refused before a server or route was chosen.
pub const NO_LABEL: &str = "-";

/// What a client got wrong. Logged at `debug` only: a client can cause these at will, so
/// at a higher level they would be a way to flood the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientError {
    /// Plain HTTP sent to the TLS port (answered with nginx's 400 page).
    PlainHttp,
    /// Neither TLS nor HTTP on the TLS port.
    NotTls,
    /// The TLS handshake failed (bad records, no shared protocol or cipher, alerts, resets).
    TlsHandshake,
    /// The handshake did not finish within `client_header_timeout`.
    HandshakeTimeout,
    /// A request header did not arrive within `client_header_timeout`.
    HeaderTimeout,
    /// A request body stalled for `client_body_timeout`.
    BodyTimeout,
    /// A request line or header line longer than a header buffer, a header larger than all
    /// of them, or more than `max_headers` header lines.
    HeaderTooLarge,
    /// A malformed or ambiguous request (framing, transfer coding, HTTP/1.1 syntax).
    BadRequest,
    /// An HTTP/2 protocol error by the client (the connection ends with GOAWAY).
    Http2Protocol,
    /// A request path refused by the normalization (certgate-path), or whose readings by
    /// different backends reach different routes.
    BadPath,
}

impl ClientError {
    pub const ALL: [ClientError; 10] = [
        ClientError::PlainHttp,
        ClientError::NotTls,
        ClientError::TlsHandshake,
        ClientError::HandshakeTimeout,
        ClientError::HeaderTimeout,
        ClientError::BodyTimeout,
        ClientError::HeaderTooLarge,
        ClientError::BadRequest,
        ClientError::Http2Protocol,
        ClientError::BadPath,
    ];

    pub fn label(self) -> &'static str {
        match self {
            ClientError::PlainHttp => "plain_http",
            ClientError::NotTls => "not_tls",
            ClientError::TlsHandshake => "tls_handshake",
            ClientError::HandshakeTimeout => "handshake_timeout",
            ClientError::HeaderTimeout => "header_timeout",
            ClientError::BodyTimeout => "body_timeout",
            ClientError::HeaderTooLarge => "header_too_large",
            ClientError::BadRequest => "bad_request",
            ClientError::Http2Protocol => "http2_protocol",
            ClientError::BadPath => "bad_path",
        }
    }
}

/// The `certgate_client_errors_total` series, resolved once.
pub struct ClientErrors {
    counters: [IntCounter; ClientError::ALL.len()],
}

impl ClientErrors {
    pub fn count(&self, kind: ClientError) {
        if let Some(counter) = self.counters.get(kind as usize) {
            counter.inc();
        }
    }
}

/// Every metric certgate exports, registered once in its own registry.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_requests: IntCounterVec,
    pub tls_handshakes: IntCounterVec,
    pub verifications: IntCounterVec,
    pub authz_denied: IntCounterVec,
    /// Signed URLs minted and signed requests checked, by result.
    pub signed_urls: IntCounterVec,
    pub cert_expiry: GaugeVec,
    pub config_reloads: IntCounterVec,
    pub connections_active: IntGaugeVec,
    pub requests_in_flight: IntGauge,
    pub access_log_dropped: IntCounter,
    /// `certgate_client_errors_total{kind}`, one resolved counter per kind.
    pub client_errors: ClientErrors,
    process_resident: IntGauge,
    process_fds: IntGauge,
    process_cpu: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// Buckets for request durations: from a cached-connection hop (sub-millisecond) to the
/// default 60 s upstream read timeout.
const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

impl Metrics {
    /// Builds and registers every metric. Registration fails only on a name clash, which
    /// is a programming error caught by the unit test below; it is logged, not fatal.
    pub fn new() -> Arc<Metrics> {
        let registry = Registry::new();
        fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
            let v = IntCounterVec::new(Opts::new(name, help), labels)
                .unwrap_or_else(|_| unreachable_metric(name));
            register(r, Box::new(v.clone()));
            v
        }
        let requests = counter(
            &registry,
            "certgate_requests_total",
            "Requests answered, by server, route and HTTP status code.",
            &["server", "route", "code"],
        );
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "certgate_request_duration_seconds",
                "Time from the request header to the end of the response, by server and route.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["server", "route"],
        )
        .unwrap_or_else(|_| unreachable_metric("certgate_request_duration_seconds"));
        register(&registry, Box::new(request_duration.clone()));
        let upstream_requests = counter(
            &registry,
            "certgate_upstream_requests_total",
            "Requests sent upstream, by upstream and outcome (success, connect_error, timeout, error).",
            &["upstream", "outcome"],
        );
        let tls_handshakes = counter(
            &registry,
            "certgate_tls_handshakes_total",
            "Completed TLS handshakes (success) and handshakes refused for the client certificate (failure), by server.",
            &["server", "result"],
        );
        let verifications = counter(
            &registry,
            "certgate_client_cert_verifications_total",
            "Client certificate verifications, by server, result (success, failure, none) and OpenSSL reason.",
            &["server", "result", "reason"],
        );
        let authz_denied = counter(
            &registry,
            "certgate_authz_denied_total",
            "Requests refused with 403 by a route's allow rules.",
            &["server", "route"],
        );
        let signed_urls = counter(
            &registry,
            "certgate_signed_url_requests_total",
            "Signed URLs minted (result=minted) and signed requests checked (result=ok, or why \
             one was refused with 403: expired, bad_signature, unknown_key, malformed, \
             over_max_ttl, outside_prefix, not_allowed, method).",
            &["server", "route", "result"],
        );
        let cert_expiry = GaugeVec::new(
            Opts::new(
                "certgate_certificate_expiry_timestamp_seconds",
                "notAfter of every configured certificate (server, client_ca, trusted_ca, upstream_client), refreshed on reload.",
            ),
            &["server", "kind", "subject"],
        )
        .unwrap_or_else(|_| unreachable_metric("certgate_certificate_expiry_timestamp_seconds"));
        register(&registry, Box::new(cert_expiry.clone()));
        let config_reloads = counter(
            &registry,
            "certgate_config_reloads_total",
            "Configuration reloads, by result (success, failure).",
            &["result"],
        );
        let connections_active = IntGaugeVec::new(
            Opts::new(
                "certgate_connections_active",
                "Open downstream TLS connections, by server chosen at the handshake.",
            ),
            &["server"],
        )
        .unwrap_or_else(|_| unreachable_metric("certgate_connections_active"));
        register(&registry, Box::new(connections_active.clone()));
        let int_gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).unwrap_or_else(|_| unreachable_metric(name));
            register(&registry, Box::new(g.clone()));
            g
        };
        let gauge = |name: &str, help: &str| {
            let g = Gauge::new(name, help).unwrap_or_else(|_| unreachable_metric(name));
            register(&registry, Box::new(g.clone()));
            g
        };
        let requests_in_flight = int_gauge(
            "certgate_requests_in_flight",
            "Requests being processed (what SIGTERM waits for).",
        );
        let access_log_dropped = IntCounter::new(
            "certgate_access_log_dropped_total",
            "Access log lines dropped because the writer could not keep up.",
        )
        .unwrap_or_else(|_| unreachable_metric("certgate_access_log_dropped_total"));
        register(&registry, Box::new(access_log_dropped.clone()));
        let process_start = gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        );
        process_start.set(crate::compile::unix_now() as f64);
        let process_resident = int_gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        );
        let process_fds = int_gauge("process_open_fds", "Number of open file descriptors.");
        let process_cpu = gauge(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        );
        for result in ["success", "failure"] {
            config_reloads.with_label_values(&[result]);
        }
        let client_errors = counter(
            &registry,
            "certgate_client_errors_total",
            "Connections and requests that failed on the client's side (plain HTTP on the TLS port, bad TLS, timeouts, malformed or oversized requests), by kind.",
            &["kind"],
        );
        let client_errors = ClientErrors {
            counters: ClientError::ALL.map(|kind| client_errors.with_label_values(&[kind.label()])),
        };
        Arc::new(Metrics {
            registry,
            requests,
            request_duration,
            upstream_requests,
            tls_handshakes,
            verifications,
            authz_denied,
            signed_urls,
            cert_expiry,
            config_reloads,
            connections_active,
            requests_in_flight,
            access_log_dropped,
            client_errors,
            process_resident,
            process_fds,
            process_cpu,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        self.refresh_process();
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("cannot encode metrics: {e}");
        }
        out
    }

    pub fn reload(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.config_reloads.with_label_values(&[result]).inc();
    }

    /// Replaces the certificate expiry series with those of the configuration now in force.
    pub fn set_expiry(&self, entries: &[ExpiryEntry]) {
        self.cert_expiry.reset();
        for e in entries {
            self.cert_expiry
                .with_label_values(&[e.server.as_str(), e.kind, e.subject.as_str()])
                .set(e.not_after as f64);
        }
    }

    /// Linux process figures from /proc; elsewhere they stay at 0.
    fn refresh_process(&self) {
        if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
            self.process_fds.set(entries.count() as i64);
        }
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
            // Fields after the parenthesised command name, which may contain spaces.
            if let Some((_, rest)) = stat.rsplit_once(')') {
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let ticks = 100.0; // USER_HZ on every Linux platform certgate targets.
                let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
                if let (Some(utime), Some(stime)) = (field(11), field(12)) {
                    self.process_cpu.set((utime + stime) / ticks);
                }
                if let Some(rss_pages) = field(21) {
                    self.process_resident.set((rss_pages * 4096.0) as i64);
                }
            }
        }
    }
}

fn register(registry: &Registry, collector: Box<dyn prometheus::core::Collector>) {
    if let Err(e) = registry.register(collector) {
        tracing::error!("metric registration failed: {e}");
    }
}

/// Metric options are constants; they only fail to build if this file is wrong.
fn unreachable_metric<T>(name: &str) -> T {
    unreachable!("invalid metric definition {name}")
}

/// One certificate expiry series.
pub struct ExpiryEntry {
    pub server: String,
    pub kind: &'static str,
    pub subject: String,
    pub not_after: i64,
}

/// Every certificate the configuration names: server certificates (as compiled, i.e. what
/// is served), client CAs and trusted CAs, and upstream client certificates.
pub fn expiry_entries(config: &Config, compiled: &Compiled) -> Vec<ExpiryEntry> {
    let mut out = Vec::new();
    let mut push = |server: &str, kind: &'static str, cert: &rustls::pki_types::CertificateDer| {
        if let Ok(summary) = certgate_pki::summarize(cert) {
            out.push(ExpiryEntry {
                server: server.to_string(),
                kind,
                subject: summary.subject.to_string(),
                not_after: summary.not_after_unix,
            });
        }
    };
    for server in &compiled.servers {
        if let Some(leaf) = server.certified_key.cert.first() {
            push(&server.name, "server", leaf);
        }
    }
    for server in &config.servers {
        let auth = &server.client_auth;
        if auth.verify == certgate_config::VerifyMode::Off {
            continue;
        }
        for (kind, path) in auth
            .ca
            .iter()
            .map(|p| ("client_ca", p))
            .chain(auth.trusted_ca.iter().map(|p| ("trusted_ca", p)))
        {
            for cert in certgate_pki::load_certs(path).unwrap_or_default() {
                push(&server.name, kind, &cert);
            }
        }
    }
    for (name, upstream) in &config.upstreams {
        if let Some(path) = upstream.tls.as_ref().and_then(|t| t.cert.as_ref()) {
            if let Some(leaf) = certgate_pki::load_certs(path).unwrap_or_default().first() {
                push(name, "upstream_client", leaf);
            }
        }
    }
    out
}

/// Series of one route, resolved when a configuration is installed.
pub struct RouteHandles {
    server: String,
    route: String,
    /// Status code 100..=599 → counter, created on the first response with that code.
    codes: Box<[OnceLock<IntCounter>]>,
    pub duration: Histogram,
    pub authz_denied: IntCounter,
    pub upstream: Option<Arc<UpstreamHandles>>,
}

impl RouteHandles {
    fn new(m: &Metrics, server: &str, route: &str, upstream: Option<Arc<UpstreamHandles>>) -> Self {
        RouteHandles {
            server: server.to_string(),
            route: route.to_string(),
            codes: (100..600).map(|_| OnceLock::new()).collect(),
            duration: m.request_duration.with_label_values(&[server, route]),
            authz_denied: m.authz_denied.with_label_values(&[server, route]),
            upstream,
        }
    }

    /// Counts one response by status (499, nginx's "client closed request", when the
    /// connection was gone before an answer).
    pub fn count(&self, m: &Metrics, code: u16) {
        let Some(slot) = code
            .checked_sub(100)
            .and_then(|i| self.codes.get(usize::from(i)))
        else {
            return;
        };
        slot.get_or_init(|| {
            m.requests.with_label_values(&[
                self.server.as_str(),
                self.route.as_str(),
                &code.to_string(),
            ])
        })
        .inc();
    }
}

/// Outcome counters of one upstream.
pub struct UpstreamHandles {
    pub success: IntCounter,
    pub connect_error: IntCounter,
    pub timeout: IntCounter,
    pub error: IntCounter,
}

/// Series of one server.
pub struct ServerHandles {
    pub name: String,
    pub routes: Vec<RouteHandles>,
    /// Requests refused before a route was chosen.
    pub unrouted: RouteHandles,
    pub handshake_success: IntCounter,
    pub handshake_failure: IntCounter,
    pub verify_success: IntCounter,
    pub verify_none: IntCounter,
    pub connections_active: IntGauge,
}

impl ServerHandles {
    /// A failed verification; reasons are OpenSSL's fixed texts, so the set stays small.
    pub fn verify_failed(&self, m: &Metrics, reason: &str) {
        m.verifications
            .with_label_values(&[self.name.as_str(), "failure", reason])
            .inc();
    }
}

/// Every pre-resolved series of one configuration generation.
pub struct Handles {
    pub metrics: Arc<Metrics>,
    pub servers: Vec<ServerHandles>,
    /// For requests that could not be tied to a server (no TLS identity); created on first
    /// use so a healthy gateway exports no `server="-"` series.
    unknown: OnceLock<ServerHandles>,
}

impl Handles {
    pub fn new(metrics: &Arc<Metrics>, compiled: &Compiled) -> Handles {
        let m = metrics.as_ref();
        let upstreams: BTreeMap<&str, Arc<UpstreamHandles>> = compiled
            .upstreams
            .keys()
            .map(|name| {
                let h = |outcome: &str| m.upstream_requests.with_label_values(&[name, outcome]);
                (
                    name.as_str(),
                    Arc::new(UpstreamHandles {
                        success: h("success"),
                        connect_error: h("connect_error"),
                        timeout: h("timeout"),
                        error: h("error"),
                    }),
                )
            })
            .collect();
        let servers = compiled
            .servers
            .iter()
            .map(|s| {
                let routes = s
                    .routes
                    .iter()
                    .map(|r| {
                        RouteHandles::new(
                            m,
                            &s.name,
                            &r.label,
                            upstreams.get(r.upstream.name.as_str()).cloned(),
                        )
                    })
                    .collect();
                server_handles(m, &s.name, routes)
            })
            .collect();
        Handles {
            metrics: metrics.clone(),
            servers,
            unknown: OnceLock::new(),
        }
    }

    pub fn server(&self, index: Option<usize>) -> &ServerHandles {
        match index.and_then(|i| self.servers.get(i)) {
            Some(s) => s,
            None => self
                .unknown
                .get_or_init(|| server_handles(&self.metrics, NO_LABEL, Vec::new())),
        }
    }
}

fn server_handles(m: &Metrics, name: &str, routes: Vec<RouteHandles>) -> ServerHandles {
    ServerHandles {
        name: name.to_string(),
        unrouted: RouteHandles::new(m, name, NO_LABEL, None),
        routes,
        handshake_success: m.tls_handshakes.with_label_values(&[name, "success"]),
        handshake_failure: m.tls_handshakes.with_label_values(&[name, "failure"]),
        verify_success: m.verifications.with_label_values(&[name, "success", ""]),
        verify_none: m.verifications.with_label_values(&[name, "none", ""]),
        connections_active: m.connections_active.with_label_values(&[name]),
    }
}

/// Counts one open connection for as long as it lives (dropped with the connection's identity).
pub struct ActiveConnection(IntGauge);

impl ActiveConnection {
    pub fn new(gauge: &IntGauge) -> ActiveConnection {
        gauge.inc();
        ActiveConnection(gauge.clone())
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts one request in flight until the request's context is dropped, whichever way it ends.
pub struct InFlight(IntGauge);

impl InFlight {
    pub fn new(gauge: &IntGauge) -> InFlight {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_renders() {
        let m = Metrics::new();
        m.reload(true);
        let text = String::from_utf8(m.render()).unwrap();
        assert!(text.contains("certgate_config_reloads_total{result=\"success\"} 1"));
        assert!(text.contains("process_start_time_seconds"));
    }
}
