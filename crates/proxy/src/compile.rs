//! Turns a validated [`certgate_config::Config`] into the runtime model the proxy serves from:
//! loaded certificates and CAs, compiled verifiers, header plans, route tables and upstream
//! pools. Everything that can fail (missing files, bad templates, unresolvable upstreams)
//! fails here, with the config location, before a single connection is accepted.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use certgate_config::{
    AllowRule, Config, ConfigError, ConfigErrors, HealthCheck, LbPolicy, OnFailure, Preset,
    UpstreamProtocol, VerifyMode,
};
use certgate_identity::{HeaderPlan, Template};
use certgate_pki::{ChainVerifier, TicketKeys, TicketKeysError};
use http::HeaderName;
use pingora_core::protocols::tls::CaType;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_core::utils::tls::{CertKey, WrappedX509};
use pingora_load_balancing::selection::{Consistent, Random, RoundRobin};
use pingora_load_balancing::{discovery, Backend, Backends, LoadBalancer};
use regex::Regex;
use rustls::pki_types::CertificateDer;
use rustls::sign::CertifiedKey;

use crate::routes::{AllowList, RouteMatcher};

/// Everything the proxy needs at run time, built from one configuration file.
pub struct Compiled {
    pub servers: Vec<CompiledServer>,
    /// One entry per distinct listen address: the indices of the servers sharing it.
    pub listeners: Vec<ListenerGroup>,
    pub upstreams: BTreeMap<String, Arc<CompiledUpstream>>,
    /// The largest `keepalive` among upstreams, for pingora's connector pool (the HTTP
    /// health checks; requests use certgate's own per-worker pools).
    pub keepalive_pool_size: usize,
    /// Non-fatal findings for `certgate check` (expiring certificates, long chains).
    pub warnings: Vec<String>,
    /// What clients may send, and for how long; applies to connections accepted after a
    /// reload.
    pub client_limits: certgate_config::ClientLimits,
    /// How request paths are normalized before every decision (certgate-path).
    pub paths: certgate_path::Options,
}

pub struct ListenerGroup {
    pub addr: SocketAddr,
    pub servers: Vec<usize>,
    /// TLS versions offered on the address, and whether sessions may be resumed: one
    /// rustls configuration serves every server on an address, so they must agree.
    pub protocols: Vec<certgate_config::TlsProtocol>,
    pub session_resumption: bool,
    /// `tls.session_ticket_keys`, read: tickets any process given the same files opens.
    /// `None`: rustls's default, sessions known to this process only. Servers sharing an
    /// address must name the same files.
    pub ticket_keys: Option<Arc<TicketKeys>>,
}

pub struct CompiledServer {
    pub name: String,
    pub server_names: Vec<String>,
    pub certified_key: Arc<CertifiedKey>,
    pub verify: VerifyMode,
    pub on_failure: OnFailure,
    /// `None` when `verify: off`: no certificate is requested.
    pub chain_verifier: Option<Arc<ChainVerifier>>,
    pub header_plan: HeaderPlan,
    pub routes: Vec<CompiledRoute>,
    pub alpn_h2: bool,
    /// `underscores_in_headers`: keep client headers whose names contain `_`.
    pub underscores_in_headers: bool,
    /// Some route has `signed_urls`: the server answers `POST /.certgate/sign` and checks
    /// signed requests that arrive without a certificate.
    pub signs: bool,
}

pub struct CompiledRoute {
    pub matcher: RouteMatcher,
    pub label: String,
    pub upstream: Arc<CompiledUpstream>,
    pub require_client_cert: bool,
    pub allow: AllowList,
    pub headers: Vec<(HeaderName, Template)>,
    /// 0 = unlimited, as nginx's `client_max_body_size 0`.
    pub max_body_size: u64,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub send_timeout: Duration,
    /// `signed_urls`, with its keys loaded.
    pub signed: Option<crate::signed::SignedRoute>,
    /// `upstream_path`: the matched prefix replaced in the path sent upstream.
    pub upstream_path: Option<crate::routes::UpstreamPath>,
}

pub enum Balancer {
    RoundRobin(Arc<LoadBalancer<RoundRobin>>),
    Random(Arc<LoadBalancer<Random>>),
    /// Ketama hashing on the caller's identity (see [`CompiledUpstream::hash_key`]).
    Consistent(Arc<LoadBalancer<Consistent>>),
}

/// Runs the same expression on whichever load balancer an upstream has.
macro_rules! with_lb {
    ($balancer:expr, $lb:ident => $body:expr) => {
        match $balancer {
            Balancer::RoundRobin($lb) => $body,
            Balancer::Random($lb) => $body,
            Balancer::Consistent($lb) => $body,
        }
    };
}

pub struct CompiledUpstream {
    pub name: String,
    pub balancer: Balancer,
    pub health_check: Option<HealthCheck>,
    pub protocol: UpstreamProtocol,
    /// `Some` exactly for `https` and `grpcs`.
    pub tls: Option<UpstreamTlsPlan>,
    /// Names this upstream's connection pools: unique per upstream and per compile, so a
    /// pooled connection is only reused by the upstream (and the generation of trust
    /// settings) it was opened and verified for; a plain-text and a TLS upstream may share
    /// an address.
    pub pool_key: u64,
    /// Idle HTTP/1.1 connections kept per server and worker thread (`keepalive`).
    pub keepalive: usize,
}

/// The upstream `tls:` block with every file loaded: what `upstream_peer` copies per request.
pub struct UpstreamTlsPlan {
    /// `sni:` as configured; `None` means the backend's host name as written in `servers`.
    pub sni: Option<String>,
    pub verify: bool,
    /// At most this many intermediates between the upstream's certificate and the trust
    /// anchor (`proxy_ssl_verify_depth`), enforced by [`certgate_pki::UpstreamVerifier`].
    pub verify_depth: u32,
    /// What requests connect with: certgate's verifier (or, for `verify: false`, one that
    /// checks only the handshake signatures), the client certificate, and ALPN for the
    /// protocol (`h2` for `grpcs`; `h2` and `http/1.1` for `https`).
    pub client: Arc<rustls::ClientConfig>,
    /// The same, offering only `http/1.1`: an `Upgrade` (WebSocket) cannot cross HTTP/2.
    pub client_h1: Arc<rustls::ClientConfig>,
    /// `trusted_ca:` for the HTTP health check (pingora's connector); `None`: system roots.
    pub ca: Option<Arc<CaType>>,
    /// `cert:`/`key:` for the HTTP health check.
    pub client_cert: Option<Arc<CertKey>>,
}

/// The host part of a `servers` entry, attached to its [`Backend`]s.
#[derive(Clone, Debug)]
pub struct BackendName(pub Arc<str>);

impl CompiledUpstream {
    /// The name to send as SNI and verify the certificate against for `backend`: `sni:`,
    /// else the host as written in `servers` (an IP address is checked against the
    /// certificate's IP SANs and sent without SNI). Never empty for TLS upstreams:
    /// pingora's rustls connector silently skips all verification for an empty SNI.
    pub fn server_name(&self, backend: &Backend) -> String {
        let Some(tls) = &self.tls else {
            return String::new();
        };
        if let Some(sni) = &tls.sni {
            return sni.clone();
        }
        backend
            .ext
            .get::<BackendName>()
            .map(|n| n.0.to_string())
            .unwrap_or_else(|| match backend.addr.as_inet() {
                Some(addr) => addr.ip().to_string(),
                None => String::new(),
            })
    }
}

impl CompiledUpstream {
    /// Picks a healthy backend. When every backend is marked down, picks one anyway, as
    /// nginx does: a health check that lags a restarted backend must not turn into a 502
    /// outage, and a backend that really is down still answers 502 on connect.
    pub fn select(&self, key: &[u8]) -> Option<Backend> {
        with_lb!(&self.balancer, lb => lb
            .select(key, 256)
            .or_else(|| lb.select_with(key, 256, |_, _| true)))
    }

    /// Whether health checks leave at least one server up.
    pub fn has_healthy_backend(&self) -> bool {
        with_lb!(&self.balancer, lb => lb.select(b"", 256).is_some())
    }

    /// The servers and their health, for the health-check service.
    pub fn backends(&self) -> &Backends {
        with_lb!(&self.balancer, lb => lb.backends())
    }

    /// Whether requests carry a hash key (`lb: consistent_hash`).
    pub fn is_consistent_hash(&self) -> bool {
        matches!(self.balancer, Balancer::Consistent(_))
    }
}

/// Loads every file the configuration names and builds the runtime model.
pub fn compile(config: &Config) -> Result<Compiled, ConfigErrors> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let now = unix_now();

    let mut upstreams = BTreeMap::new();
    let mut keepalive_pool_size = 0;
    for (name, upstream) in &config.upstreams {
        let key = format!("upstreams.{name}");
        keepalive_pool_size = keepalive_pool_size.max(upstream.keepalive);
        let tls = match &upstream.tls {
            Some(tls) => {
                match load_upstream_tls(config, &key, tls, upstream.protocol, now, &mut warnings) {
                    Ok(plan) => Some(plan),
                    Err(mut e) => {
                        errors.append(&mut e);
                        continue;
                    }
                }
            }
            None => None,
        };
        let mut backends = std::collections::BTreeSet::new();
        for (i, server) in upstream.servers.iter().enumerate() {
            match resolve(&server.address) {
                Ok(addrs) => {
                    for addr in addrs {
                        let mut backend = match Backend::new_with_weight(
                            &addr.to_string(),
                            server.weight as usize,
                        ) {
                            Ok(b) => b,
                            Err(e) => {
                                errors.push(
                                    config.error_at(&format!("{key}.servers[{i}]"), e.to_string()),
                                );
                                continue;
                            }
                        };
                        backend.weight = server.weight.max(1) as usize;
                        // The name the upstream certificate is checked against when no
                        // `sni` is configured (nginx's default `proxy_ssl_name`).
                        backend
                            .ext
                            .insert(BackendName(Arc::from(host_of(&server.address))));
                        backends.insert(backend);
                    }
                }
                Err(message) => {
                    errors.push(config.error_at(&format!("{key}.servers[{i}]"), message))
                }
            }
        }
        let discovery = discovery::Static::new(backends);
        let probe = HealthProbe {
            check: &upstream.health_check,
            protocol: upstream.protocol,
            tls: tls.as_ref(),
            host: upstream
                .servers
                .first()
                .map(|s| host_of(&s.address))
                .unwrap_or("localhost"),
        };
        let balancer = match upstream.lb {
            LbPolicy::RoundRobin => Balancer::RoundRobin(Arc::new(build_lb(discovery, &probe))),
            LbPolicy::Random => Balancer::Random(Arc::new(build_lb(discovery, &probe))),
            LbPolicy::ConsistentHash => Balancer::Consistent(Arc::new(build_lb(discovery, &probe))),
        };
        upstreams.insert(
            name.clone(),
            Arc::new(CompiledUpstream {
                name: name.clone(),
                balancer,
                health_check: upstream.health_check.clone(),
                protocol: upstream.protocol,
                tls,
                pool_key: next_pool_key(),
                keepalive: upstream.keepalive,
            }),
        );
    }

    let mut servers = Vec::new();
    // Per server, in `config.servers` order.
    let mut ticket_keys = Vec::new();
    for (si, server) in config.servers.iter().enumerate() {
        let key = format!("servers[{si}]");
        let tls = &server.tls;
        ticket_keys.push(match load_ticket_keys(config, &key, tls) {
            Ok(keys) => keys,
            Err(mut e) => {
                errors.append(&mut e);
                None
            }
        });
        let certified_key = match load_certified_key(
            "server certificate",
            config,
            &key,
            &tls.cert,
            &tls.key,
            now,
            &mut warnings,
        ) {
            Ok(k) => {
                check_server_cert_usage(config, &key, server, &k, &mut errors, &mut warnings);
                Some(k)
            }
            Err(e) => {
                errors.push(e);
                None
            }
        };

        let auth = &server.client_auth;
        let chain_verifier = if auth.verify == VerifyMode::Off {
            None
        } else {
            match load_chain_verifier(config, &key, auth, now, &mut warnings) {
                Ok(v) => Some(Arc::new(v)),
                Err(mut e) => {
                    errors.append(&mut e);
                    None
                }
            }
        };

        let presets: Vec<certgate_identity::Preset> = server
            .identity
            .presets
            .iter()
            .map(|p| match p {
                Preset::Nginx => certgate_identity::Preset::Nginx,
                Preset::Xfcc => certgate_identity::Preset::Xfcc,
                Preset::Rfc9440 => certgate_identity::Preset::Rfc9440,
                Preset::None => certgate_identity::Preset::None,
            })
            .collect();
        let header_plan = match HeaderPlan::new(&presets, &server.identity.set) {
            Ok(plan) => Some(plan),
            Err(e) => {
                errors.push(config.error_at(&format!("{key}.identity.set"), e.to_string()));
                None
            }
        };

        let mut routes = Vec::new();
        for (ri, route) in server.routes.iter().enumerate() {
            let rkey = format!("{key}.routes[{ri}]");
            let Some(upstream) = upstreams.get(&route.upstream).cloned() else {
                // Either unknown (the config crate reports it) or rejected above.
                continue;
            };
            let path_regex = match route
                .matcher
                .path_regex
                .as_deref()
                .map(Regex::new)
                .transpose()
            {
                Ok(r) => r,
                Err(e) => {
                    errors
                        .push(config.error_at(&format!("{rkey}.match.path_regex"), e.to_string()));
                    continue;
                }
            };
            let matcher = RouteMatcher {
                path: route.matcher.path.clone(),
                path_prefix: route.matcher.path_prefix.clone(),
                path_regex,
                grpc_service: route
                    .matcher
                    .grpc_service
                    .as_ref()
                    .map(|s| format!("/{s}/")),
                host: route.matcher.host.as_ref().map(|h| h.to_ascii_lowercase()),
            };
            let mut headers = Vec::new();
            for (name, value) in &route.headers {
                let header_key = format!("{rkey}.headers.{name}");
                let name =
                    match HeaderName::from_bytes(name.as_bytes()) {
                        Ok(n) => n,
                        Err(_) => {
                            errors.push(config.error_at(
                                &header_key,
                                format!("`{name}` is not a valid header name"),
                            ));
                            continue;
                        }
                    };
                match Template::parse(value) {
                    Ok(t) => headers.push((name, t)),
                    Err(e) => errors.push(config.error_at(&header_key, e.to_string())),
                }
            }
            let allow = match AllowList::new(
                route.allow.iter().map(normalize_allow_rule).collect(),
                route.deny.iter().map(normalize_allow_rule).collect(),
                route.deny_all,
            ) {
                Ok(allow) => allow,
                Err(e) => {
                    errors.push(config.error_at(&rkey, format!("allow/deny: {e}")));
                    continue;
                }
            };
            let signed = match &route.signed_urls {
                None => None,
                Some(signed) => match load_url_keys(config, &rkey, signed) {
                    Ok(keys) => Some(crate::signed::SignedRoute {
                        keys,
                        max_ttl: signed.max_ttl.as_secs(),
                        bind_client_ip: signed.bind == certgate_config::SignedUrlBind::ClientIp,
                    }),
                    Err(mut e) => {
                        errors.append(&mut e);
                        continue;
                    }
                },
            };
            routes.push(CompiledRoute {
                matcher,
                label: route_label(route, ri),
                upstream,
                require_client_cert: route.require_client_cert,
                allow,
                headers,
                max_body_size: route.max_body_size.unwrap_or(0),
                connect_timeout: route.timeouts.connect,
                read_timeout: route.timeouts.read,
                send_timeout: route.timeouts.send,
                signed,
                upstream_path: route.upstream_path.as_ref().and_then(|replacement| {
                    let matched = route
                        .matcher
                        .path_prefix
                        .as_ref()
                        .or(route.matcher.path.as_ref())?;
                    Some(crate::routes::UpstreamPath {
                        matched: matched.clone(),
                        replacement: replacement.clone(),
                    })
                }),
            });
        }

        if let (Some(certified_key), Some(header_plan)) = (certified_key, header_plan) {
            servers.push(CompiledServer {
                name: server.name.clone(),
                server_names: server
                    .server_names
                    .iter()
                    .map(|n| n.to_ascii_lowercase())
                    .collect(),
                certified_key,
                verify: server.client_auth.verify,
                on_failure: server.client_auth.on_failure,
                chain_verifier,
                header_plan,
                signs: routes.iter().any(|r| r.signed.is_some()),
                routes,
                alpn_h2: server.tls.alpn.contains(&certgate_config::Alpn::H2),
                underscores_in_headers: config.client_limits.underscores_in_headers,
            });
        }
    }

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }

    let mut listeners: Vec<ListenerGroup> = Vec::new();
    for (si, server) in config.servers.iter().enumerate() {
        let tls = &server.tls;
        for addr in &server.listen {
            match listeners.iter_mut().find(|l| l.addr == *addr) {
                Some(group) => {
                    // The protocol version is agreed before SNI picks a server, so one
                    // address cannot offer different versions per server.
                    let first = &config.servers[group.servers[0]];
                    for (setting, differs) in [
                        ("protocols", group.protocols != tls.protocols),
                        (
                            "session_resumption",
                            group.session_resumption != tls.session_resumption,
                        ),
                        (
                            "session_ticket_keys",
                            first.tls.session_ticket_keys != tls.session_ticket_keys,
                        ),
                    ] {
                        if differs {
                            errors.push(config.error_at(
                                &format!("servers[{si}].tls.{setting}"),
                                format!(
                                    "differs from server `{}`, which also listens on {addr}; \
                                     servers sharing a listen address must agree on tls.{setting}",
                                    first.name
                                ),
                            ));
                        }
                    }
                    group.servers.push(si);
                }
                None => listeners.push(ListenerGroup {
                    addr: *addr,
                    servers: vec![si],
                    protocols: tls.protocols.clone(),
                    session_resumption: tls.session_resumption,
                    ticket_keys: ticket_keys.get(si).cloned().flatten(),
                }),
            }
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }

    Ok(Compiled {
        servers,
        listeners,
        upstreams,
        keepalive_pool_size: keepalive_pool_size.max(1),
        warnings,
        client_limits: config.client_limits,
        paths: config.paths,
    })
}

/// What an upstream's active health check needs to reach it the way requests do.
struct HealthProbe<'a> {
    check: &'a Option<HealthCheck>,
    protocol: UpstreamProtocol,
    tls: Option<&'a UpstreamTlsPlan>,
    /// Host header, and the name verified when no `sni` is set (pingora's health check
    /// has one peer template for all backends: the first server's host).
    host: &'a str,
}

/// Protocol and TLS settings of a peer to `protocol`/`tls`: shared by the request path
/// and the HTTP health check, so both speak to the upstream alike.
pub fn configure_peer(
    peer: &mut HttpPeer,
    protocol: UpstreamProtocol,
    tls: Option<&UpstreamTlsPlan>,
) {
    match protocol {
        UpstreamProtocol::Http => peer.options.set_http_version(1, 1),
        // ALPN picks h2 or HTTP/1.1.
        UpstreamProtocol::Https => peer.options.set_http_version(2, 1),
        // Prior knowledge: plain-text peers speak h2 from the first byte; TLS peers
        // must agree to h2 by ALPN, as gRPC requires.
        UpstreamProtocol::H2c | UpstreamProtocol::Grpc | UpstreamProtocol::Grpcs => {
            peer.options.set_http_version(2, 2)
        }
    }
    if let Some(tls) = tls {
        peer.options.verify_cert = tls.verify;
        peer.options.verify_hostname = tls.verify;
        peer.options.ca = tls.ca.clone();
        peer.client_cert_key = tls.client_cert.clone();
    }
}

fn build_lb<S>(discovery: Box<discovery::Static>, probe: &HealthProbe<'_>) -> LoadBalancer<S>
where
    S: pingora_load_balancing::selection::BackendSelection + 'static,
    S::Iter: pingora_load_balancing::selection::BackendIter,
{
    let mut lb = LoadBalancer::<S>::from_backends(Backends::new(discovery));
    // Static discovery never blocks: populate the selector now so the first request has backends.
    if let Some(Err(e)) = futures_now_or_never(lb.update()) {
        tracing::warn!("upstream discovery failed: {e}");
    }
    match probe.check {
        Some(HealthCheck::Tcp { interval }) => {
            lb.set_health_check(pingora_load_balancing::health_check::TcpHealthCheck::new());
            lb.health_check_frequency = Some(*interval);
        }
        Some(HealthCheck::Http { path, interval }) => {
            let name = probe
                .tls
                .and_then(|t| t.sni.as_deref())
                .unwrap_or(probe.host);
            let mut hc = pingora_load_balancing::health_check::HttpHealthCheck::new(
                name,
                probe.protocol.is_tls(),
            );
            configure_peer(&mut hc.peer_template, probe.protocol, probe.tls);
            if let Ok(uri) = path.parse() {
                hc.req.set_uri(uri);
            }
            lb.set_health_check(Box::new(hc));
            lb.health_check_frequency = Some(*interval);
        }
        None => {}
    }
    lb
}

/// Polls a future once; static discovery completes immediately.
fn futures_now_or_never<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut fut = std::pin::pin!(fut);
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

fn resolve(address: &str) -> Result<Vec<SocketAddr>, String> {
    match address.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(format!("`{address}` resolved to no addresses"))
            } else {
                Ok(addrs)
            }
        }
        Err(e) => Err(format!("cannot resolve `{address}`: {e}")),
    }
}

fn route_label(route: &certgate_config::RouteConfig, index: usize) -> String {
    let m = &route.matcher;
    m.path
        .clone()
        .or_else(|| m.path_prefix.clone())
        .or_else(|| m.grpc_service.clone())
        .or_else(|| m.path_regex.clone())
        .or_else(|| m.host.clone())
        .unwrap_or_else(|| format!("route{index}"))
}

fn normalize_allow_rule(rule: &AllowRule) -> AllowRule {
    match rule {
        AllowRule::FingerprintSha256(v) => {
            AllowRule::FingerprintSha256(v.iter().map(|f| normalize_hex(f)).collect())
        }
        AllowRule::SpkiSha256(v) => {
            AllowRule::SpkiSha256(v.iter().map(|f| normalize_hex(f)).collect())
        }
        AllowRule::FingerprintSha1(v) => {
            AllowRule::FingerprintSha1(v.iter().map(|f| normalize_hex(f)).collect())
        }
        other => other.clone(),
    }
}

/// Accepts `AB:CD:…` or `abcd…` as people paste fingerprints from openssl.
fn normalize_hex(s: &str) -> String {
    s.chars()
        .filter(|c| *c != ':')
        .flat_map(|c| c.to_lowercase())
        .collect()
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

const EXPIRY_WARNING_SECS: i64 = 30 * 86_400;

fn expiry_warnings(
    what: &str,
    file: &Path,
    certs: &[CertificateDer<'static>],
    now: i64,
    warnings: &mut Vec<String>,
) {
    for cert in certs {
        if let Ok(summary) = certgate_pki::summarize(cert) {
            let left = summary.not_after_unix - now;
            if left < 0 {
                warnings.push(format!(
                    "{what} {} ({}) has expired",
                    file.display(),
                    summary.subject
                ));
            } else if left < EXPIRY_WARNING_SECS {
                warnings.push(format!(
                    "{what} {} ({}) expires in {} days",
                    file.display(),
                    summary.subject,
                    left / 86_400
                ));
            }
        }
    }
}

fn load_certified_key(
    what: &str,
    config: &Config,
    key: &str,
    cert_path: &Path,
    key_path: &Path,
    now: i64,
    warnings: &mut Vec<String>,
) -> Result<Arc<CertifiedKey>, ConfigError> {
    let certs = certgate_pki::load_certs(cert_path)
        .map_err(|e| config.error_at(&format!("{key}.tls.cert"), e.to_string()))?;
    let private_key = certgate_pki::load_private_key(key_path)
        .map_err(|e| config.error_at(&format!("{key}.tls.key"), e.to_string()))?;
    match certs
        .first()
        .map(|leaf| certgate_pki::key_matches_certificate(leaf, &private_key))
    {
        Some(Ok(true)) => {}
        Some(Ok(false)) => {
            return Err(config.error_at(
                &format!("{key}.tls.key"),
                format!(
                    "{} does not match the certificate in {}",
                    key_path.display(),
                    cert_path.display()
                ),
            ))
        }
        Some(Err(e)) => return Err(config.error_at(&format!("{key}.tls.key"), e.to_string())),
        None => {
            return Err(config.error_at(
                &format!("{key}.tls.cert"),
                format!("no certificate in {}", cert_path.display()),
            ))
        }
    }
    expiry_warnings(what, cert_path, &certs[..1], now, warnings);
    let provider = crate::crypto_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(private_key)
        .map_err(|e| {
            config.error_at(
                &format!("{key}.tls.key"),
                format!("{}: unsupported key: {e}", key_path.display()),
            )
        })?;
    Ok(Arc::new(CertifiedKey::new(certs, signing_key)))
}

/// A server certificate TLS clients would refuse is an error here rather than a failed
/// handshake later: an extendedKeyUsage without serverAuth (a client certificate used as
/// `tls.cert`), or `server_names` none of which the certificate's subjectAltName covers.
/// Names only some of which are covered, or no names at all without `server_names`
/// (nginx serves such a certificate; browsers refuse it), are warnings.
fn check_server_cert_usage(
    config: &Config,
    key: &str,
    server: &certgate_config::ServerConfig,
    certified: &CertifiedKey,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) {
    let cert_path = &server.tls.cert;
    let at = format!("{key}.tls.cert");
    let Some(leaf) = certified.cert.first() else {
        return;
    };
    let usage = match certgate_pki::ServerCertUsage::of(leaf) {
        Ok(usage) => usage,
        Err(e) => {
            errors.push(config.error_at(&at, format!("{}: {e}", cert_path.display())));
            return;
        }
    };
    if usage.eku_server_auth == Some(false) {
        errors.push(config.error_at(
            &at,
            format!(
                "{} is not a server certificate: its extended key usage does not include \
                 serverAuth (TLS Web Server Authentication), so TLS clients refuse it; use \
                 a server certificate (`certgate certs issue server --dns NAME`)",
                cert_path.display()
            ),
        ));
    }
    let names = describe_names(&usage);
    if server.server_names.is_empty() {
        if !usage.has_names() {
            warnings.push(
                config
                    .error_at(
                        &at,
                        format!(
                            "{} has no DNS or IP subjectAltName: browsers and most TLS \
                             clients ignore the subject CN and will refuse it for any name",
                            cert_path.display()
                        ),
                    )
                    .to_string(),
            );
        }
        return;
    }
    let uncovered: Vec<&str> = server
        .server_names
        .iter()
        .filter(|name| !usage.matches(name))
        .map(String::as_str)
        .collect();
    if uncovered.len() == server.server_names.len() {
        errors.push(config.error_at(
            &at,
            format!(
                "{} is not valid for any of server_names ({}): its subjectAltName has {names} \
                 (clients ignore the subject CN); issue one with `certgate certs issue server \
                 --dns NAME`",
                cert_path.display(),
                server.server_names.join(", ")
            ),
        ));
    } else if !uncovered.is_empty() {
        warnings.push(
            config
                .error_at(
                    &format!("{key}.server_names"),
                    format!(
                        "{} not covered by {} (subjectAltName: {names}): clients asking for \
                         {} will refuse the certificate",
                        uncovered.join(", "),
                        cert_path.display(),
                        if uncovered.len() == 1 { "it" } else { "them" }
                    ),
                )
                .to_string(),
        );
    }
}

fn describe_names(usage: &certgate_pki::ServerCertUsage) -> String {
    let names: Vec<String> = usage
        .dns_names
        .iter()
        .map(|n| format!("DNS:{n}"))
        .chain(usage.ip_addresses.iter().map(|ip| format!("IP:{ip}")))
        .collect();
    if names.is_empty() {
        "no DNS or IP names".to_string()
    } else {
        names.join(", ")
    }
}

/// Every certificate of a `client_auth.ca`/`trusted_ca` file must be able to anchor a
/// client chain: a certificate that is no CA (for OpenSSL: basicConstraints CA:TRUE, a
/// self-signed version 1 root, …) is an error, with the verifier's own test. A
/// self-signed end-entity certificate (trusted as itself only) and a CA whose
/// extendedKeyUsage excludes clientAuth are warnings.
fn check_anchors(
    config: &Config,
    at: &str,
    path: &Path,
    certs: &[CertificateDer<'static>],
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) {
    use certgate_pki::AnchorKind;
    for (i, cert) in certs.iter().enumerate() {
        let subject = certgate_pki::summarize(cert)
            .map(|s| s.subject)
            .unwrap_or_default();
        let which = if certs.len() > 1 {
            format!("{} (certificate #{}, {subject})", path.display(), i + 1)
        } else {
            format!("{} ({subject})", path.display())
        };
        match certgate_pki::anchor_kind(cert) {
            Ok(AnchorKind::Ca) => {}
            Ok(AnchorKind::Leaf) => errors.push(config.error_at(
                at,
                format!(
                    "{which} is not a CA certificate (no basicConstraints CA:TRUE): it cannot \
                     have issued client certificates, so no client would verify; name the CA \
                     that issued them (e.g. the ca.crt of `certgate certs init`)"
                ),
            )),
            Ok(AnchorKind::SelfSignedLeaf) => warnings.push(
                config
                    .error_at(
                        at,
                        format!(
                            "{which} is a self-signed end-entity certificate, not a CA: only \
                             a client presenting exactly this certificate verifies"
                        ),
                    )
                    .to_string(),
            ),
            Ok(AnchorKind::CaWithoutClientAuth) => warnings.push(
                config
                    .error_at(
                        at,
                        format!(
                            "{which} restricts its extended key usage without clientAuth: \
                             every client certificate under it fails with \"unsuitable \
                             certificate purpose\""
                        ),
                    )
                    .to_string(),
            ),
            Err(e) => errors.push(config.error_at(at, format!("{}: {e}", path.display()))),
        }
    }
}

fn load_chain_verifier(
    config: &Config,
    key: &str,
    auth: &certgate_config::ClientAuthConfig,
    now: i64,
    warnings: &mut Vec<String>,
) -> Result<ChainVerifier, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut ca = Vec::new();
    if let Some(path) = &auth.ca {
        match certgate_pki::load_certs(path) {
            Ok(certs) => {
                expiry_warnings("client CA", path, &certs, now, warnings);
                let at = format!("{key}.client_auth.ca");
                check_anchors(config, &at, path, &certs, &mut errors, warnings);
                ca = certs;
            }
            Err(e) => errors.push(config.error_at(&format!("{key}.client_auth.ca"), e.to_string())),
        }
    }
    let mut trusted = Vec::new();
    for (i, path) in auth.trusted_ca.iter().enumerate() {
        match certgate_pki::load_certs(path) {
            Ok(mut certs) => {
                expiry_warnings("trusted CA", path, &certs, now, warnings);
                let at = format!("{key}.client_auth.trusted_ca[{i}]");
                check_anchors(config, &at, path, &certs, &mut errors, warnings);
                trusted.append(&mut certs);
            }
            Err(e) => errors.push(
                config.error_at(&format!("{key}.client_auth.trusted_ca[{i}]"), e.to_string()),
            ),
        }
    }
    let crls = match certgate_pki::load_crls(&auth.crl) {
        Ok(c) => c,
        Err(e) => {
            errors.push(config.error_at(&format!("{key}.client_auth.crl"), e.to_string()));
            Vec::new()
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    ChainVerifier::new(ca, trusted, crls, auth.verify_depth)
        .map_err(|e| vec![config.error_at(&format!("{key}.client_auth"), e.to_string())])
}

/// `tls.session_ticket_keys`: every file read (exactly 80 bytes each), an error located
/// at the file's list entry otherwise; `None` without keys. Messages name files and sizes,
/// never key bytes.
/// Reads a route's `signed_urls.key_file` list; errors name the file's list entry.
fn load_url_keys(
    config: &Config,
    rkey: &str,
    signed: &certgate_config::SignedUrlsConfig,
) -> Result<Arc<certgate_pki::UrlKeys>, Vec<ConfigError>> {
    let at = |i: usize| format!("{rkey}.signed_urls.key_file[{i}]");
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for (i, path) in signed.key_files.iter().enumerate() {
        match certgate_pki::load_url_key(path) {
            Ok(bytes) => files.push(bytes),
            Err(e) => errors.push(config.error_at(&at(i), e.to_string())),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    match certgate_pki::UrlKeys::new(files) {
        Ok(keys) => Ok(Arc::new(keys)),
        Err(certgate_pki::UrlKeysError::Duplicate { first, second }) => Err(vec![config.error_at(
            &at(second),
            format!("holds the same key as key_file[{first}]; generate each key separately"),
        )]),
        Err(e) => {
            Err(vec![config.error_at(
                &format!("{rkey}.signed_urls.key_file"),
                e.to_string(),
            )])
        }
    }
}

fn load_ticket_keys(
    config: &Config,
    key: &str,
    tls: &certgate_config::TlsConfig,
) -> Result<Option<Arc<TicketKeys>>, Vec<ConfigError>> {
    if tls.session_ticket_keys.is_empty() {
        return Ok(None);
    }
    let at = |i: usize| format!("{key}.tls.session_ticket_keys[{i}]");
    let mut errors = Vec::new();
    let mut files = Vec::new();
    for (i, path) in tls.session_ticket_keys.iter().enumerate() {
        match certgate_pki::load_ticket_key(path) {
            Ok(bytes) => files.push(bytes),
            Err(e) => errors.push(config.error_at(&at(i), e.to_string())),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    match TicketKeys::from_files_bytes(files) {
        Ok(keys) => Ok(Some(Arc::new(keys))),
        Err(TicketKeysError::DuplicateName { first, second }) => {
            let path = |i: usize| {
                tls.session_ticket_keys
                    .get(i)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            };
            Err(vec![config.error_at(
                &at(second),
                format!(
                    "{}: same key name (first 16 bytes) as session_ticket_keys[{first}] ({}); \
                     each key file must be generated separately (or is listed twice)",
                    path(second),
                    path(first)
                ),
            )])
        }
        Err(e) => {
            Err(vec![config.error_at(
                &format!("{key}.tls.session_ticket_keys"),
                e.to_string(),
            )])
        }
    }
}

/// Source of [`CompiledUpstream::pool_key`]: never repeats within a process.
fn next_pool_key() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// `host` of `host:port` / `[v6]:port`, without brackets.
fn host_of(address: &str) -> &str {
    let host = match address.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => address,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Loads the upstream `tls:` files once, at startup and on reload, and builds the rustls
/// configurations requests connect with. pingora's loaders (used by the HTTP health check)
/// panic on unparsable input, so every certificate and key is checked here first.
fn load_upstream_tls(
    config: &Config,
    key: &str,
    tls: &certgate_config::UpstreamTls,
    protocol: UpstreamProtocol,
    now: i64,
    warnings: &mut Vec<String>,
) -> Result<UpstreamTlsPlan, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut roots = Vec::new();
    let ca =
        match &tls.trusted_ca {
            Some(path) => match certgate_pki::load_certs(path) {
                Ok(certs) => {
                    expiry_warnings("upstream trusted CA", path, &certs, now, warnings);
                    let mut wrapped = Vec::new();
                    for cert in &certs {
                        if let Err(e) = certgate_pki::summarize(cert) {
                            errors.push(config.error_at(
                                &format!("{key}.tls.trusted_ca"),
                                format!("{}: {e}", path.display()),
                            ));
                            continue;
                        }
                        if let Err(e) = rustls::RootCertStore::empty().add(cert.clone()) {
                            errors.push(config.error_at(
                                &format!("{key}.tls.trusted_ca"),
                                format!("{}: not usable as a trust anchor: {e}", path.display()),
                            ));
                            continue;
                        }
                        roots.push(cert.clone());
                        wrapped.push(WrappedX509::new(
                            cert.as_ref().to_vec(),
                            pingora_core::utils::tls::parse_x509,
                        ));
                    }
                    let ca: Arc<CaType> = Arc::from(wrapped.into_boxed_slice());
                    Some(ca)
                }
                Err(e) => {
                    errors.push(config.error_at(&format!("{key}.tls.trusted_ca"), e.to_string()));
                    None
                }
            },
            None => {
                if tls.verify {
                    // nginx's default `proxy_ssl_trusted_certificate` is empty (verification then
                    // always fails); the system roots are what pingora used and what users expect
                    // for public upstreams.
                    let native = rustls_native_certs::load_native_certs().unwrap_or_default();
                    if native.is_empty() {
                        errors.push(config.error_at(
                        &format!("{key}.tls"),
                        "verify is on, no trusted_ca is set and no system root certificates \
                         could be loaded; set tls.trusted_ca"
                            .to_string(),
                    ));
                    }
                    roots = native;
                }
                None
            }
        };
    let mut client_identity = None;
    let client_cert = match (&tls.cert, &tls.key) {
        (Some(cert_path), Some(key_path)) => {
            match load_certified_key(
                "upstream client certificate",
                config,
                key,
                cert_path,
                key_path,
                now,
                warnings,
            ) {
                Ok(certified) => {
                    let der_key = certgate_pki::load_private_key(key_path)
                        .map_err(|e| e.to_string())
                        .and_then(|k| {
                            let der = k.secret_der().to_vec();
                            // pingora re-detects the key format from bare DER.
                            rustls::pki_types::PrivateKeyDer::try_from(der.clone())
                                .map(|_| der)
                                .map_err(|e| format!("{}: {e}", key_path.display()))
                        })
                        .and_then(|der| {
                            match certified
                                .cert
                                .iter()
                                .find_map(|c| certgate_pki::summarize(c).err())
                            {
                                Some(e) => Err(format!("{}: {e}", cert_path.display())),
                                None => Ok(der),
                            }
                        })
                        .map_err(|e| config.error_at(&format!("{key}.tls.cert"), e));
                    match der_key {
                        Ok(der_key) => {
                            client_identity = Some((certified.cert.clone(), der_key.clone()));
                            Some(Arc::new(CertKey::new(
                                certified.cert.iter().map(|c| c.as_ref().to_vec()).collect(),
                                der_key,
                            )))
                        }
                        Err(e) => {
                            errors.push(e);
                            None
                        }
                    }
                }
                Err(e) => {
                    errors.push(e);
                    None
                }
            }
        }
        _ => None,
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let alpn: &[&[u8]] = match protocol {
        UpstreamProtocol::Grpcs | UpstreamProtocol::Grpc | UpstreamProtocol::H2c => &[b"h2"],
        UpstreamProtocol::Https => &[b"h2", b"http/1.1"],
        UpstreamProtocol::Http => &[b"http/1.1"],
    };
    let build = |alpn: &[&[u8]]| {
        upstream_client_config(tls, &roots, client_identity.clone(), alpn)
            .map_err(|e| vec![config.error_at(&format!("{key}.tls"), e)])
    };
    Ok(UpstreamTlsPlan {
        sni: tls.sni.clone(),
        verify: tls.verify,
        verify_depth: tls.verify_depth,
        client: build(alpn)?,
        client_h1: build(&[b"http/1.1"])?,
        ca,
        client_cert,
    })
}

/// One rustls `ClientConfig` for an upstream: certgate's verifier with `verify_depth`
/// (or, for `verify: false`, one that still checks the handshake signatures), the client
/// certificate when configured, and `alpn`.
fn upstream_client_config(
    tls: &certgate_config::UpstreamTls,
    roots: &[CertificateDer<'static>],
    identity: Option<(Vec<CertificateDer<'static>>, Vec<u8>)>,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = crate::crypto_provider();
    let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = if tls.verify {
        Arc::new(
            certgate_pki::UpstreamVerifier::new(roots.to_vec(), tls.verify_depth, provider.clone())
                .map_err(|e| e.to_string())?,
        )
    } else {
        Arc::new(certgate_pki::NoUpstreamVerification::new(provider.clone()))
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some((chain, key)) => {
            let key = rustls::pki_types::PrivateKeyDer::try_from(key).map_err(str::to_string)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::host_of;

    #[test]
    fn host_of_server_entries() {
        assert_eq!(host_of("backend.internal:8443"), "backend.internal");
        assert_eq!(host_of("127.0.0.1:50051"), "127.0.0.1");
        assert_eq!(host_of("[::1]:443"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
    }
}
