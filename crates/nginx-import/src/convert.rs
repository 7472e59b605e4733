//! The mapping from nginx's directives to gateway.yaml: `server` blocks with a TLS
//! listener become `servers`, their `location`s `routes` (in an order that gives nginx's
//! location selection under certgate's first-match rule), `proxy_pass`/`grpc_pass` targets
//! and `upstream` blocks `upstreams`. Directives are read with nginx's inheritance
//! (http → server → location; `*_set_header` lists only from the innermost level that has
//! any). Everything that has no equivalent is returned as an [`Unsupported`] with its
//! file and line. Pure: paths are computed, never opened.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Component, Path, PathBuf};

use crate::access::{self, Check, Effect, Found, Maps};
use crate::parse::Directive;
use crate::yaml::{scalar, Writer};

/// Where paths are read from and written to.
#[derive(Debug, Clone)]
pub struct Options {
    /// The name of the main nginx file, for the output's header comment.
    pub source: String,
    /// The directory nginx's relative paths are relative to: nginx reads `ssl_*`
    /// files relative to its configuration prefix, the directory of the file given
    /// with `-c`.
    pub conf_dir: PathBuf,
    /// The directory of the output file: certgate reads relative paths relative to the
    /// directory of gateway.yaml, so relative paths are rewritten against it.
    pub out_dir: PathBuf,
}

/// A directive (or a value of one) that the output does not carry over.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Unsupported {
    pub file: String,
    pub line: usize,
    pub directive: String,
    pub why: String,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.file, self.line, self.directive, self.why
        )
    }
}

/// The result of a conversion.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// The commented gateway.yaml.
    pub yaml: String,
    /// What was not carried over, in file order.
    pub unsupported: Vec<Unsupported>,
    /// The access checks among `unsupported` that could not be carried over exactly:
    /// each made the route(s) it covers refuse every request (`deny_all: true`, with a
    /// comment naming the check), so that nothing is more open than in nginx.
    pub access_denied: Vec<Unsupported>,
}

impl Conversion {
    /// True when nothing had to be left out.
    pub fn is_complete(&self) -> bool {
        self.unsupported.is_empty()
    }
}

/// The start of the reason given for an access check that made a route refuse every
/// request; the rest says why it could not be carried over.
pub const ACCESS_DENIED: &str =
    "access check not converted: the route(s) it covers refuse every request (deny_all: true)";

/// The configuration has nothing certgate can serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: no server block with a TLS listener (listen … ssl) and a location with proxy_pass or grpc_pass to convert")]
pub struct NothingToConvert {
    /// The main nginx file.
    pub file: String,
    pub unsupported: Vec<Unsupported>,
}

/// Converts a loaded configuration (includes already expanded, see [`crate::load`]).
pub fn convert(
    directives: &[Directive],
    options: &Options,
) -> Result<Conversion, NothingToConvert> {
    let mut cx = Converter {
        options,
        unsupported: BTreeSet::new(),
        access_denied: BTreeSet::new(),
        upstream_blocks: Vec::new(),
        upstreams: Vec::new(),
        keepalive_timeout: None,
        maps: Maps::default(),
        used_maps: BTreeSet::new(),
        verify_mode: String::new(),
    };
    let http_levels = cx.http_levels(directives);
    for level in &http_levels {
        for d in level.iter() {
            if d.name == "upstream" {
                cx.upstream_blocks.push(d);
            }
            if d.name == "map" {
                cx.maps.add(d);
            }
        }
    }
    let mut servers = Vec::new();
    for level in &http_levels {
        for d in level.iter() {
            if d.name == "server" {
                if let Some(server) = cx.server(d, level, servers.len()) {
                    servers.push(server);
                }
            }
        }
    }
    // A `map` is carried over when a converted access check reads it; any other is listed.
    for level in &http_levels {
        for d in level.iter().filter(|d| d.name == "map") {
            if !cx.used_maps.contains(&d.at()) {
                cx.list(d, why("map"));
            }
        }
    }
    // `upstream` blocks no converted location uses are not written (certgate would warn
    // about them); nginx does not complain about them either.
    // In reading order: files as nginx reads them (the main file, then each include
    // where it appears), lines within a file.
    for u in default_servers(&mut servers) {
        cx.unsupported.insert(u);
    }
    let mut files = Vec::new();
    file_order(directives, &mut files);
    let mut unsupported: Vec<Unsupported> = cx.unsupported.iter().cloned().collect();
    unsupported.sort_by_key(|u| {
        (
            files
                .iter()
                .position(|f| f == &u.file)
                .unwrap_or(usize::MAX),
            u.line,
        )
    });
    if servers.is_empty() {
        return Err(NothingToConvert {
            file: options.source.clone(),
            unsupported,
        });
    }
    // Names label logs and metrics and must be unique.
    for i in 1..servers.len() {
        if servers[..i].iter().any(|s| s.name == servers[i].name) {
            servers[i].name = format!("{}-{i}", servers[i].name);
        }
    }
    let yaml = cx.emit(&servers, &unsupported);
    // Only checks whose route was written (a server can still be dropped after its
    // routes were built): each is named in a comment above a `deny_all: true`.
    let access_denied = unsupported
        .iter()
        .filter(|u| cx.access_denied.contains(*u) && yaml.contains(&deny_all_comment(u)))
        .cloned()
        .collect();
    Ok(Conversion {
        yaml,
        unsupported,
        access_denied,
    })
}

fn file_order(list: &[Directive], files: &mut Vec<String>) {
    for d in list {
        if !files.iter().any(|f| f.as_str() == &*d.file) {
            files.push(d.file.to_string());
        }
        if let Some(block) = &d.block {
            file_order(block, files);
        }
    }
}

// ---------------------------------------------------------------------------
// What is read, what is ignored, what is listed
// ---------------------------------------------------------------------------

/// Read through inheritance by the mapping below (any of http, server, location).
const MAPPED: &[&str] = &[
    "ssl",
    "http2",
    "ssl_certificate",
    "ssl_certificate_key",
    "ssl_protocols",
    "ssl_verify_client",
    "ssl_client_certificate",
    "ssl_trusted_certificate",
    "ssl_crl",
    "ssl_verify_depth",
    "ssl_session_tickets",
    "ssl_session_cache",
    "ssl_session_ticket_key",
    "proxy_set_header",
    "grpc_set_header",
    "client_max_body_size",
    "proxy_connect_timeout",
    "proxy_read_timeout",
    "proxy_send_timeout",
    "grpc_connect_timeout",
    "grpc_read_timeout",
    "grpc_send_timeout",
    "proxy_ssl_certificate",
    "proxy_ssl_certificate_key",
    "proxy_ssl_trusted_certificate",
    "proxy_ssl_verify",
    "proxy_ssl_verify_depth",
    "proxy_ssl_server_name",
    "proxy_ssl_name",
    "grpc_ssl_certificate",
    "grpc_ssl_certificate_key",
    "grpc_ssl_trusted_certificate",
    "grpc_ssl_verify",
    "grpc_ssl_verify_depth",
    "grpc_ssl_server_name",
    "grpc_ssl_name",
    "keepalive_timeout",
];

/// No effect under certgate, or certgate already behaves so: dropped without a listing.
const IGNORED: &[&str] = &[
    // process and event loop
    "user",
    "worker_processes",
    "worker_rlimit_nofile",
    "worker_cpu_affinity",
    "pid",
    "events",
    "daemon",
    "master_process",
    "env",
    "load_module",
    "pcre_jit",
    "thread_pool",
    "timer_resolution",
    "worker_shutdown_timeout",
    "worker_connections",
    "multi_accept",
    "use",
    "accept_mutex",
    "error_log",
    // logging: certgate writes its own access log (log.access)
    "access_log",
    "log_format",
    "log_not_found",
    // buffers, temp files and tuning certgate does not need: bodies always stream
    "sendfile",
    "tcp_nopush",
    "tcp_nodelay",
    "server_tokens",
    "types",
    "default_type",
    "types_hash_max_size",
    "types_hash_bucket_size",
    "server_names_hash_bucket_size",
    "server_names_hash_max_size",
    "variables_hash_max_size",
    "variables_hash_bucket_size",
    "proxy_headers_hash_max_size",
    "proxy_headers_hash_bucket_size",
    "proxy_http_version",
    "proxy_buffering",
    "proxy_request_buffering",
    "proxy_buffer_size",
    "proxy_buffers",
    "proxy_busy_buffers_size",
    "proxy_max_temp_file_size",
    "proxy_temp_file_write_size",
    "proxy_temp_path",
    "client_body_temp_path",
    "fastcgi_temp_path",
    "uwsgi_temp_path",
    "scgi_temp_path",
    "client_body_buffer_size",
    "client_header_buffer_size",
    "large_client_header_buffers",
    "grpc_buffer_size",
    "http2_body_preread_size",
    "http2_chunk_size",
    "http2_recv_buffer_size",
    "http2_max_concurrent_streams",
    "keepalive_requests",
    "reset_timedout_connection",
    "client_body_timeout",
    "client_header_timeout",
    "send_timeout",
    "ssl_session_timeout",
    "ssl_buffer_size",
    "ssl_prefer_server_ciphers",
    "proxy_ssl_session_reuse",
    "grpc_ssl_session_reuse",
    "ssl_ecdh_curve",
    "charset",
    "source_charset",
    "output_buffers",
    "aio",
    "directio",
    "open_file_cache",
    "open_file_cache_valid",
    "open_file_cache_min_uses",
    "open_file_cache_errors",
    "resolver_timeout",
    "server_name_in_redirect",
    "port_in_redirect",
    "absolute_redirect",
    "msie_padding",
    "lingering_close",
    "lingering_time",
    "lingering_timeout",
    "ignore_invalid_headers",
    "underscores_in_headers",
    "merge_slashes",
];

fn why(name: &str) -> &'static str {
    match name {
        "rewrite" => "URL rewriting is not supported: certgate forwards the path unchanged",
        "if" => "conditional configuration is not supported",
        "map" | "geo" | "split_clients" | "set" => "variables defined in the configuration are not supported",
        "auth_basic" | "auth_basic_user_file" | "auth_request" | "auth_request_set" => {
            "HTTP authentication is not supported; certgate authenticates by client certificate (allow rules)"
        }
        "allow" | "deny" => "address allow/deny lists are not supported; certgate's allow rules match certificates",
        "return" => "fixed responses are not supported",
        "root" | "alias" | "try_files" | "index" | "autoindex" | "expires" | "etag" => {
            "certgate does not serve files"
        }
        "add_header" | "add_trailer" | "more_set_headers" => "response headers cannot be added",
        "proxy_hide_header" | "proxy_pass_header" | "proxy_ignore_headers" | "grpc_hide_header"
        | "grpc_pass_header" | "grpc_ignore_headers" => "response headers are passed as the upstream sent them",
        "error_page" | "proxy_intercept_errors" | "grpc_intercept_errors" => "custom error pages are not supported",
        "limit_req" | "limit_req_zone" | "limit_conn" | "limit_conn_zone" | "limit_rate"
        | "limit_rate_after" | "limit_except" => "rate and connection limits are not supported",
        "gzip" | "gzip_types" | "gzip_proxied" | "gzip_comp_level" | "gzip_vary" | "gzip_min_length" => {
            "responses are passed as the upstream sent them (no compression)"
        }
        "ssl_ciphers" | "ssl_conf_command" => "cipher suites are rustls's fixed modern set and cannot be chosen",
        "ssl_dhparam" => "rustls offers no finite-field Diffie-Hellman",
        "ssl_stapling" | "ssl_stapling_verify" | "ssl_stapling_file" | "ssl_stapling_responder"
        | "ssl_ocsp" | "ssl_ocsp_responder" | "ssl_ocsp_cache" => "OCSP is not supported (use ssl_crl / client_auth.crl)",
        "ssl_password_file" => "encrypted private keys are not supported: decrypt the key file",
        "ssl_early_data" => "TLS 1.3 early data is not accepted",
        "ssl_reject_handshake" => "not supported; a server without a matching name gets 421",
        "proxy_ssl_protocols" | "proxy_ssl_ciphers" | "grpc_ssl_protocols" | "grpc_ssl_ciphers"
        | "proxy_ssl_conf_command" | "grpc_ssl_conf_command" => "upstream TLS versions and ciphers are not configurable",
        "proxy_ssl_crl" | "grpc_ssl_crl" => "CRLs for upstream certificates are not supported",
        "proxy_ssl_password_file" | "grpc_ssl_password_file" => "encrypted private keys are not supported: decrypt the key file",
        "proxy_redirect" => "Location headers are passed as the upstream sent them",
        "proxy_cache" | "proxy_cache_path" | "proxy_cache_valid" | "proxy_cache_key"
        | "proxy_cache_bypass" | "proxy_no_cache" | "proxy_cache_methods" | "proxy_cache_use_stale"
        | "proxy_cache_lock" => "caching is not supported",
        "proxy_next_upstream" | "proxy_next_upstream_tries" | "proxy_next_upstream_timeout"
        | "grpc_next_upstream" | "grpc_next_upstream_tries" | "grpc_next_upstream_timeout" => {
            "requests are not retried on another upstream server"
        }
        "resolver" => "upstream host names are resolved when the configuration is loaded",
        "fastcgi_pass" | "uwsgi_pass" | "scgi_pass" | "memcached_pass" => "only proxy_pass and grpc_pass upstreams are supported",
        "stream" | "mail" => "only HTTP servers are converted",
        "real_ip_header" | "set_real_ip_from" | "real_ip_recursive" => "X-Real-IP is always the TCP peer's address",
        "sub_filter" | "sub_filter_once" | "sub_filter_types" => "response bodies are passed unchanged",
        "proxy_cookie_domain" | "proxy_cookie_path" | "proxy_cookie_flags" => "cookies are passed unchanged",
        "proxy_set_body" | "proxy_method" | "proxy_pass_request_body" | "proxy_pass_request_headers" => {
            "the request is forwarded as the client sent it"
        }
        "proxy_bind" | "grpc_bind" => "the upstream connection's source address cannot be chosen",
        "satisfy" => "access phases are not supported",
        _ => "no certgate equivalent",
    }
}

const TLS_PLAIN_PROTOCOLS: &[&str] = &["TLSv1.2", "TLSv1.3"];

/// Directives that can refuse a request at server or location level: each route reads
/// them (`route_access`) and carries them over exactly or fails closed.
const ACCESS_DIRECTIVES: &[&str] = &[
    "if",
    "return",
    "allow",
    "deny",
    "auth_basic",
    "auth_request",
    "limit_except",
];

/// nginx's default `X-SSL-Client-*` set, as certgate's `nginx` preset sends it.
const NGINX_PRESET: &[(&str, &str)] = &[
    ("X-SSL-Client-Verify", "$ssl_client_verify"),
    ("X-SSL-Client-S-DN", "$ssl_client_s_dn"),
    ("X-SSL-Client-I-DN", "$ssl_client_i_dn"),
    ("X-SSL-Client-Serial", "$ssl_client_serial"),
    ("X-SSL-Client-Fingerprint", "$ssl_client_fingerprint"),
    ("X-SSL-Client-V-Start", "$ssl_client_v_start"),
    ("X-SSL-Client-V-End", "$ssl_client_v_end"),
    ("X-SSL-Client-Cert", "$ssl_client_escaped_cert"),
];

/// Headers the gateway removes from every client request (anti-spoofing): clearing
/// them in nginx (`proxy_set_header X-SSL-Client-S-DN "";`) is already done.
fn stripped_by_certgate(lower: &str) -> bool {
    lower.starts_with("x-ssl-client-")
        || matches!(
            lower,
            "x-forwarded-client-cert" | "client-cert" | "client-cert-chain" | "x-real-ip"
        )
}

// ---------------------------------------------------------------------------
// The model written out
// ---------------------------------------------------------------------------

/// A value and where it came from (`nginx.conf:12`), for the comment beside it.
#[derive(Debug, Clone)]
pub(crate) struct FromValue<T> {
    value: T,
    at: Option<String>,
    note: Option<String>,
}

impl<T> FromValue<T> {
    pub(crate) fn value(&self) -> &T {
        &self.value
    }

    pub(crate) fn comment(&self) -> String {
        comment_of(self)
    }
}

fn from<T>(value: T, d: &Directive) -> FromValue<T> {
    FromValue {
        value,
        at: Some(format!("{} ({})", words(d), d.at())),
        note: None,
    }
}

fn plain<T>(value: T, note: &str) -> FromValue<T> {
    FromValue {
        value,
        at: None,
        note: Some(note.to_string()),
    }
}

fn words(d: &Directive) -> String {
    let mut text = d.name.clone();
    for arg in &d.args {
        text.push(' ');
        if arg.is_empty() || arg.contains(|c: char| c.is_whitespace() || c == ';' || c == '{') {
            text.push_str(&format!("{arg:?}"));
        } else {
            text.push_str(arg);
        }
    }
    if text.chars().count() > 90 {
        text = text.chars().take(87).collect::<String>() + "...";
    }
    text
}

struct Server {
    name: String,
    at: String,
    file: String,
    line: usize,
    /// Listen addresses marked `default_server`.
    defaults: Vec<String>,
    default_note: Option<String>,
    listen: Vec<FromValue<String>>,
    server_names: Vec<FromValue<String>>,
    cert: FromValue<String>,
    key: FromValue<String>,
    protocols: Option<FromValue<Vec<String>>>,
    alpn: FromValue<Vec<&'static str>>,
    session_resumption: Option<FromValue<bool>>,
    ticket_keys: Vec<FromValue<String>>,
    verify: FromValue<String>,
    ca: Option<FromValue<String>>,
    trusted_ca: Vec<FromValue<String>>,
    crl: Vec<FromValue<String>>,
    verify_depth: FromValue<u32>,
    preset_nginx: bool,
    identity: Vec<Header>,
    routes: Vec<Route>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Header {
    name: String,
    value: String,
    at: String,
}

#[derive(Debug, Clone)]
struct Route {
    comment: String,
    path: Option<String>,
    path_prefix: Option<String>,
    path_regex: Option<String>,
    upstream: String,
    /// `proxy_pass http://up/v2/;`'s URI part, which replaces the matched location.
    upstream_path: Option<FromValue<String>>,
    headers: Vec<Header>,
    max_body_size: Option<FromValue<String>>,
    timeouts: Vec<(&'static str, FromValue<String>)>,
    /// `require_client_cert`, `allow`, `deny`, `deny_all` from nginx's access checks.
    access: access::Access,
    /// A location that is not proxied but refuses requests (`return 403;`, an access
    /// check): written as a `deny_all` route so its paths do not reach another route. Its
    /// upstream is borrowed from a proxied route and never contacted.
    closed_location: bool,
}

#[derive(Debug, Clone, PartialEq)]
struct UpstreamTls {
    sni: Option<(String, String)>,
    verify: (bool, Option<String>),
    trusted_ca: Option<(String, String)>,
    verify_depth: Option<(u32, String)>,
    cert: Option<(String, String)>,
    key: Option<(String, String)>,
}

#[derive(Debug, Clone)]
struct Upstream {
    name: String,
    at: String,
    servers: Vec<String>,
    protocol: &'static str,
    lb: Option<(&'static str, String)>,
    keepalive: Option<(usize, String)>,
    tls: Option<UpstreamTls>,
}

impl Upstream {
    fn same_as(&self, other: &Upstream) -> bool {
        self.servers == other.servers
            && self.protocol == other.protocol
            && self.lb.as_ref().map(|l| l.0) == other.lb.as_ref().map(|l| l.0)
            && self.keepalive.as_ref().map(|k| k.0) == other.keepalive.as_ref().map(|k| k.0)
            && self.tls == other.tls
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum LocKind {
    Exact,
    Prefix,
    /// `^~`: a longest-prefix match that skips the regular expressions.
    PrefixStop,
    Regex,
}

// ---------------------------------------------------------------------------
// The conversion
// ---------------------------------------------------------------------------

struct Converter<'a> {
    options: &'a Options,
    unsupported: BTreeSet<Unsupported>,
    /// The access checks among `unsupported` that closed a route.
    access_denied: BTreeSet<Unsupported>,
    maps: Maps<'a>,
    /// `file:line` of the maps converted access checks read.
    used_maps: BTreeSet<String>,
    /// `ssl_verify_client` of the server being converted.
    verify_mode: String,
    upstream_blocks: Vec<&'a Directive>,
    upstreams: Vec<Upstream>,
    keepalive_timeout: Option<FromValue<String>>,
}

/// The directive lists a lookup inherits through, outermost first.
type Chain<'c, 'a> = &'c [&'a [Directive]];

fn find<'a>(chain: Chain<'_, 'a>, name: &str) -> Option<&'a Directive> {
    chain
        .iter()
        .rev()
        .find_map(|level| level.iter().find(|d| d.name == name))
}

/// Array-like directives (`proxy_set_header`): the innermost level that has any.
fn find_all<'a>(chain: Chain<'_, 'a>, name: &str) -> Vec<&'a Directive> {
    for level in chain.iter().rev() {
        let found: Vec<&Directive> = level.iter().filter(|d| d.name == name).collect();
        if !found.is_empty() {
            return found;
        }
    }
    Vec::new()
}

fn flag(d: &Directive) -> Option<bool> {
    match d.args.first().map(String::as_str) {
        Some("on") => Some(true),
        Some("off") => Some(false),
        _ => None,
    }
}

impl<'a> Converter<'a> {
    fn list(&mut self, d: &Directive, why: impl Into<String>) {
        self.unsupported.insert(Unsupported {
            file: d.file.to_string(),
            line: d.line,
            directive: d.name.clone(),
            why: why.into(),
        });
    }

    /// The http-level directive lists: the body of every `http` block, or the file
    /// itself when it is a snippet (`server { … }` at the top, as in sites-enabled/).
    fn http_levels(&mut self, top: &'a [Directive]) -> Vec<&'a [Directive]> {
        let mut levels = Vec::new();
        let snippet = top
            .iter()
            .any(|d| d.name == "server" || d.name == "upstream");
        for d in top {
            match (d.name.as_str(), &d.block) {
                ("http", Some(body)) => levels.push(body.as_slice()),
                _ if snippet => {}
                (name, _) if IGNORED.contains(&name) => {}
                (name, _) => self.list(d, why(name)),
            }
        }
        if snippet {
            levels.push(top);
        }
        for level in &levels {
            self.check_level(level, "http");
        }
        levels
    }

    /// Lists what a level holds that neither the mapping nor the ignore list covers.
    fn check_level(&mut self, level: &'a [Directive], context: &str) {
        for d in level {
            let name = d.name.as_str();
            let handled = MAPPED.contains(&name)
                || IGNORED.contains(&name)
                || match context {
                    "http" => matches!(name, "server" | "upstream" | "http" | "map"),
                    "server" => matches!(name, "listen" | "server_name" | "location"),
                    "location" => matches!(name, "proxy_pass" | "grpc_pass" | "location"),
                    _ => false,
                }
                // Access checks: read per route (`route_access`), listed there.
                || (context != "http" && ACCESS_DIRECTIVES.contains(&name));
            if handled {
                continue;
            }
            if name == "proxy_redirect" && d.args.first().is_some_and(|a| a == "off") {
                continue;
            }
            if name == "gzip" && d.args.first().is_some_and(|a| a == "off") {
                continue;
            }
            self.list(d, why(name));
        }
    }

    /// nginx path → certgate path: relative paths are re-based from nginx's
    /// configuration directory onto the output file's directory.
    fn path(&mut self, d: &Directive, text: &str) -> Option<String> {
        if text.contains('$') || text.starts_with("data:") || text.starts_with("engine:") {
            self.list(
                d,
                "file names with variables, data: or engine: are not supported",
            );
            return None;
        }
        let given = Path::new(text);
        if given.is_absolute() {
            return Some(text.to_string());
        }
        let absolute = normalize(&self.options.conf_dir.join(given));
        let out = normalize(&self.options.out_dir);
        Some(relative(&absolute, &out).to_string_lossy().into_owned())
    }

    fn first_arg_path(&mut self, d: &'a Directive) -> Option<FromValue<String>> {
        let Some(arg) = d.args.first() else {
            self.list(d, "expects a file name");
            return None;
        };
        let arg = arg.clone();
        self.path(d, &arg).map(|p| from(p, d))
    }

    fn server(&mut self, d: &'a Directive, http: &'a [Directive], index: usize) -> Option<Server> {
        let body: &'a [Directive] = d.block.as_deref().unwrap_or(&[]);
        let chain: Vec<&'a [Directive]> = vec![http, body];
        let ssl_on = find(&chain, "ssl").and_then(flag).unwrap_or(false);
        let http2_on = find(&chain, "http2").and_then(flag).unwrap_or(false);

        // Listeners: only TLS ones; plain HTTP ones are listed.
        let mut listen = Vec::new();
        let mut defaults = Vec::new();
        let mut h2 = http2_on;
        let listens: Vec<&Directive> = body.iter().filter(|x| x.name == "listen").collect();
        for l in &listens {
            let Some(address) = l.args.first() else {
                self.list(l, "expects an address");
                continue;
            };
            let params = &l.args[1..];
            if !(ssl_on || params.iter().any(|p| p == "ssl")) {
                self.list(l, "plain HTTP listener: certgate only terminates TLS");
                continue;
            }
            let mut skip = false;
            for p in params {
                match p.as_str() {
                    "ssl" | "default_server" | "default" | "reuseport" | "deferred" | "bind" => {}
                    "http2" => h2 = true,
                    "proxy_protocol" => {
                        self.list(l, "the PROXY protocol is not supported: listener left out");
                        skip = true;
                    }
                    "quic" | "http3" => {
                        self.list(l, "HTTP/3 (QUIC) is not supported: listener left out");
                        skip = true;
                    }
                    p if p.starts_with("backlog=")
                        || p.starts_with("rcvbuf=")
                        || p.starts_with("sndbuf=")
                        || p.starts_with("ipv6only=")
                        || p.starts_with("so_keepalive=")
                        || p.starts_with("fastopen=") => {}
                    other => self.list(l, format!("listen parameter {other} is not supported")),
                }
            }
            if skip {
                continue;
            }
            match listen_address(address) {
                Ok((addr, _)) if listen.iter().any(|v: &FromValue<String>| v.value == addr) => {
                    self.list(
                        l,
                        format!("{addr} is already a listen address of this server"),
                    );
                }
                Ok((addr, note)) => {
                    if params
                        .iter()
                        .any(|p| p == "default_server" || p == "default")
                    {
                        defaults.push(addr.clone());
                    }
                    let mut value = from(addr, l);
                    value.note = note;
                    if !params.iter().any(|p| p == "ssl") {
                        // nginx < 1.25: `ssl on;` makes every listener of the server TLS.
                        value.note = Some("TLS because of `ssl on`".to_string());
                    }
                    listen.push(value);
                }
                Err(why) => self.list(l, why),
            }
        }
        if listens.is_empty() {
            self.list(d, "server without listen: nginx listens on plain HTTP port 80; certgate only terminates TLS");
        }
        if listen.is_empty() {
            self.list(d, "server block not converted: no TLS listener");
            return None;
        }

        // Certificates.
        let cert = find(&chain, "ssl_certificate").and_then(|c| self.first_arg_path(c));
        let key = find(&chain, "ssl_certificate_key").and_then(|c| self.first_arg_path(c));
        for extra in ["ssl_certificate", "ssl_certificate_key"] {
            for (i, c) in find_all(&chain, extra).into_iter().enumerate() {
                if i > 0 {
                    self.list(
                        c,
                        "only the first certificate and key are used (no RSA + ECDSA pairs)",
                    );
                }
            }
        }
        let (Some(cert), Some(key)) = (cert, key) else {
            self.list(
                d,
                "server block not converted: no ssl_certificate and ssl_certificate_key",
            );
            return None;
        };

        let protocols = find(&chain, "ssl_protocols").map(|p| {
            // Each once (nginx accepts a repeated name; certgate refuses the list).
            let mut kept: Vec<String> = Vec::new();
            for a in p
                .args
                .iter()
                .filter(|a| TLS_PLAIN_PROTOCOLS.contains(&a.as_str()))
            {
                if !kept.contains(a) {
                    kept.push(a.clone());
                }
            }
            let dropped: Vec<&str> = p
                .args
                .iter()
                .filter(|a| !TLS_PLAIN_PROTOCOLS.contains(&a.as_str()))
                .map(String::as_str)
                .collect();
            if !dropped.is_empty() {
                self.list(
                    p,
                    format!(
                        "{} not offered: certgate speaks TLSv1.2 and TLSv1.3 only",
                        dropped.join(", ")
                    ),
                );
            }
            from(kept, p)
        });
        let protocols = protocols.filter(|p| !p.value.is_empty());

        let alpn = if h2 {
            plain(vec!["h2", "http/1.1"], "http2 on this listener")
        } else {
            plain(vec!["http/1.1"], "no http2 on the nginx listener")
        };

        let tickets = find(&chain, "ssl_session_tickets");
        let cache = find(&chain, "ssl_session_cache");
        let session_resumption = match (tickets, cache) {
            (Some(t), c)
                if flag(t) == Some(false)
                    && c.is_none_or(|c| {
                        matches!(c.args.first().map(String::as_str), Some("off" | "none"))
                    }) =>
            {
                Some(from(false, t))
            }
            _ => None,
        };
        let ticket_keys: Vec<FromValue<String>> = find_all(&chain, "ssl_session_ticket_key")
            .into_iter()
            .filter_map(|k| self.first_arg_path(k))
            .collect();

        // Client certificates.
        let verify_d = find(&chain, "ssl_verify_client");
        let verify = match verify_d {
            Some(v) => match v.args.first().map(String::as_str) {
                Some(mode @ ("on" | "optional" | "optional_no_ca" | "off")) => {
                    from(mode.to_string(), v)
                }
                _ => {
                    self.list(v, "expects on, optional, optional_no_ca or off");
                    plain("off".to_string(), "nginx's default")
                }
            },
            None => plain("off".to_string(), "nginx's default: no ssl_verify_client"),
        };
        let verifying = verify.value != "off";
        let (mut ca, mut trusted_ca, mut crl) = (None, Vec::new(), Vec::new());
        let mut verify_depth = plain(1u32, "nginx's default");
        if verifying {
            ca = find(&chain, "ssl_client_certificate").and_then(|c| self.first_arg_path(c));
            if let Some(t) =
                find(&chain, "ssl_trusted_certificate").and_then(|c| self.first_arg_path(c))
            {
                if ca.as_ref().map(|c| &c.value) != Some(&t.value) {
                    trusted_ca.push(t);
                }
            }
            if let Some(c) = find(&chain, "ssl_crl").and_then(|c| self.first_arg_path(c)) {
                crl.push(c);
            }
            if let Some(v) = find(&chain, "ssl_verify_depth") {
                match v.args.first().and_then(|a| a.parse::<u32>().ok()) {
                    Some(n) => verify_depth = from(n, v),
                    None => self.list(v, "expects a number"),
                }
            }
            if ca.is_none() && trusted_ca.is_empty() && verify.value != "optional_no_ca" {
                // nginx refuses to start with this server; writing it without the check
                // would open it wider, and certgate refuses it too.
                self.list(
                    verify_d.unwrap_or(d),
                    "server block not converted: needs ssl_client_certificate or ssl_trusted_certificate (nginx refuses this too)",
                );
                return None;
            }
        }

        let mut server_names = Vec::new();
        for n in body.iter().filter(|x| x.name == "server_name") {
            for name in &n.args {
                match server_name(name) {
                    Ok(names) => {
                        for x in names {
                            // nginx takes a name given twice; certgate lists each once.
                            if !server_names
                                .iter()
                                .any(|s: &FromValue<String>| s.value.eq_ignore_ascii_case(&x))
                            {
                                server_names.push(from(x, n));
                            }
                        }
                    }
                    Err(Some(why)) => self.list(n, format!("{name}: {why}")),
                    Err(None) => {}
                }
            }
        }

        self.check_level(body, "server");
        self.verify_mode = verify.value.clone();
        let mut routes = self.locations(&chain, body);
        // A closed location's route needs an upstream to be valid; it never contacts it.
        match routes
            .iter()
            .find(|r| !r.closed_location)
            .map(|r| r.upstream.clone())
        {
            Some(upstream) => {
                for r in routes.iter_mut().filter(|r| r.closed_location) {
                    r.upstream = upstream.clone();
                }
            }
            None => routes.clear(),
        }
        if routes.is_empty() {
            self.list(
                d,
                "server block not converted: no location with proxy_pass or grpc_pass",
            );
            return None;
        }

        // Headers every route shares become the server's identity; the rest stay per route.
        let proxied: Vec<&Route> = routes.iter().filter(|r| !r.closed_location).collect();
        let mut identity: Vec<Header> = proxied[0].headers.clone();
        identity.retain(|h| {
            proxied.iter().all(|r| {
                r.headers
                    .iter()
                    .any(|x| x.name.eq_ignore_ascii_case(&h.name) && x.value == h.value)
            })
        });
        for r in &mut routes {
            r.headers.retain(|x| {
                !identity
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case(&x.name) && h.value == x.value)
            });
        }
        let preset_nginx = NGINX_PRESET.iter().all(|(name, value)| {
            identity
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case(name) && h.value == *value)
        });
        if preset_nginx {
            identity.retain(|h| {
                !NGINX_PRESET
                    .iter()
                    .any(|(name, value)| h.name.eq_ignore_ascii_case(name) && h.value == *value)
            });
        }

        for k in find_all(&chain, "keepalive_timeout") {
            if let Some(value) = k.args.first() {
                if !is_time(value) {
                    self.list(k, "expects a time like 65s");
                    continue;
                }
                if value.bytes().all(|b| !b.is_ascii_digit() || b == b'0') {
                    // nginx's 0 turns keep-alive off; certgate's timeouts are greater than 0.
                    self.list(k, "keepalive_timeout 0 (no keep-alive) is not carried over; certgate's default is used");
                    continue;
                }
                match &self.keepalive_timeout {
                    None => self.keepalive_timeout = Some(from(value.clone(), k)),
                    Some(first) if &first.value != value => self.list(
                        k,
                        "certgate has one keepalive_timeout for all servers; the first one is used",
                    ),
                    Some(_) => {}
                }
            }
        }

        let name = server_names
            .iter()
            .map(|n| n.value.trim_start_matches("*.").to_string())
            .next()
            .unwrap_or_else(|| format!("server{index}"));
        Some(Server {
            name,
            at: d.at(),
            file: d.file.to_string(),
            line: d.line,
            defaults,
            default_note: None,
            listen,
            server_names,
            cert,
            key,
            protocols,
            alpn,
            session_resumption,
            ticket_keys,
            verify,
            ca,
            trusted_ca,
            crl,
            verify_depth,
            preset_nginx,
            identity,
            routes,
        })
    }

    /// The server's locations as routes, ordered so that certgate's first match picks
    /// the location nginx would: exact matches; then, longest first, `^~` prefixes and
    /// the plain prefixes that extend one (each preceded by the regular expressions,
    /// restricted to it); then the regular expressions in file order; then the other
    /// prefixes, longest first.
    fn locations(&mut self, chain: &[&'a [Directive]], body: &'a [Directive]) -> Vec<Route> {
        let mut found: Vec<(LocKind, String, Route)> = Vec::new();
        for l in body.iter().filter(|x| x.name == "location") {
            let (kind, path) = match l.args.as_slice() {
                [m, p] if m == "=" => (LocKind::Exact, p.clone()),
                [m, p] if m == "^~" => (LocKind::PrefixStop, p.clone()),
                [m, p] if m == "~" => (LocKind::Regex, p.clone()),
                [m, p] if m == "~*" => (LocKind::Regex, format!("(?i){p}")),
                [p] if p.starts_with('@') => {
                    self.list(l, "named locations are not supported");
                    continue;
                }
                [p] if p.starts_with("~*") => (LocKind::Regex, format!("(?i){}", &p[2..])),
                [p] if p.starts_with('~') => (LocKind::Regex, p[1..].to_string()),
                [p] if p.starts_with('=') => (LocKind::Exact, p[1..].to_string()),
                [p] => (LocKind::Prefix, p.clone()),
                _ => {
                    self.list(l, "expects [=|~|~*|^~] uri");
                    continue;
                }
            };
            if kind == LocKind::Regex {
                if let Err(e) = regex::Regex::new(&path) {
                    let first = e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    self.list(l, format!("regular expression not supported by certgate's engine (no look-around or back-references): {first}"));
                    continue;
                }
            } else if !path.starts_with('/') {
                self.list(l, "locations not starting with / are not supported");
                continue;
            }
            let route = match self.location(chain, l, kind, &path) {
                Some(route) => Some(route),
                None => self.closed_location(chain, l, kind, &path),
            };
            if let Some(route) = route {
                found.push((kind, path, route));
            }
        }

        let stops: Vec<String> = found
            .iter()
            .filter(|(k, _, _)| *k == LocKind::PrefixStop)
            .map(|(_, p, _)| p.clone())
            .collect();
        let regexes: Vec<Route> = found
            .iter()
            .filter(|(k, _, _)| *k == LocKind::Regex)
            .map(|(_, _, r)| r.clone())
            .collect();
        let extends_stop = |p: &str| {
            stops
                .iter()
                .any(|s| p.len() > s.len() && p.starts_with(s.as_str()))
        };

        let mut ordered: Vec<Route> = found
            .iter()
            .filter(|(k, _, _)| *k == LocKind::Exact)
            .map(|(_, _, r)| r.clone())
            .collect();
        let mut early: Vec<&(LocKind, String, Route)> = found
            .iter()
            .filter(|(k, p, _)| {
                *k == LocKind::PrefixStop || (*k == LocKind::Prefix && extends_stop(p))
            })
            .collect();
        early.sort_by_key(|(_, p, _)| std::cmp::Reverse(p.len()));
        for (kind, path, route) in early {
            if *kind == LocKind::Prefix {
                for r in &regexes {
                    let mut restricted = r.clone();
                    restricted.path_prefix = Some(path.clone());
                    restricted.comment = format!("{} (within {path}, as nginx checks regular expressions after the longest prefix)", r.comment);
                    ordered.push(restricted);
                }
            }
            ordered.push(route.clone());
        }
        ordered.extend(regexes.iter().cloned());
        let mut late: Vec<&(LocKind, String, Route)> = found
            .iter()
            .filter(|(k, p, _)| *k == LocKind::Prefix && !extends_stop(p))
            .collect();
        late.sort_by_key(|(_, p, _)| std::cmp::Reverse(p.len()));
        ordered.extend(late.into_iter().map(|(_, _, r)| r.clone()));
        ordered
    }

    fn location(
        &mut self,
        outer: &[&'a [Directive]],
        l: &'a Directive,
        kind: LocKind,
        path: &str,
    ) -> Option<Route> {
        let body: &'a [Directive] = l.block.as_deref().unwrap_or(&[]);
        let mut chain: Vec<&'a [Directive]> = outer.to_vec();
        chain.push(body);
        self.check_level(body, "location");
        for nested in body.iter().filter(|x| x.name == "location") {
            self.list(
                nested,
                "nested locations are not supported: move it to the server level",
            );
        }
        let proxy = body.iter().find(|x| x.name == "proxy_pass");
        let grpc = body.iter().find(|x| x.name == "grpc_pass");
        let (pass, is_grpc) = match (proxy, grpc) {
            (Some(p), None) => (p, false),
            (None, Some(g)) => (g, true),
            (Some(_), Some(g)) => {
                self.list(g, "a location has one content handler; proxy_pass and grpc_pass together are refused by nginx");
                return None;
            }
            (None, None) if refuses_everything(body) => {
                // `location /admin { return 403; }`: nginx refuses it all; so does the
                // route (exact). Written by `closed_location`.
                return None;
            }
            (None, None) => {
                self.list(
                    l,
                    "location not converted: no proxy_pass or grpc_pass (static files, return, …)",
                );
                return None;
            }
        };
        let Some(url) = pass.args.first() else {
            self.list(pass, "expects a URL");
            return None;
        };
        let target = match parse_pass(url, is_grpc) {
            Ok(t) => t,
            Err(why) => {
                self.list(pass, why);
                return None;
            }
        };
        // `proxy_pass http://up/v2/;` replaces the matched location with `/v2/`: certgate's
        // `upstream_path`. The same URI as the location changes nothing.
        let mut upstream_path = None;
        if let Some(uri) = &target.uri {
            let replaces = matches!(kind, LocKind::Prefix | LocKind::PrefixStop | LocKind::Exact);
            if !replaces {
                // nginx itself refuses this ("cannot have URI part in location given by
                // regular expression").
                self.list(
                    pass,
                    format!(
                        "a URI part ({uri:?}) in a regular-expression location is refused by nginx"
                    ),
                );
                return None;
            }
            if uri != path {
                let normal = certgate_path::normalize(uri, certgate_path::Options::default());
                if !matches!(normal, Ok(std::borrow::Cow::Borrowed(_))) || uri.contains('$') {
                    self.list(
                        pass,
                        format!("the URI part {uri:?} is not a plain path certgate can put in upstream_path"),
                    );
                    return None;
                }
                upstream_path = Some(from(uri.clone(), pass));
            }
        }
        let upstream = self.upstream_for(pass, &target, &chain, is_grpc)?;

        let (header_directive, timeout_prefix) = if is_grpc {
            ("grpc_set_header", "grpc")
        } else {
            ("proxy_set_header", "proxy")
        };
        let mut headers: Vec<Header> = Vec::new();
        for h in find_all(&chain, header_directive) {
            if let Some(header) = self.header(h) {
                headers.retain(|x: &Header| !x.name.eq_ignore_ascii_case(&header.name));
                headers.push(header);
            }
        }

        let max_body_size =
            find(&chain, "client_max_body_size").and_then(|m| match m.args.first() {
                Some(v) if is_size(v) => Some(from(v.to_ascii_lowercase(), m)),
                _ => {
                    self.list(m, "expects a size like 10m");
                    None
                }
            });
        let mut timeouts = Vec::new();
        for (key, name) in [("connect", "connect"), ("read", "read"), ("send", "send")] {
            if let Some(t) = find(&chain, &format!("{timeout_prefix}_{name}_timeout")) {
                match t.args.first() {
                    // nginx takes 0 as "time out at once"; certgate refuses a zero timeout.
                    Some(v) if is_time(v) && v.bytes().all(|b| !b.is_ascii_digit() || b == b'0') => {
                        self.list(t, "a zero timeout is not carried over (certgate's timeouts are greater than 0); the default is used")
                    }
                    Some(v) if is_time(v) => timeouts.push((key, from(v.clone(), t))),
                    _ => self.list(t, "expects a time like 60s"),
                }
            }
        }

        let server_body = outer.last().copied().unwrap_or(&[]);
        let checks = self
            .level_checks(server_body, true)
            .into_iter()
            .chain(self.level_checks(body, true))
            .chain(access::access_phase(&chain))
            .collect::<Vec<_>>();
        let access = self.route_access(&checks);
        let mut route = Route {
            comment: format!("{} ({})", words(l), l.at()),
            path: None,
            path_prefix: None,
            path_regex: None,
            upstream,
            upstream_path,
            headers,
            max_body_size,
            timeouts,
            access,
            closed_location: false,
        };
        match kind {
            LocKind::Exact => route.path = Some(path.to_string()),
            LocKind::Prefix | LocKind::PrefixStop => route.path_prefix = Some(path.to_string()),
            LocKind::Regex => route.path_regex = Some(path.to_string()),
        }
        Some(route)
    }

    /// The `if`s and `return`s of one level (server or location body) that can refuse a
    /// request, in order. The others are listed as before when `list_others`.
    fn level_checks(&mut self, level: &'a [Directive], list_others: bool) -> Vec<Check<'a>> {
        let mut checks = Vec::new();
        for d in level {
            match d.name.as_str() {
                "if" => match access::classify_if(d, &self.maps) {
                    Found::Check(c) => checks.push(c),
                    Found::NotAccess(why) if list_others => self.list(d, why),
                    Found::NotAccess(_) => {}
                },
                "return" => match access::classify_return(d) {
                    Some(effect) => checks.push(Check {
                        directive: d,
                        effect,
                        map: None,
                    }),
                    None if list_others => self.list(d, why("return")),
                    None => {}
                },
                _ => {}
            }
        }
        checks
    }

    /// A route's access settings from its checks; lists those it fails closed for.
    fn route_access(&mut self, checks: &[Check<'a>]) -> access::Access {
        let access = access::combine(checks, &self.verify_mode, check_text);
        for c in checks {
            if let (Some(map), false) = (c.map, matches!(c.effect, Effect::Unconvertible(_))) {
                self.used_maps.insert(map.at());
            }
        }
        for (at, _, why) in &access.deny_all {
            let d = checks.iter().map(|c| c.directive).find(|d| &d.at() == at);
            if let Some(d) = d {
                self.list_closed(d, why);
            }
        }
        access
    }

    fn list_closed(&mut self, d: &Directive, why: &str) {
        let u = Unsupported {
            file: d.file.to_string(),
            line: d.line,
            directive: d.name.clone(),
            why: format!("{ACCESS_DENIED}: {why}"),
        };
        self.unsupported.insert(u.clone());
        self.access_denied.insert(u);
    }

    /// A location that is not proxied (no proxy_pass, or one that cannot be converted)
    /// but has access checks of its own: in certgate its paths would reach another
    /// route, so it becomes a route that refuses everything. `None` without such checks.
    fn closed_location(
        &mut self,
        chain: &[&'a [Directive]],
        l: &'a Directive,
        kind: LocKind,
        path: &str,
    ) -> Option<Route> {
        let body: &'a [Directive] = l.block.as_deref().unwrap_or(&[]);
        let mut full: Vec<&'a [Directive]> = chain.to_vec();
        full.push(body);
        let own_phase: Vec<Check<'a>> = access::access_phase(&full)
            .into_iter()
            .filter(|c| body.iter().any(|d| std::ptr::eq(d, c.directive)))
            .collect();
        let mut checks = self.level_checks(body, true);
        checks.extend(own_phase);
        if checks.is_empty() {
            return None;
        }
        let mut access = access::Access::default();
        if refuses_everything(body) {
            access.closed = Some(format!(
                "{}: nginx refuses every request on this location",
                check_text(l)
            ));
        } else {
            for c in &checks {
                let why = "the location is not proxied (see above), but refuses requests: its path is closed rather than left to another route";
                access
                    .deny_all
                    .push((c.directive.at(), check_text(c.directive), why.to_string()));
                self.list_closed(c.directive, why);
            }
        }
        let mut route = Route {
            comment: format!(
                "{} ({}): closed, not converted (see the list at the top)",
                words(l),
                l.at()
            ),
            path: None,
            path_prefix: None,
            path_regex: None,
            upstream: String::new(),
            upstream_path: None,
            headers: Vec::new(),
            max_body_size: None,
            timeouts: Vec::new(),
            access,
            closed_location: true,
        };
        match kind {
            LocKind::Exact => route.path = Some(path.to_string()),
            LocKind::Prefix | LocKind::PrefixStop => route.path_prefix = Some(path.to_string()),
            LocKind::Regex => route.path_regex = Some(path.to_string()),
        }
        Some(route)
    }

    /// One `*_set_header`: kept (as a template certgate can render), dropped (certgate
    /// does it anyway) or listed.
    fn header(&mut self, h: &Directive) -> Option<Header> {
        let [name, value] = h.args.as_slice() else {
            self.list(h, "expects a header name and a value");
            return None;
        };
        let lower = name.to_ascii_lowercase();
        let compact: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        match lower.as_str() {
            "host"
                if matches!(
                    compact.as_str(),
                    "$host" | "$http_host" | "$host:$server_port"
                ) =>
            {
                return None
            }
            "host" => {
                self.list(h, "certgate passes the client's Host header unchanged");
                return None;
            }
            "x-real-ip" if compact == "$remote_addr" => return None,
            "x-forwarded-for"
                if matches!(
                    compact.as_str(),
                    "$proxy_add_x_forwarded_for" | "$remote_addr"
                ) =>
            {
                return None
            }
            "x-forwarded-proto" if matches!(compact.as_str(), "$scheme" | "https") => return None,
            "connection" | "upgrade" | "proxy-connection" | "keep-alive" | "te" => return None,
            _ => {}
        }
        if compact.strip_prefix("$http_") == Some(lower.replace('-', "_").as_str()) {
            // The client's own header: certgate passes it through anyway.
            return None;
        }
        if value.is_empty() {
            if !stripped_by_certgate(&lower) {
                self.list(h, "removing a header the client sent is not supported (an empty value only skips certgate's own header)");
            }
            return None;
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            self.list(h, "not a valid header name");
            return None;
        }
        if value.chars().any(|c| c.is_control() && c != '\t') {
            self.list(h, "header values cannot contain line breaks");
            return None;
        }
        match certgate_identity::Template::parse(value) {
            Ok(_) => Some(Header {
                name: name.clone(),
                value: value.clone(),
                at: h.at(),
            }),
            Err(e) => {
                self.list(h, format!("{e}: certgate knows the $ssl_client_* variables, $ssl_protocol, $ssl_cipher, $ssl_server_name, $remote_addr and $remote_port"));
                None
            }
        }
    }

    /// The certgate upstream for a `proxy_pass`/`grpc_pass` target, reusing an
    /// identical one. Returns its name.
    fn upstream_for(
        &mut self,
        pass: &'a Directive,
        target: &Target,
        chain: &[&'a [Directive]],
        is_grpc: bool,
    ) -> Option<String> {
        let block = if target.explicit_port {
            None
        } else {
            self.upstream_blocks.iter().copied().find(|u| {
                u.args
                    .first()
                    .is_some_and(|n| n.eq_ignore_ascii_case(&target.host))
            })
        };
        let mut up = match block {
            Some(b) => self.upstream_block(b)?,
            None => Upstream {
                name: sanitize(&format!(
                    "{}_{}",
                    target.host.trim_matches(|c| c == '[' || c == ']'),
                    target.port
                )),
                at: pass.at(),
                servers: vec![format!("{}:{}", target.host, target.port)],
                protocol: "http",
                lb: None,
                keepalive: None,
                tls: None,
            },
        };
        up.protocol = target.protocol;
        if matches!(target.protocol, "https" | "grpcs") {
            up.tls = Some(self.upstream_tls(chain, if is_grpc { "grpc" } else { "proxy" }));
        }
        if let Some(existing) = self.upstreams.iter().find(|u| u.same_as(&up)) {
            return Some(existing.name.clone());
        }
        // The same nginx upstream used with other settings (protocol, upstream TLS):
        // one certgate upstream per combination.
        let base = up.name.clone();
        let mut n = 2;
        while self.upstreams.iter().any(|u| u.name == up.name) {
            up.name = format!("{base}-{n}");
            n += 1;
        }
        let name = up.name.clone();
        self.upstreams.push(up);
        Some(name)
    }

    fn upstream_block(&mut self, b: &'a Directive) -> Option<Upstream> {
        let name = sanitize(b.args.first().map(String::as_str).unwrap_or("upstream"));
        let mut up = Upstream {
            name,
            at: b.at(),
            servers: Vec::new(),
            protocol: "http",
            lb: None,
            keepalive: None,
            tls: None,
        };
        for d in b.block.as_deref().unwrap_or(&[]) {
            match d.name.as_str() {
                "server" => {
                    let Some(address) = d.args.first() else {
                        self.list(d, "expects an address");
                        continue;
                    };
                    if address.starts_with("unix:") {
                        self.list(d, "unix-socket upstreams are not supported");
                        continue;
                    }
                    let mut line = if has_port(address) {
                        address.clone()
                    } else {
                        format!("{address}:80")
                    };
                    if let Err(why) = upstream_address(&line) {
                        self.list(d, why);
                        continue;
                    }
                    let mut skip = false;
                    for p in &d.args[1..] {
                        if let Some(w) = p.strip_prefix("weight=") {
                            match w.parse::<u32>() {
                                Ok(n) if n >= 1 => line.push_str(&format!(" weight={n}")),
                                _ => self.list(d, format!("{p}: a weight is a whole number from 1")),
                            }
                        } else if p == "down" {
                            self.list(d, "down: the server is left out");
                            skip = true;
                        } else if p == "backup" {
                            self.list(d, "backup servers are not supported: the server is left out");
                            skip = true;
                        } else if p.starts_with("max_fails=") || p.starts_with("fail_timeout=") {
                            self.list(d, format!("{p}: passive failure counting is not supported; use health_check"));
                        } else {
                            self.list(d, format!("server parameter {p} is not supported"));
                        }
                    }
                    if !skip {
                        up.servers.push(line);
                    }
                }
                "keepalive" => match d.args.first().and_then(|a| a.parse::<usize>().ok()) {
                    Some(n) => up.keepalive = Some((n, format!("{} ({})", words(d), d.at()))),
                    None => self.list(d, "expects a number"),
                },
                "random" if d.args.is_empty() => up.lb = Some(("random", format!("{} ({})", words(d), d.at()))),
                "zone" => {}
                "least_conn" => self.list(d, "not supported: round_robin is used"),
                "ip_hash" | "hash" => self.list(d, "not supported: certgate's consistent_hash keys on the client certificate (or address), round_robin is used"),
                other => self.list(d, why(other)),
            }
        }
        if up.servers.is_empty() {
            self.list(b, "upstream has no usable server");
            return None;
        }
        Some(up)
    }

    fn upstream_tls(&mut self, chain: &[&'a [Directive]], prefix: &str) -> UpstreamTls {
        let get = |name: &str| find(chain, &format!("{prefix}_ssl_{name}"));
        let at = |d: &Directive| format!("{} ({})", words(d), d.at());
        let mut tls = UpstreamTls {
            sni: None,
            verify: (false, None),
            trusted_ca: None,
            verify_depth: None,
            cert: None,
            key: None,
        };
        if let Some(v) = get("verify") {
            match flag(v) {
                Some(on) => tls.verify = (on, Some(at(v))),
                None => self.list(v, "expects on or off"),
            }
        }
        for (name, slot) in [
            ("trusted_certificate", &mut tls.trusted_ca),
            ("certificate", &mut tls.cert),
            ("certificate_key", &mut tls.key),
        ] {
            if let Some(d) = get(name) {
                if let Some(p) = d.args.first().cloned().and_then(|a| self.path(d, &a)) {
                    *slot = Some((p, at(d)));
                }
            }
        }
        if tls.cert.is_some() != tls.key.is_some() {
            // nginx refuses a client certificate without its key (or the reverse); neither
            // is written, so the upstream sees no client certificate rather than a config
            // certgate cannot load.
            let (given, missing) = if tls.cert.is_some() {
                ("certificate", "certificate_key")
            } else {
                ("certificate_key", "certificate")
            };
            if let Some(d) = get(given) {
                self.list(
                    d,
                    format!("{prefix}_ssl_{given} without {prefix}_ssl_{missing} (nginx refuses this too); no client certificate is presented to the upstream"),
                );
            }
            tls.cert = None;
            tls.key = None;
        }
        if let Some(d) = get("verify_depth") {
            match d.args.first().and_then(|a| a.parse::<u32>().ok()) {
                Some(n) => tls.verify_depth = Some((n, at(d))),
                None => self.list(d, "expects a number"),
            }
        }
        if let Some(d) = get("name") {
            match d.args.first() {
                // nginx's default: the host of the proxy_pass URL, as certgate does.
                Some(n) if n == "$proxy_host" => {}
                Some(n) if !n.contains('$') => tls.sni = Some((n.clone(), at(d))),
                _ => self.list(
                    d,
                    "names with variables are not supported; the upstream's host is used",
                ),
            }
        }
        tls
    }

    // -----------------------------------------------------------------------
    // Output
    // -----------------------------------------------------------------------

    fn emit(&self, servers: &[Server], unsupported: &[Unsupported]) -> String {
        let mut w = Writer::default();
        let source = &self.options.source;
        w.comment(
            0,
            &format!("gateway.yaml written by `certgate import-nginx {source}`."),
        );
        w.comment(
            0,
            &format!(
                "nginx's relative paths were read from {} (its configuration prefix: the",
                normalize(&self.options.conf_dir).display()
            ),
        );
        w.comment(
            0,
            "directory of the file given to `nginx -c`; see --conf-dir); certgate reads them from",
        );
        w.comment(
            0,
            "the directory of this file, so relative paths below were rewritten to name the same files.",
        );
        w.comment(
            0,
            "Check it with `certgate -c <this file> check` (that opens every file it names).",
        );
        if unsupported.is_empty() {
            w.comment(0, "Every directive was carried over.");
        } else {
            w.comment(
                0,
                &format!(
                    "NOT carried over ({}, also printed on stderr):",
                    unsupported.len()
                ),
            );
            for u in unsupported {
                w.comment(0, &format!("  {u}"));
            }
        }
        w.blank();
        if let Some(k) = &self.keepalive_timeout {
            w.key(0, "keepalive_timeout", &scalar(&k.value), &comment_of(k));
        }
        w.key(0, "servers", "", "");
        for s in servers {
            w.item_key(2, "name", &scalar(&s.name), &format!("server ({})", s.at));
            w.list(4, "listen", &s.listen);
            if let Some(note) = &s.default_note {
                w.comment(4, note);
            }
            if !s.server_names.is_empty() {
                w.list(4, "server_names", &s.server_names);
            }
            w.key(4, "tls", "", "");
            w.key(6, "cert", &scalar(&s.cert.value), &comment_of(&s.cert));
            w.key(6, "key", &scalar(&s.key.value), &comment_of(&s.key));
            if let Some(p) = &s.protocols {
                w.key(6, "protocols", &flow(&p.value), &comment_of(p));
            }
            w.key(6, "alpn", &flow(&s.alpn.value), &comment_of(&s.alpn));
            if let Some(r) = &s.session_resumption {
                w.key(
                    6,
                    "session_resumption",
                    &r.value.to_string(),
                    &comment_of(r),
                );
            }
            if !s.ticket_keys.is_empty() {
                w.list(6, "session_ticket_keys", &s.ticket_keys);
            }
            w.key(4, "client_auth", "", "");
            w.key(
                6,
                "verify",
                &scalar(&s.verify.value),
                &comment_of(&s.verify),
            );
            if let Some(ca) = &s.ca {
                w.key(6, "ca", &scalar(&ca.value), &comment_of(ca));
            }
            if !s.trusted_ca.is_empty() {
                w.list(6, "trusted_ca", &s.trusted_ca);
            }
            if !s.crl.is_empty() {
                w.list(6, "crl", &s.crl);
            }
            if s.verify.value != "off" {
                w.key(
                    6,
                    "verify_depth",
                    &s.verify_depth.value.to_string(),
                    &comment_of(&s.verify_depth),
                );
            }
            w.key(4, "identity", "", "");
            if s.preset_nginx {
                w.key(
                    6,
                    "preset",
                    "nginx",
                    "the eight X-SSL-Client-* headers of proxy_set_header",
                );
            } else {
                w.key(
                    6,
                    "preset",
                    "none",
                    "only the headers nginx set (certgate's default is the nginx preset)",
                );
            }
            if !s.identity.is_empty() {
                w.key(6, "set", "", "headers every location sets");
                for h in &s.identity {
                    w.key(8, &scalar(&h.name), &scalar(&h.value), &h.at);
                }
            }
            w.key(4, "routes", "", "");
            for r in &s.routes {
                w.comment(6, &r.comment);
                w.item_key(6, "match", "", "");
                for (key, value) in [
                    ("path", &r.path),
                    ("path_prefix", &r.path_prefix),
                    ("path_regex", &r.path_regex),
                ] {
                    if let Some(v) = value {
                        w.key(10, key, &scalar(v), "");
                    }
                }
                let upstream_note = if r.closed_location {
                    "required by the format; never contacted (deny_all)"
                } else {
                    ""
                };
                w.key(8, "upstream", &scalar(&r.upstream), upstream_note);
                if let Some(p) = &r.upstream_path {
                    w.key(8, "upstream_path", &scalar(&p.value), &comment_of(p));
                }
                emit_access(&mut w, &r.access);
                if !r.headers.is_empty() {
                    w.key(8, "headers", "", "");
                    for h in &r.headers {
                        w.key(10, &scalar(&h.name), &scalar(&h.value), &h.at);
                    }
                }
                if let Some(m) = &r.max_body_size {
                    w.key(8, "max_body_size", &scalar(&m.value), &comment_of(m));
                }
                if !r.timeouts.is_empty() {
                    w.key(8, "timeouts", "", "");
                    for (key, t) in &r.timeouts {
                        w.key(10, key, &scalar(&t.value), &comment_of(t));
                    }
                }
            }
        }
        w.blank();
        w.key(0, "upstreams", "", "");
        for u in &self.upstreams {
            w.key(2, &scalar(&u.name), "", &u.at);
            let servers: Vec<FromValue<String>> =
                u.servers.iter().map(|s| plain(s.clone(), "")).collect();
            w.key(
                4,
                "servers",
                &flow(&servers.iter().map(|s| s.value.clone()).collect::<Vec<_>>()),
                "",
            );
            w.key(4, "protocol", u.protocol, "");
            if let Some((lb, at)) = &u.lb {
                w.key(4, "lb", lb, at);
            }
            if let Some((n, at)) = &u.keepalive {
                w.key(4, "keepalive", &n.to_string(), at);
            }
            if let Some(tls) = &u.tls {
                w.key(4, "tls", "", "");
                if let Some((sni, at)) = &tls.sni {
                    w.key(6, "sni", &scalar(sni), at);
                }
                match &tls.verify {
                    (on, Some(at)) => w.key(6, "verify", &on.to_string(), at),
                    (_, None) => w.key(6, "verify", "false", "nginx's default (*_ssl_verify off): the upstream certificate is NOT checked; set true and trusted_ca to check it"),
                }
                if let Some((p, at)) = &tls.trusted_ca {
                    w.key(6, "trusted_ca", &scalar(p), at);
                }
                if let Some((n, at)) = &tls.verify_depth {
                    w.key(6, "verify_depth", &n.to_string(), at);
                }
                if let Some((p, at)) = &tls.cert {
                    w.key(6, "cert", &scalar(p), at);
                }
                if let Some((p, at)) = &tls.key {
                    w.key(6, "key", &scalar(p), at);
                }
            }
        }
        w.finish()
    }
}

/// The start of the comment line above a route's `deny_all: true` that names a check.
pub(crate) fn deny_all_comment(u: &Unsupported) -> String {
    format!(
        "\n        #   {}:{}: ",
        crate::yaml::comment(&u.file),
        u.line
    )
}

/// A route's `require_client_cert`, `allow`, `deny` and `deny_all`, with where each
/// came from.
fn emit_access(w: &mut Writer, a: &access::Access) {
    for note in &a.notes {
        w.comment(8, note);
    }
    if let Some(why) = &a.require_client_cert {
        w.key(8, "require_client_cert", "true", why);
    }
    if a.verified.is_some() || !a.allow.is_empty() {
        w.key(
            8,
            "allow",
            "",
            "any rule that matches allows (verified certificates only)",
        );
        if let Some(why) = &a.verified {
            w.item_key(10, "verified", "true", why);
        }
        for (rule, at) in &a.allow {
            let (key, value) = rule.key_value();
            w.item_key(10, key, &flow(&[value]), at);
        }
    }
    if !a.deny.is_empty() {
        w.key(
            8,
            "deny",
            "",
            "a certificate any rule matches is refused (403)",
        );
        for (rule, at) in &a.deny {
            let (key, value) = rule.key_value();
            w.item_key(10, key, &flow(&[value]), at);
        }
    }
    if !a.deny_all.is_empty() {
        w.comment(8, "NOT CONVERTED: nginx access check(s) that cannot be carried over exactly, so this route");
        w.comment(
            8,
            "refuses every request (fail closed). Carry them over by hand, then remove deny_all:",
        );
        for (at, text, why) in &a.deny_all {
            w.comment(8, &format!("  {at}: {text}: {why}"));
        }
        w.key(
            8,
            "deny_all",
            "true",
            "import-nginx: unconverted access check (see above)",
        );
    } else if let Some(why) = &a.closed {
        w.key(8, "deny_all", "true", why);
    }
}

/// nginx sends a connection whose name matches no `server_name` to the default server
/// of its address (the one marked `default_server`, else the first); certgate to the
/// server without `server_names`. A server that is nginx's default on every address it
/// listens on therefore loses its names (it still gets them: no other server claims
/// them). One that is the default on some addresses only keeps them, with a note.
fn default_servers(servers: &mut Vec<Server>) -> Vec<Unsupported> {
    let mut default_of: Vec<(String, usize)> = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        for addr in &s.defaults {
            if !default_of.iter().any(|(a, _)| a == addr) {
                default_of.push((addr.clone(), i));
            }
        }
    }
    for (i, s) in servers.iter().enumerate() {
        for l in &s.listen {
            if !default_of.iter().any(|(a, _)| a == &l.value) {
                default_of.push((l.value.clone(), i));
            }
        }
    }
    for (i, s) in servers.iter_mut().enumerate() {
        if s.server_names.is_empty() {
            continue;
        }
        let default_on: Vec<&String> = default_of
            .iter()
            .filter(|(_, j)| *j == i)
            .map(|(a, _)| a)
            .collect();
        if default_on.is_empty() {
            continue;
        }
        if default_on.len() == s.listen.len() {
            let names: Vec<String> = s.server_names.iter().map(|n| n.value.clone()).collect();
            s.default_note = Some(format!(
                "server_names omitted: this is nginx's default server for its address, which answers any name (nginx: server_name {})",
                names.join(" ")
            ));
            s.server_names.clear();
        } else {
            s.default_note = Some("nginx's default server on some of its addresses only: certgate needs a server without server_names for that; check the names".to_string());
        }
    }
    let mut removed = Vec::new();
    // nginx warns "conflicting server name … ignored" and keeps the first server with a
    // name on an address; certgate refuses the second, so it is dropped and listed here.
    for i in 1..servers.len() {
        let (earlier, rest) = servers.split_at_mut(i);
        let s = &mut rest[0];
        let taken = |name: &str| {
            earlier.iter().any(|e| {
                e.listen
                    .iter()
                    .any(|a| s.listen.iter().any(|b| a.value == b.value))
                    && e.server_names
                        .iter()
                        .any(|n| n.value.eq_ignore_ascii_case(name))
            })
        };
        let (kept, dropped): (Vec<_>, Vec<_>) = std::mem::take(&mut s.server_names)
            .into_iter()
            .partition(|n| !taken(&n.value));
        for n in dropped {
            removed.push(Unsupported {
                file: s.file.clone(),
                line: s.line,
                directive: "server_name".to_string(),
                why: format!(
                    "conflicting server name {:?} on an address an earlier server names too: nginx ignores it, and so does certgate",
                    n.value
                ),
            });
        }
        s.server_names = kept;
    }
    // A server without names that is not the default of its address only gets requests
    // without a name in nginx; certgate allows one nameless server per address.
    let mut i = 0;
    while i < servers.len() {
        let s = &servers[i];
        let clash = s.server_names.is_empty()
            && s.listen.iter().any(|l| {
                default_of
                    .iter()
                    .any(|(a, j)| a == &l.value && *j != i && servers[*j].server_names.is_empty())
            });
        if clash {
            removed.push(Unsupported {
                file: s.file.clone(),
                line: s.line,
                directive: "server".to_string(),
                why: "a server without server_name that is not the default server of its address only gets requests without a name: not converted".to_string(),
            });
            servers.remove(i);
            for entry in &mut default_of {
                if entry.1 > i {
                    entry.1 -= 1;
                }
            }
        } else {
            i += 1;
        }
    }
    removed
}

/// A location body that only refuses: `return 403;` or `deny all;` (besides directives
/// that change nothing here). nginx answers 403 to every request, as `deny_all` does.
fn refuses_everything(body: &[Directive]) -> bool {
    let mut refusing = false;
    for d in body {
        match (d.name.as_str(), d.args.as_slice()) {
            ("return", [code]) if code == "403" => refusing = true,
            ("deny", [all]) if all == "all" => refusing = true,
            (name, _) if IGNORED.contains(&name) => {}
            _ => return false,
        }
    }
    refusing
}

/// `if (…) { return 403; }` as a comment shows it.
fn check_text(d: &Directive) -> String {
    let mut text = words(d);
    if let Some(body) = &d.block {
        let inner: Vec<String> = body.iter().map(words).collect();
        text = format!("{text} {{ {}; }}", inner.join("; "));
    }
    if text.chars().count() > 100 {
        text = text.chars().take(97).collect::<String>() + "...";
    }
    text
}

fn comment_of<T>(f: &FromValue<T>) -> String {
    match (&f.at, &f.note) {
        (Some(at), Some(note)) => format!("{at}; {note}"),
        (Some(at), None) => at.clone(),
        (None, Some(note)) => note.clone(),
        (None, None) => String::new(),
    }
}

fn flow<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<String> = items.iter().map(|s| scalar(s.as_ref())).collect();
    format!("[{}]", parts.join(", "))
}

// ---------------------------------------------------------------------------
// Small parsers for nginx values
// ---------------------------------------------------------------------------

/// `listen` address → certgate's `ip:port`, and a note when it had to be interpreted.
fn listen_address(text: &str) -> Result<(String, Option<String>), String> {
    if text.starts_with("unix:") {
        return Err("unix-socket listeners are not supported".to_string());
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok((format!("0.0.0.0:{}", valid_port(text)?), None));
    }
    if let Some(port) = text.strip_prefix("*:") {
        return Ok((format!("0.0.0.0:{}", valid_port(port)?), None));
    }
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        valid_port(&addr.port().to_string())?;
        return Ok((addr.to_string(), None));
    }
    if let Ok(ip) = text.parse::<std::net::Ipv4Addr>() {
        return Ok((format!("{ip}:80"), None));
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        if port.parse::<u16>().is_ok() {
            return Ok((
                format!("127.0.0.1:{port}"),
                Some("localhost read as 127.0.0.1 (certgate does not resolve names)".to_string()),
            ));
        }
    }
    Err(format!(
        "{text}: certgate listens on IP addresses, not host names"
    ))
}

/// `server_name` entry → names certgate matches; `Err(None)` for names that mean "any"
/// in nginx (`_`, `""`), `Err(Some(why))` for what cannot be expressed.
fn server_name(name: &str) -> Result<Vec<String>, Option<String>> {
    if name.is_empty() || name == "_" {
        return Err(None);
    }
    if name.starts_with('~') {
        return Err(Some(
            "regular-expression server names are not supported".to_string(),
        ));
    }
    if name.contains('$') {
        return Err(Some(
            "server names with variables are not supported".to_string(),
        ));
    }
    if name.ends_with(".*") {
        return Err(Some("trailing wildcards are not supported".to_string()));
    }
    let valid = |n: &str| {
        let bare = n.strip_prefix("*.").unwrap_or(n);
        !bare.is_empty()
            && bare.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    if let Some(rest) = name.strip_prefix('.') {
        if valid(rest) {
            return Ok(vec![rest.to_string(), format!("*.{rest}")]);
        }
    }
    if valid(name) {
        return Ok(vec![name.to_string()]);
    }
    Err(Some("not a host name certgate can match".to_string()))
}

#[derive(Debug, PartialEq)]
struct Target {
    protocol: &'static str,
    host: String,
    port: u16,
    explicit_port: bool,
    uri: Option<String>,
}

/// `proxy_pass http://host:port/uri` / `grpc_pass grpcs://host:port`.
fn parse_pass(url: &str, grpc: bool) -> Result<Target, String> {
    if url.contains('$') {
        return Err("upstream addresses with variables are not supported".to_string());
    }
    let (protocol, rest, default_port) = if grpc {
        if let Some(r) = url.strip_prefix("grpcs://") {
            ("grpcs", r, 443)
        } else if let Some(r) = url.strip_prefix("grpc://") {
            ("grpc", r, 80)
        } else {
            ("grpc", url, 80)
        }
    } else if let Some(r) = url.strip_prefix("https://") {
        ("https", r, 443)
    } else if let Some(r) = url.strip_prefix("http://") {
        ("http", r, 80)
    } else {
        return Err(format!("{url}: expected an http:// or https:// URL"));
    };
    if rest.starts_with("unix:") {
        return Err("unix-socket upstreams are not supported".to_string());
    }
    let (authority, uri) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(rest[i..].to_string())),
        None => (rest, None),
    };
    if grpc && uri.is_some() {
        return Err("grpc_pass takes no URI".to_string());
    }
    let (host, port, explicit_port) = if let Some(inner) = authority.strip_prefix('[') {
        let (ip, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("{url}: bad IPv6 address"))?;
        match after.strip_prefix(':') {
            Some(p) => (
                format!("[{ip}]"),
                p.parse().map_err(|_| format!("{url}: bad port"))?,
                true,
            ),
            None => (format!("[{ip}]"), default_port, false),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                p.parse().map_err(|_| format!("{url}: bad port"))?,
                true,
            ),
            None => (authority.to_string(), default_port, false),
        }
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    upstream_address(&format!("{host}:{port}")).map_err(|why| format!("{url}: {why}"))?;
    Ok(Target {
        protocol,
        host,
        port,
        explicit_port,
        uri,
    })
}

/// A port certgate listens on or connects to: 1 to 65535.
fn valid_port(text: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(format!("{text}: a port is a number from 1 to 65535")),
    }
}

/// `host:port` as certgate's upstream `servers` accept it (a name of letters, digits, `-`
/// and `_` labels, an IPv4 address, or a bracketed IPv6 address), so nothing nginx would
/// refuse to resolve is written.
fn upstream_address(address: &str) -> Result<(), String> {
    let port = if let Some(rest) = address.strip_prefix('[') {
        let (ip, port) = rest
            .split_once("]:")
            .ok_or_else(|| format!("{address}: not an address"))?;
        ip.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{address}: not an IPv6 address"))?;
        port
    } else {
        let (host, port) = address
            .rsplit_once(':')
            .ok_or_else(|| format!("{address}: no port"))?;
        let valid_host = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid_host {
            return Err(format!("{host}: not a host name or address"));
        }
        port
    };
    valid_port(port).map(|_| ())
}

fn has_port(address: &str) -> bool {
    match address.strip_prefix('[') {
        Some(rest) => rest.contains("]:"),
        None => address.contains(':'),
    }
}

fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "upstream".to_string()
    } else {
        s
    }
}

/// At most 9 digits in a number: nginx's own limits are lower, and certgate's parser
/// must not overflow on what is written (a fuzz finding class).
const MAX_DIGITS: usize = 9;

fn is_size(v: &str) -> bool {
    let digits = v.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G']);
    !digits.is_empty()
        && digits.len() <= MAX_DIGITS
        && digits.bytes().all(|b| b.is_ascii_digit())
        && v.len() - digits.len() <= 1
}

fn is_time(v: &str) -> bool {
    if v.is_empty()
        || v.split(|c: char| !c.is_ascii_digit())
            .any(|run| run.len() > MAX_DIGITS)
    {
        return false;
    }
    let mut rest = v;
    if rest.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    while !rest.is_empty() {
        let d = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if d == 0 {
            return false;
        }
        rest = &rest[d..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        if !matches!(&rest[..u], "ms" | "s" | "m" | "h" | "d" | "w") {
            return false;
        }
        rest = &rest[u..];
    }
    true
}

/// `a/./b/../c` → `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// `target` relative to directory `base` (both normalized, both absolute or both
/// relative to the same directory).
fn relative(target: &Path, base: &Path) -> PathBuf {
    if target.is_absolute() != base.is_absolute() {
        return target.to_path_buf();
    }
    let t: Vec<Component> = target.components().collect();
    let b: Vec<Component> = base.components().collect();
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if target.is_absolute() && common <= 1 && b.len() > 1 {
        // Only the root in common: an absolute path reads better.
        return target.to_path_buf();
    }
    let mut out = PathBuf::new();
    for _ in common..b.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c.as_os_str());
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

#[cfg(test)]
pub(crate) mod unit {
    use super::*;

    #[test]
    fn values_nginx_would_refuse_are_listed_not_written() {
        // Found by the fuzzer: these reached gateway.yaml, which certgate then refused.
        assert!(listen_address("99999999999999999999").is_err());
        assert!(listen_address("*:0").is_err());
        assert!(listen_address("0.0.0.0:0").is_err());
        assert!(upstream_address("@BACKEND@:80").is_err());
        assert!(upstream_address("app:0").is_err());
        assert!(upstream_address("[::1]:5000").is_ok());
        assert!(upstream_address("backend.internal:5000").is_ok());
        assert!(parse_pass("http://@BACKEND@", false).is_err());
        assert!(parse_pass("grpcs://127.0.0.1:70000", true).is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(listen_address("443").unwrap().0, "0.0.0.0:443");
        assert_eq!(listen_address("*:8443").unwrap().0, "0.0.0.0:8443");
        assert_eq!(
            listen_address("127.0.0.1:8443").unwrap().0,
            "127.0.0.1:8443"
        );
        assert_eq!(listen_address("[::]:443").unwrap().0, "[::]:443");
        assert_eq!(listen_address("localhost:443").unwrap().0, "127.0.0.1:443");
        assert!(listen_address("example.org:443").is_err());
        assert!(listen_address("unix:/run/x.sock").is_err());
    }

    #[test]
    fn pass_targets() {
        let t = parse_pass("http://127.0.0.1:5000", false).unwrap();
        assert_eq!(
            (t.protocol, t.host.as_str(), t.port, t.uri),
            ("http", "127.0.0.1", 5000, None)
        );
        let t = parse_pass("https://backend/api/", false).unwrap();
        assert_eq!(
            (t.protocol, t.port, t.explicit_port, t.uri.as_deref()),
            ("https", 443, false, Some("/api/"))
        );
        let t = parse_pass("grpcs://127.0.0.1:8080", true).unwrap();
        assert_eq!((t.protocol, t.port), ("grpcs", 8080));
        assert_eq!(
            parse_pass("localhost:50051", true).unwrap().protocol,
            "grpc"
        );
        assert_eq!(parse_pass("http://[::1]:81", false).unwrap().host, "[::1]");
        assert!(parse_pass("http://$backend", false).is_err());
        assert!(parse_pass("http://unix:/tmp/s:/", false).is_err());
        assert!(parse_pass("ftp://x", false).is_err());
    }

    #[test]
    fn server_names() {
        assert_eq!(
            server_name("api.example.org"),
            Ok(vec!["api.example.org".into()])
        );
        assert_eq!(
            server_name(".example.org"),
            Ok(vec!["example.org".into(), "*.example.org".into()])
        );
        assert_eq!(server_name("_"), Err(None));
        assert!(matches!(server_name("~^(?<u>.+)\\.x$"), Err(Some(_))));
        assert!(matches!(server_name("www.example.*"), Err(Some(_))));
    }

    #[test]
    fn paths_are_rebased_lexically() {
        let r = |t: &str, b: &str| {
            relative(&normalize(Path::new(t)), &normalize(Path::new(b)))
                .to_string_lossy()
                .into_owned()
        };
        assert_eq!(r("/etc/nginx/ca/server.crt", "/etc/nginx"), "ca/server.crt");
        assert_eq!(
            r("/etc/nginx/ca/server.crt", "/etc/certgate"),
            "../nginx/ca/server.crt"
        );
        assert_eq!(
            r("/etc/nginx/./ca/../ca.crt", "/etc/nginx/sub"),
            "../ca.crt"
        );
        assert_eq!(r("/srv/a.crt", "/home/u"), "/srv/a.crt");
        assert_eq!(r("conf/ca.crt", "."), "conf/ca.crt");
        assert_eq!(r("conf/ca.crt", "out"), "../conf/ca.crt");
    }

    #[test]
    fn sizes_and_times() {
        for ok in ["0", "10m", "512k", "1G", "1048576"] {
            assert!(is_size(ok), "{ok}");
        }
        for bad in ["", "m", "10mb", "1.5m", "99999999999999999999g"] {
            assert!(!is_size(bad), "{bad}");
        }
        for ok in ["60", "60s", "1m30s", "500ms", "2h"] {
            assert!(is_time(ok), "{ok}");
        }
        for bad in [
            "",
            "s",
            "10x",
            "1.5s",
            "99999999999999999999w",
            "1s99999999999999ms",
        ] {
            assert!(!is_time(bad), "{bad}");
        }
    }
}
