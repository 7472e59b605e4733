//! The validated configuration model every other crate codes against. Each field says
//! its default; every value here has already been checked (addresses parse, paths are
//! resolved against the config file's directory, enums are known, references resolve).
//! Nothing here touches the filesystem: opening the files is the next stage's job.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `admin:` — the metrics and health listener. Absent = no admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Required inside `admin:`.
    pub listen: SocketAddr,
}

/// What a client may send, and for how long, before and while its requests are read:
/// nginx's names and defaults, top-level keys in `gateway.yaml`. They bound what an
/// unauthenticated connection can hold (docs/security.md). A reload applies them to
/// connections accepted after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientLimits {
    /// `client_header_timeout` (default 60s): the TLS handshake, the wait for the first
    /// request, and each request header from its first byte must be done within it.
    pub client_header_timeout: Duration,
    /// `client_body_timeout` (default 60s): the longest wait between two reads of a
    /// request body.
    pub client_body_timeout: Duration,
    /// `large_client_header_buffers` (default `4 8k`): the number and size of header
    /// buffers. The request line and every header line must fit in one buffer (else 414
    /// for the request line, 400 for a header line); the whole header, request line
    /// included, in all of them (else 431). HTTP/2 header lists get the same total.
    pub header_buffers: u32,
    pub header_buffer_size: u64,
    /// `max_headers` (default 100): header lines per request; more is a 431.
    pub max_headers: usize,
    /// `max_connections` (default 16384): open client connections per listen address;
    /// at the limit certgate stops accepting until one closes (the kernel's backlog holds
    /// the next ones).
    pub max_connections: usize,
    /// `http2_max_concurrent_streams` (default 128): streams one HTTP/2 connection may
    /// have open at once.
    pub http2_max_concurrent_streams: u32,
    /// `underscores_in_headers` (default false): request headers whose names contain `_`
    /// are dropped, as nginx does, because CGI/WSGI servers read `X_SSL_Client_S_DN` and
    /// `X-SSL-Client-S-DN` as the same variable.
    pub underscores_in_headers: bool,
}

impl ClientLimits {
    /// The largest request header (request line included) accepted.
    pub fn max_header_bytes(&self) -> u64 {
        u64::from(self.header_buffers).saturating_mul(self.header_buffer_size)
    }
}

impl Default for ClientLimits {
    fn default() -> Self {
        ClientLimits {
            client_header_timeout: Duration::from_secs(60),
            client_body_timeout: Duration::from_secs(60),
            header_buffers: 4,
            header_buffer_size: 8 * 1024,
            max_headers: 100,
            max_connections: 16384,
            http2_max_concurrent_streams: 128,
            underscores_in_headers: false,
        }
    }
}

/// `log:`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// One of `error`, `warn`, `info`, `debug`, `trace`; default `info`.
    pub level: String,
    /// Default `stdout`.
    pub access: AccessLog,
    /// Default `combined`.
    pub format: LogFormat,
    /// `log.stderr_format`: how the gateway's own log lines (startup, reloads, errors) are
    /// written to stderr. Default `text`. Fixed at start: a reload does not change it.
    pub stderr_format: StderrFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_string(),
            access: AccessLog::Stdout,
            format: LogFormat::Combined,
            stderr_format: StderrFormat::Text,
        }
    }
}

/// `log.access`: `stdout`, `off` (also YAML `false`), or a file path (resolved against the
/// config file's directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    Stdout,
    Off,
    File(PathBuf),
}

/// `log.format`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// nginx `combined` plus the client certificate's subject DN, verify result and timings.
    Combined,
    /// One JSON object per line with the same fields.
    Json,
}

/// `log.stderr_format`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StderrFormat {
    /// One human-readable line per event; terminal colours only when stderr is a terminal.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`, `target`), for log
    /// collectors.
    Json,
}

/// One `servers:` item: a TLS virtual server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Label in logs and metrics; default `server<index>` (`server0` for the first).
    /// Unique across servers.
    pub name: String,
    /// At least one address. Accepts a list or a single value; `8443` or `*:8443` mean
    /// `0.0.0.0:8443` as in nginx's `listen`.
    pub listen: Vec<SocketAddr>,
    /// SNI / Host names, lower-cased (DNS names compare case-insensitively); `*.example.org`
    /// wildcards allowed. Empty (the default) = the default server for its addresses; an
    /// address has at most one default server and a name belongs to one server per address.
    pub server_names: Vec<String>,
    pub tls: TlsConfig,
    pub client_auth: ClientAuthConfig,
    pub identity: IdentityConfig,
    /// At least one.
    pub routes: Vec<RouteConfig>,
}

/// `servers[].tls:` — the server's own certificate and TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// Required; PEM chain, leaf first (nginx `ssl_certificate`).
    pub cert: PathBuf,
    /// Required; PEM private key (nginx `ssl_certificate_key`).
    pub key: PathBuf,
    /// Default `[TLSv1.2, TLSv1.3]`; TLSv1 and TLSv1.1 are refused.
    pub protocols: Vec<TlsProtocol>,
    /// Default `[h2, http/1.1]`, in preference order.
    pub alpn: Vec<Alpn>,
    /// Default `true` (TLS 1.3 tickets / session cache); `false` forces full handshakes.
    pub session_resumption: bool,
    /// `session_ticket_keys` (nginx `ssl_session_ticket_key`): 80-byte key files; the first
    /// seals session tickets, all of them open tickets, so processes given the same files
    /// resume each other's sessions. Default `[]`: each process makes its own keys.
    pub session_ticket_keys: Vec<PathBuf>,
}

/// A TLS version, written `TLSv1.2` / `TLSv1.3` as in nginx's `ssl_protocols`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TlsProtocol {
    Tls12,
    Tls13,
}

impl TlsProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsProtocol::Tls12 => "TLSv1.2",
            TlsProtocol::Tls13 => "TLSv1.3",
        }
    }
}

/// An ALPN protocol the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alpn {
    H2,
    Http11,
}

impl Alpn {
    /// The protocol id on the wire (`h2`, `http/1.1`).
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Alpn::H2 => b"h2",
            Alpn::Http11 => b"http/1.1",
        }
    }
}

/// `servers[].client_auth:` — client certificate verification. The whole block is
/// optional; its defaults (`verify: on`) then still require `ca` or `trusted_ca`, so a
/// server never silently runs without client authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuthConfig {
    /// Default `on`. YAML `true`/`false` are read as `on`/`off`.
    pub verify: VerifyMode,
    /// nginx `ssl_client_certificate`: trusted, and named in the CertificateRequest.
    pub ca: Option<PathBuf>,
    /// nginx `ssl_trusted_certificate`: trusted, not named. Default empty.
    pub trusted_ca: Vec<PathBuf>,
    /// nginx `ssl_crl`. Default empty.
    pub crl: Vec<PathBuf>,
    /// At most this many intermediates between the client certificate and a trust anchor
    /// (nginx `ssl_verify_depth` with OpenSSL >= 1.1). Default 1.
    pub verify_depth: u32,
    /// Default `http`.
    pub on_failure: OnFailure,
}

/// nginx's `ssl_verify_client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VerifyMode {
    /// A verified certificate is required. Needs `ca` or `trusted_ca`.
    On,
    /// A certificate is requested; if sent it must verify. Needs `ca` or `trusted_ca`.
    Optional,
    /// A certificate is requested and parsed, but its chain need not verify.
    OptionalNoCa,
    /// No certificate is requested.
    Off,
}

impl VerifyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyMode::On => "on",
            VerifyMode::Optional => "optional",
            VerifyMode::OptionalNoCa => "optional_no_ca",
            VerifyMode::Off => "off",
        }
    }
}

/// What happens when a required client certificate is missing or bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OnFailure {
    /// Finish the handshake and answer 400, as nginx does.
    Http,
    /// Abort the handshake with a TLS alert.
    Handshake,
}

/// `servers[].identity:` — which headers carry the client's identity upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Default `[nginx]`; `preset: none` (or `[]`) is `[None]`. Duplicates are dropped;
    /// `none` cannot be combined with another preset.
    pub presets: Vec<Preset>,
    /// Header name → template, in file order (validated header names; templates are
    /// parsed by the identity crate). Default empty.
    pub set: Vec<(String, String)>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            presets: vec![Preset::Nginx],
            set: Vec::new(),
        }
    }
}

/// A predefined set of identity headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    Nginx,
    Xfcc,
    Rfc9440,
    None,
}

/// One `routes:` item. Routes are tried in file order; the first whose matcher matches wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// `match:`
    pub matcher: RouteMatch,
    /// Required; the name of an entry in `upstreams`.
    pub upstream: String,
    /// Default `false` (docs/config.md). `true`: under `verify: optional` /
    /// `optional_no_ca` a request on this route without a client certificate is refused.
    /// Has no effect under `verify: off`.
    pub require_client_cert: bool,
    /// Any rule that matches allows; empty (absent) = any verified certificate.
    pub allow: Vec<AllowRule>,
    /// `deny:` — a verified certificate that any of these rules matches is refused (403),
    /// whatever `allow` says. A route with `deny` rules (like one with `allow` rules)
    /// admits only verified certificates. Default empty. [`AllowRule::Verified`] is not
    /// accepted here.
    pub deny: Vec<AllowRule>,
    /// `deny_all: true` — every request on this route is refused (403) and nothing is
    /// forwarded, whatever `allow`, `deny` and `signed_urls` say. Written by
    /// `certgate import-nginx` on routes whose nginx access checks it could not carry
    /// over exactly (fail closed); also a way to close a path by hand. Default `false`.
    pub deny_all: bool,
    /// `upstream_path:` — replaces the matched `path_prefix` (or the whole `path`) in the
    /// path sent upstream, as nginx's `proxy_pass http://up/v2/;` replaces its location's
    /// prefix. A normal path (no dot segments, `//` or decodable escapes). Default `None`:
    /// the (normalized) path is forwarded as it is.
    pub upstream_path: Option<String>,
    /// Extra request headers (nginx `proxy_set_header`), in file order. Default empty.
    pub headers: Vec<(String, String)>,
    /// nginx `client_max_body_size`: `None` = unlimited (`0` in the file, as in nginx);
    /// default 1 MiB (`1m`), nginx's default.
    pub max_body_size: Option<u64>,
    pub timeouts: Timeouts,
    /// `signed_urls:` — this route also accepts requests carrying a valid signed URL
    /// instead of a client certificate. Default `None`.
    pub signed_urls: Option<SignedUrlsConfig>,
}

/// `routes[].signed_urls:` — signed, expiring URLs for clients that cannot present the
/// certificate (a `<video>` element), minted over mTLS at `POST /.certgate/sign`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUrlsConfig {
    /// `key_file`: one path or a list. Each file holds at least 32 random bytes, base64
    /// encoded (`certgate certs url-key`). The first key signs new URLs; every key listed
    /// verifies, so keys rotate by reload.
    pub key_files: Vec<std::path::PathBuf>,
    /// The longest lifetime a minted URL may have. Default 5m; at most 24h.
    pub max_ttl: Duration,
    /// Default `none`.
    pub bind: SignedUrlBind,
}

/// `signed_urls.bind`: what else a signature is bound to, beyond path, expiry and identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignedUrlBind {
    /// Usable from any client address until it expires.
    None,
    /// Usable only from the IP address that minted it.
    ClientIp,
}

/// `match:` — at least one condition; all given must match.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteMatch {
    /// Exact path; starts with `/`.
    pub path: Option<String>,
    /// Path prefix; starts with `/`.
    pub path_prefix: Option<String>,
    /// A `regex` crate pattern, checked to compile (unanchored, as nginx's `location ~`).
    pub path_regex: Option<String>,
    /// A gRPC `package.Service`; matches `/package.Service/…`.
    pub grpc_service: Option<String>,
    /// Host header / SNI name, lower-cased; `*.example.org` allowed.
    pub host: Option<String>,
}

/// An `allow:` rule. Lists match if any of their entries matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowRule {
    /// Subject common name.
    Cn(Vec<String>),
    /// Subject organizational unit.
    Ou(Vec<String>),
    /// Full subject DN, RFC 2253 (`CN=my-client,O=Example`).
    Subject(String),
    /// URI SAN; a trailing `*` matches any suffix (`spiffe://example.org/ns/prod/*`).
    SanUri(Vec<String>),
    /// DNS SAN; `*.svc.example.org` wildcards allowed.
    SanDns(Vec<String>),
    /// SHA-256 of the certificate's DER: 64 hex digits, normalised to lower case without colons.
    FingerprintSha256(Vec<String>),
    /// SHA-256 of the SubjectPublicKeyInfo DER (pinning that survives re-issuance);
    /// normalised like [`AllowRule::FingerprintSha256`].
    SpkiSha256(Vec<String>),
    /// Full issuer DN, RFC 2253, as `$ssl_client_i_dn` prints it; compared exactly.
    Issuer(String),
    /// `regex` crate patterns searched (unanchored, case-sensitive unless `(?i)`) in the
    /// subject DN as `$ssl_client_s_dn` prints it: nginx's `if ($ssl_client_s_dn ~ …)`.
    /// Checked to compile when the configuration is loaded.
    SubjectRegex(Vec<String>),
    /// The same against the issuer DN (`$ssl_client_i_dn`).
    IssuerRegex(Vec<String>),
    /// SHA-1 of the certificate's DER as `$ssl_client_fingerprint` prints it: 40 hex
    /// digits, normalised to lower case without colons.
    FingerprintSha1(Vec<String>),
    /// The serial number as `$ssl_client_serial` prints it: upper-case hex digits in
    /// pairs (`0A1B`), `-` before a negative one; normalised to upper case without colons.
    Serial(Vec<String>),
    /// `verified: true`: any verified certificate (nginx's `$ssl_client_verify =
    /// SUCCESS`). Under `verify: optional`/`optional_no_ca` it refuses callers without a
    /// verified certificate with 403, as an nginx `if ($ssl_client_verify != SUCCESS)
    /// { return 403; }` does (`require_client_cert` answers 400 and lets an unverified
    /// certificate through under `optional_no_ca`). Only valid in `allow`.
    Verified,
}

/// `timeouts:` in nginx time syntax (`500ms`, `5s`, `1m`, `1h`, `1m30s`; a bare number is seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Default 5s.
    pub connect: Duration,
    /// Default 60s (nginx `proxy_read_timeout`).
    pub read: Duration,
    /// Default 60s (nginx `proxy_send_timeout`).
    pub send: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(60),
            send: Duration::from_secs(60),
        }
    }
}

/// One entry of `upstreams:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// At least one.
    pub servers: Vec<UpstreamServer>,
    /// Default `http`.
    pub protocol: UpstreamProtocol,
    /// Default `round_robin`.
    pub lb: LbPolicy,
    /// Default none (passive only).
    pub health_check: Option<HealthCheck>,
    /// Idle pooled connections; default 64 (0 = no pooling).
    pub keepalive: usize,
    /// `Some` exactly when `protocol` is `https` or `grpcs` (defaults filled in when the
    /// `tls:` block is absent); a `tls:` block on a plain-text protocol is an error.
    pub tls: Option<UpstreamTls>,
}

/// `host:port` or `host:port weight=N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamServer {
    /// `host:port`, as written (IPv6 in brackets); resolved by the proxy, not here.
    pub address: String,
    /// Default 1; at least 1.
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 in clear text.
    Http,
    /// HTTP/1.1 or h2 (by ALPN) over TLS.
    Https,
    /// HTTP/2 in clear text (prior knowledge).
    H2c,
    /// gRPC over h2c.
    Grpc,
    /// gRPC over h2 with TLS.
    Grpcs,
}

impl UpstreamProtocol {
    /// Whether the upstream connection uses TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, UpstreamProtocol::Https | UpstreamProtocol::Grpcs)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LbPolicy {
    RoundRobin,
    Random,
    ConsistentHash,
}

/// `health_check:` — `{ type: tcp, interval: 5s }` or `{ type: http, path: /healthz }`.
/// `interval` defaults to 5s; `path` defaults to `/` and starts with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthCheck {
    Tcp { interval: Duration },
    Http { path: String, interval: Duration },
}

/// `upstreams.*.tls:` — nginx `proxy_ssl_*` / `grpc_ssl_*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamTls {
    /// Server name sent and verified (lower-cased). `None`: not configured; the proxy
    /// picks the name, and still verifies the certificate when `verify` is on.
    pub sni: Option<String>,
    /// Default `true`: the upstream's certificate is verified.
    pub verify: bool,
    /// Roots to verify against; `None` = the proxy's default roots.
    pub trusted_ca: Option<PathBuf>,
    /// At most this many intermediates between the upstream's certificate and the trust
    /// anchor (nginx `proxy_ssl_verify_depth`, OpenSSL >= 1.1 semantics). Default 1.
    pub verify_depth: u32,
    /// Client certificate for mTLS to the upstream; set together with `key`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl Default for UpstreamTls {
    fn default() -> Self {
        UpstreamTls {
            sni: None,
            verify: true,
            trusted_ca: None,
            verify_depth: 1,
            cert: None,
            key: None,
        }
    }
}
