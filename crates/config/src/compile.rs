//! The validate/compile step: raw sections in, the public model out. Every check that
//! needs more than a type (choices, syntaxes, cross-references, overlapping listeners)
//! lives here, and every failure is collected rather than returned at the first one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::Value;

use crate::error::{ConfigError, Location};
use crate::location::{join_index, join_key, LocationIndex};
use crate::model::*;
use crate::raw::{self, did_you_mean, OneOrMany, OrderedMap, RawError, Scalar, Section};
use crate::units::{parse_duration, parse_size, SIZE_SYNTAX, TIME_SYNTAX};

/// What a successful compile produces, before it is wrapped into a `Config`.
pub(crate) struct Output {
    pub admin: Option<AdminConfig>,
    pub log: LogConfig,
    pub servers: Vec<ServerConfig>,
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    pub shutdown_grace: Duration,
    pub keepalive_timeout: Duration,
    pub watch: bool,
    pub pid_file: Option<PathBuf>,
    pub client_limits: ClientLimits,
    pub paths: certgate_path::Options,
    pub warnings: Vec<ConfigError>,
}

/// How long `SIGTERM` waits for requests in flight by default (systemd's stop timeout is 90s,
/// Kubernetes' termination grace 30s: 10s leaves room under both).
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// pingora's 60 s between HTTP/1.x requests (nginx's `keepalive_timeout` default is 75s).
const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// nginx's `client_max_body_size` default.
const DEFAULT_MAX_BODY_SIZE: u64 = 1 << 20;
const DEFAULT_VERIFY_DEPTH: u32 = 1;
const DEFAULT_KEEPALIVE: usize = 64;
const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(5);
/// `signed_urls.max_ttl` default: long enough to start a clip, short as a bearer token.
const DEFAULT_SIGNED_URL_TTL: Duration = Duration::from_secs(5 * 60);
/// The longest `signed_urls.max_ttl`: a feature-length film with pauses.
const MAX_SIGNED_URL_TTL: Duration = Duration::from_secs(24 * 60 * 60);

const TOP_LEVEL_KEYS: &[&str] = &[
    "admin",
    "log",
    "servers",
    "upstreams",
    "shutdown_grace",
    "keepalive_timeout",
    "watch",
    "pid_file",
    "client_header_timeout",
    "client_body_timeout",
    "large_client_header_buffers",
    "max_headers",
    "max_connections",
    "http2_max_concurrent_streams",
    "underscores_in_headers",
    "paths",
];
const ALLOW_RULES: &[&str] = &[
    "cn",
    "ou",
    "subject",
    "issuer",
    "subject_regex",
    "issuer_regex",
    "san_uri",
    "san_dns",
    "fingerprint_sha256",
    "fingerprint_sha1",
    "serial",
    "spki_sha256",
    "verified",
];
/// Headers that describe the connection or the message framing: setting them from the
/// config would corrupt the proxied request (request smuggling, broken keep-alive).
const UNSETTABLE_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Compiles the parsed YAML document. Returns the model and every error found.
pub(crate) fn compile(
    root: &Value,
    file: &Path,
    index: &LocationIndex,
) -> (Output, Vec<ConfigError>) {
    let mut c = Compiler {
        file,
        base_dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
        index,
        errors: Vec::new(),
        warnings: Vec::new(),
        damaged: Vec::new(),
    };
    let output = c.top_level(root);
    let mut errors = c.errors;
    // File order reads best; the sort is stable so errors at one spot keep their order.
    errors.sort_by_key(|e| (e.location.line, e.location.column));
    let mut warnings = c.warnings;
    warnings.sort_by_key(|w| (w.location.line, w.location.column));
    (Output { warnings, ..output }, errors)
}

struct Compiler<'a> {
    file: &'a Path,
    base_dir: PathBuf,
    index: &'a LocationIndex,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    /// Keys dropped during deserialization (see `raw::Section::damaged`).
    damaged: Vec<String>,
}

/// Whether `a` is `b` or one of them contains the other (`x.y` and `x.y[0].z`).
fn related(a: &str, b: &str) -> bool {
    let contains = |outer: &str, inner: &str| {
        inner
            .strip_prefix(outer)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
    };
    contains(a, b) || contains(b, a)
}

/// How a YAML value is named in "found …" messages.
fn describe_value(value: &Value) -> String {
    match value {
        Value::Null => "an empty value".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".to_string(),
        Value::Mapping(_) => "a mapping".to_string(),
        Value::Tagged(_) => "a tagged value".to_string(),
    }
}

impl Compiler<'_> {
    fn located(&self, key_path: &str, message: String) -> ConfigError {
        let (line, column) = self.index.locate(key_path);
        ConfigError {
            location: Location {
                file: self.file.to_path_buf(),
                line,
                column,
            },
            key_path: key_path.to_string(),
            message,
        }
    }

    fn error(&mut self, key_path: &str, message: impl Into<String>) {
        // A key whose value was dropped as malformed was already reported; whatever
        // defaults stand in for it must not produce a second, misleading error.
        if self.damaged.iter().any(|d| related(d, key_path)) {
            return;
        }
        let error = self.located(key_path, message.into());
        self.errors.push(error);
    }

    fn warning(&mut self, key_path: &str, message: impl Into<String>) {
        let warning = self.located(key_path, message.into());
        self.warnings.push(warning);
    }

    fn section<T: serde::de::DeserializeOwned>(&mut self, value: &Value, path: &str) -> Option<T> {
        let Section {
            value,
            errors,
            damaged,
        } = raw::deserialize_section::<T>(value, path);
        for RawError { key_path, message } in errors {
            let error = self.located(&key_path, message);
            self.errors.push(error);
        }
        self.damaged.extend(damaged);
        value
    }

    fn top_level(&mut self, root: &Value) -> Output {
        let mut output = Output {
            admin: None,
            log: LogConfig::default(),
            servers: Vec::new(),
            upstreams: BTreeMap::new(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            watch: false,
            pid_file: None,
            client_limits: ClientLimits::default(),
            paths: certgate_path::Options::default(),
            warnings: Vec::new(),
        };
        let empty = serde_yaml::Mapping::new();
        let map = match root {
            // An empty file: report what is missing rather than a type error.
            Value::Null => &empty,
            Value::Mapping(map) => map,
            other => {
                self.error(
                    "",
                    format!(
                        "expected a mapping with servers and upstreams at the top level; found {}",
                        describe_value(other)
                    ),
                );
                return output;
            }
        };
        let mut sections: HashMap<&str, &Value> = HashMap::new();
        for (key, value) in map {
            match key.as_str() {
                Some(name) if TOP_LEVEL_KEYS.contains(&name) => {
                    sections.insert(name, value);
                }
                Some(other) => {
                    let mut message =
                        format!("unknown key; expected one of {}", TOP_LEVEL_KEYS.join(", "));
                    if let Some(suggestion) = did_you_mean(other, TOP_LEVEL_KEYS) {
                        message.push_str(&format!(" (did you mean {suggestion}?)"));
                        // `upstream:` for `upstreams:`: the typo is the cause; "upstreams:
                        // missing required key" would only repeat it (see
                        // `raw::deserialize_section` for the same rule inside sections).
                        if !map.contains_key(suggestion) {
                            self.damaged.push(suggestion.to_string());
                        }
                    }
                    self.error(other, message);
                }
                None => self.error(
                    "",
                    format!("keys must be strings; found {}", describe_value(key)),
                ),
            }
        }

        if let Some(value) = sections.get("admin").filter(|v| !v.is_null()) {
            output.admin = self.admin(value);
        }
        if let Some(value) = sections.get("shutdown_grace").filter(|v| !v.is_null()) {
            if let Some(raw) = self.section::<raw::Scalar>(value, "shutdown_grace") {
                output.shutdown_grace =
                    self.duration("shutdown_grace", Some(&raw), DEFAULT_SHUTDOWN_GRACE);
            }
        }
        if let Some(value) = sections.get("keepalive_timeout").filter(|v| !v.is_null()) {
            if let Some(raw) = self.section::<raw::Scalar>(value, "keepalive_timeout") {
                output.keepalive_timeout =
                    self.duration("keepalive_timeout", Some(&raw), DEFAULT_KEEPALIVE_TIMEOUT);
            }
        }
        if let Some(value) = sections.get("watch").filter(|v| !v.is_null()) {
            if let Some(watch) = self.section::<bool>(value, "watch") {
                output.watch = watch;
            }
        }
        if let Some(value) = sections.get("pid_file").filter(|v| !v.is_null()) {
            if let Some(text) = self.section::<String>(value, "pid_file") {
                output.pid_file = self.file_path("pid_file", &text);
            }
        }
        output.client_limits = self.client_limits(&sections);
        if let Some(value) = sections.get("paths").filter(|v| !v.is_null()) {
            if let Some(raw) = self.section::<raw::RawPaths>(value, "paths") {
                output.paths.encoded_slashes = self.choice(
                    "paths.encoded_slashes",
                    raw.encoded_slashes.as_ref(),
                    &[
                        ("reject", certgate_path::EncodedSlashes::Reject),
                        ("keep", certgate_path::EncodedSlashes::Keep),
                    ],
                    certgate_path::EncodedSlashes::Reject,
                );
            }
        }
        if let Some(value) = sections.get("log").filter(|v| !v.is_null()) {
            if let Some(raw) = self.section::<raw::RawLog>(value, "log") {
                output.log = self.log(raw);
            }
        }

        // Upstreams first, so routes can be checked against every defined name, including
        // those whose own definition is broken (already reported; no "unknown upstream").
        let mut upstream_names = BTreeSet::new();
        match sections.get("upstreams") {
            None => self.error("upstreams", "missing required key"),
            Some(Value::Null) => self.error("upstreams", "at least one upstream is required"),
            Some(Value::Mapping(map)) => {
                if map.is_empty() {
                    self.error("upstreams", "at least one upstream is required");
                }
                for (key, value) in map {
                    let Some(name) = key.as_str() else {
                        self.error(
                            "upstreams",
                            format!(
                                "upstream names must be strings; found {}",
                                describe_value(key)
                            ),
                        );
                        continue;
                    };
                    upstream_names.insert(name.to_string());
                    if let Some(upstream) = self.upstream(name, value) {
                        output.upstreams.insert(name.to_string(), upstream);
                    }
                }
            }
            Some(other) => self.error(
                "upstreams",
                format!(
                    "expected a mapping of upstream names to upstreams; found {}",
                    describe_value(other)
                ),
            ),
        }

        match sections.get("servers") {
            None => self.error("servers", "missing required key"),
            Some(Value::Null) => self.error("servers", "at least one server is required"),
            Some(Value::Sequence(items)) => {
                if items.is_empty() {
                    self.error("servers", "at least one server is required");
                }
                let mut compiled = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let path = join_index("servers", i);
                    if let Some(raw) = self.section::<raw::RawServer>(item, &path) {
                        compiled.push((i, self.server(i, raw, &upstream_names)));
                    }
                }
                self.check_listeners(&compiled);
                output.servers = compiled.into_iter().map(|(_, server)| server).collect();
            }
            Some(other) => self.error(
                "servers",
                format!(
                    "expected a list of servers; found {}",
                    describe_value(other)
                ),
            ),
        }

        let used: BTreeSet<&str> = output
            .servers
            .iter()
            .flat_map(|s| s.routes.iter().map(|r| r.upstream.as_str()))
            .collect();
        for name in output.upstreams.keys() {
            if !used.contains(name.as_str()) {
                self.warning(&join_key("upstreams", name), "not used by any route");
            }
        }
        output
    }

    /// The top-level client limits (`client_header_timeout`, …), defaults for those absent.
    fn client_limits(&mut self, sections: &HashMap<&str, &Value>) -> ClientLimits {
        let mut limits = ClientLimits::default();
        let scalar = |c: &mut Self, key: &str| -> Option<Scalar> {
            let value = sections.get(key).filter(|v| !v.is_null())?;
            c.section::<Scalar>(value, key)
        };
        if let Some(raw) = scalar(self, "client_header_timeout") {
            limits.client_header_timeout = self.duration(
                "client_header_timeout",
                Some(&raw),
                limits.client_header_timeout,
            );
        }
        if let Some(raw) = scalar(self, "client_body_timeout") {
            limits.client_body_timeout = self.duration(
                "client_body_timeout",
                Some(&raw),
                limits.client_body_timeout,
            );
        }
        if let Some(raw) = scalar(self, "large_client_header_buffers") {
            if let Some((number, size)) = self.header_buffers(&raw) {
                limits.header_buffers = number;
                limits.header_buffer_size = size;
            }
        }
        if let Some(raw) = scalar(self, "max_headers") {
            if let Some(n) = self.count("max_headers", &raw, 1, 10_000) {
                limits.max_headers = n as usize;
            }
        }
        if let Some(raw) = scalar(self, "max_connections") {
            if let Some(n) = self.count("max_connections", &raw, 1, 1 << 24) {
                limits.max_connections = n as usize;
            }
        }
        if let Some(raw) = scalar(self, "http2_max_concurrent_streams") {
            if let Some(n) = self.count("http2_max_concurrent_streams", &raw, 1, 1 << 16) {
                limits.http2_max_concurrent_streams = n as u32;
            }
        }
        if let Some(value) = sections
            .get("underscores_in_headers")
            .filter(|v| !v.is_null())
        {
            if let Some(allow) = self.section::<bool>(value, "underscores_in_headers") {
                limits.underscores_in_headers = allow;
            }
        }
        limits
    }

    /// nginx's `large_client_header_buffers number size`, e.g. `4 8k`.
    fn header_buffers(&mut self, raw: &Scalar) -> Option<(u32, u64)> {
        const KEY: &str = "large_client_header_buffers";
        const SYNTAX: &str = "expected a number and a size like \"4 8k\"";
        let Scalar::Str(text) = raw else {
            self.error(KEY, format!("{SYNTAX}; found {}", raw.describe()));
            return None;
        };
        let mut words = text.split_whitespace();
        let parsed = match (words.next(), words.next(), words.next()) {
            (Some(number), Some(size), None) => {
                number.parse::<u32>().ok().zip(parse_size(size).ok())
            }
            _ => None,
        };
        let Some((number, size)) = parsed else {
            self.error(KEY, format!("{SYNTAX}; found {}", raw.describe()));
            return None;
        };
        // hyper reads a request header into one buffer of at least 8 KB; nginx refuses a
        // buffer smaller than its connection buffer (1k) too.
        if !(1..=64).contains(&number) {
            self.error(
                KEY,
                format!("the number of buffers must be 1 to 64; found {number}"),
            );
            return None;
        }
        if !(1024..=1 << 20).contains(&size) {
            self.error(
                KEY,
                format!("the buffer size must be 1k to 1m; found {size}"),
            );
            return None;
        }
        Some((number, size))
    }

    /// A whole number in `min..=max`.
    fn count(&mut self, path: &str, raw: &Scalar, min: u64, max: u64) -> Option<u64> {
        match raw {
            Scalar::Int(n) => match u64::try_from(*n) {
                Ok(n) if (min..=max).contains(&n) => Some(n),
                _ => {
                    self.error(path, format!("must be {min} to {max}; found {n}"));
                    None
                }
            },
            other => {
                self.error(
                    path,
                    format!("expected a whole number; found {}", other.describe()),
                );
                None
            }
        }
    }

    fn admin(&mut self, value: &Value) -> Option<AdminConfig> {
        let raw = self.section::<raw::RawAdmin>(value, "admin")?;
        let listen = self.socket_addr("admin.listen", &raw.listen)?;
        Some(AdminConfig { listen })
    }

    fn log(&mut self, raw: raw::RawLog) -> LogConfig {
        let defaults = LogConfig::default();
        let level = match &raw.level {
            None => defaults.level,
            Some(value) => {
                const LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];
                match value {
                    Scalar::Str(s) if LEVELS.contains(&s.as_str()) => s.clone(),
                    other => {
                        self.error("log.level", one_of(LEVELS, other));
                        defaults.level
                    }
                }
            }
        };
        let access = match &raw.access {
            None => AccessLog::Stdout,
            Some(Scalar::Str(s)) if s == "stdout" => AccessLog::Stdout,
            // YAML 1.1 habit: `access: off` may have been written as `false`.
            Some(Scalar::Str(s)) if s == "off" => AccessLog::Off,
            Some(Scalar::Bool(false)) => AccessLog::Off,
            Some(Scalar::Str(s)) => match self.file_path("log.access", s) {
                Some(path) => AccessLog::File(path),
                None => AccessLog::Stdout,
            },
            Some(other) => {
                self.error(
                    "log.access",
                    format!(
                        "expected stdout, off or a file path; found {}",
                        other.describe()
                    ),
                );
                AccessLog::Stdout
            }
        };
        let format = self.choice(
            "log.format",
            raw.format.as_ref(),
            &[("combined", LogFormat::Combined), ("json", LogFormat::Json)],
            LogFormat::Combined,
        );
        let stderr_format = self.choice(
            "log.stderr_format",
            raw.stderr_format.as_ref(),
            &[("text", StderrFormat::Text), ("json", StderrFormat::Json)],
            StderrFormat::Text,
        );
        LogConfig {
            level,
            access,
            format,
            stderr_format,
        }
    }

    /// Reads an enum-like value: one of `choices`, else an error listing them.
    fn choice<T: Copy>(
        &mut self,
        path: &str,
        value: Option<&Scalar>,
        choices: &[(&str, T)],
        default: T,
    ) -> T {
        match value {
            None => default,
            Some(value) => self.pick(path, value, choices).unwrap_or(default),
        }
    }

    /// One of `choices`; `None` (after reporting it) for anything else.
    fn pick<T: Copy>(&mut self, path: &str, value: &Scalar, choices: &[(&str, T)]) -> Option<T> {
        if let Scalar::Str(s) = value {
            if let Some((_, t)) = choices.iter().find(|(name, _)| name == s) {
                return Some(*t);
            }
        }
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        self.error(path, one_of(&names, value));
        None
    }

    /// Resolves a file path against the config file's directory (as nginx resolves
    /// against its prefix); nothing is opened here.
    fn file_path(&mut self, path: &str, text: &str) -> Option<PathBuf> {
        if text.trim().is_empty() {
            self.error(path, "expected a file path; found an empty string");
            return None;
        }
        let p = Path::new(text);
        Some(if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        })
    }

    fn file_paths(&mut self, path: &str, texts: Option<OneOrMany<String>>) -> Vec<PathBuf> {
        let texts = texts.map(|t| t.0).unwrap_or_default();
        texts
            .iter()
            .enumerate()
            .filter_map(|(i, text)| self.file_path(&join_index(path, i), text))
            .collect()
    }

    fn socket_addr(&mut self, path: &str, value: &Scalar) -> Option<SocketAddr> {
        let any = |port: u16| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        let parsed = match value {
            Scalar::Int(port) => u16::try_from(*port).ok().map(any),
            Scalar::Str(s) => {
                let port_only = s.strip_prefix("*:").unwrap_or(s);
                if !port_only.is_empty() && port_only.bytes().all(|b| b.is_ascii_digit()) {
                    port_only.parse().ok().map(any)
                } else {
                    s.parse().ok()
                }
            }
            _ => None,
        };
        if parsed.is_none() {
            self.error(
                path,
                format!(
                    "expected an IP address and port like 0.0.0.0:8443, [::]:8443 or 127.0.0.1:8443 (host names are not resolved); found {}",
                    value.describe()
                ),
            );
        }
        parsed
    }

    fn server(
        &mut self,
        i: usize,
        raw: raw::RawServer,
        upstreams: &BTreeSet<String>,
    ) -> ServerConfig {
        let base = join_index("servers", i);
        let at = |key: &str| join_key(&base, key);

        let name = match raw.name {
            Some(name) if name.trim().is_empty() => {
                self.error(&at("name"), "must not be empty");
                format!("server{i}")
            }
            Some(name) => name,
            None => format!("server{i}"),
        };

        let mut listen = Vec::new();
        if raw.listen.0.is_empty() {
            self.error(&at("listen"), "at least one address is required");
        }
        for (k, value) in raw.listen.0.iter().enumerate() {
            let path = join_index(&at("listen"), k);
            if let Some(addr) = self.socket_addr(&path, value) {
                if listen.contains(&addr) {
                    self.error(&path, format!("{addr} is listed twice"));
                } else {
                    listen.push(addr);
                }
            }
        }

        let mut server_names: Vec<String> = Vec::new();
        for (k, text) in raw
            .server_names
            .map(|n| n.0)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let path = join_index(&at("server_names"), k);
            let Some(host) = self.host_name(&path, &text, true) else {
                continue;
            };
            if server_names.contains(&host) {
                self.error(&path, format!("{host:?} is listed twice"));
            } else {
                server_names.push(host);
            }
        }

        let tls = self.tls(&at("tls"), raw.tls);
        let client_auth = self.client_auth(&at("client_auth"), raw.client_auth.unwrap_or_default());
        let identity = self.identity(&at("identity"), raw.identity.unwrap_or_default());

        let mut routes = Vec::new();
        match raw.routes {
            Some(items) if !items.is_empty() => {
                for (j, route) in items.into_iter().enumerate() {
                    let path = join_index(&at("routes"), j);
                    routes.push(self.route(&path, route, upstreams, &client_auth, &base));
                }
            }
            _ => self.error(&at("routes"), "at least one route is required"),
        }

        ServerConfig {
            name,
            listen,
            server_names,
            tls,
            client_auth,
            identity,
            routes,
        }
    }

    /// A DNS name as used in SNI and Host: letters, digits, `-`, `_`, dots; optionally a
    /// leading `*.` wildcard. Returned lower-cased.
    fn host_name(&mut self, path: &str, text: &str, wildcard: bool) -> Option<String> {
        let host = text.to_ascii_lowercase();
        let name = if wildcard {
            host.strip_prefix("*.").unwrap_or(&host)
        } else {
            &host
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if valid {
            Some(host)
        } else {
            let example = if wildcard {
                "api.example.org or *.example.org"
            } else {
                "backend.internal"
            };
            self.error(
                path,
                format!("expected a host name like {example}; found {text:?}"),
            );
            None
        }
    }

    fn tls(&mut self, base: &str, raw: raw::RawTls) -> TlsConfig {
        let at = |key: &str| join_key(base, key);
        let cert = self.file_path(&at("cert"), &raw.cert).unwrap_or_default();
        let key = self.file_path(&at("key"), &raw.key).unwrap_or_default();

        let protocols = match raw.protocols {
            None => vec![TlsProtocol::Tls12, TlsProtocol::Tls13],
            Some(items) => {
                let mut protocols = Vec::new();
                for (k, value) in items.0.iter().enumerate() {
                    let path = join_index(&at("protocols"), k);
                    let protocol = match value {
                        Scalar::Str(s) if s == "TLSv1.2" => TlsProtocol::Tls12,
                        Scalar::Str(s) if s == "TLSv1.3" => TlsProtocol::Tls13,
                        Scalar::Str(s)
                            if ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1"].contains(&s.as_str()) =>
                        {
                            self.error(&path, format!("{s} is not supported (insecure, RFC 8996); use TLSv1.2 and/or TLSv1.3"));
                            continue;
                        }
                        other => {
                            self.error(&path, one_of(&["TLSv1.2", "TLSv1.3"], other));
                            continue;
                        }
                    };
                    if protocols.contains(&protocol) {
                        self.error(&path, format!("{} is listed twice", protocol.as_str()));
                    } else {
                        protocols.push(protocol);
                    }
                }
                if items.0.is_empty() {
                    self.error(
                        &at("protocols"),
                        "at least one of TLSv1.2, TLSv1.3 is required",
                    );
                }
                protocols
            }
        };

        let alpn = match raw.alpn {
            None => vec![Alpn::H2, Alpn::Http11],
            Some(items) => {
                let mut alpn = Vec::new();
                for (k, value) in items.0.iter().enumerate() {
                    let path = join_index(&at("alpn"), k);
                    let protocol = match value {
                        Scalar::Str(s) if s == "h2" => Alpn::H2,
                        Scalar::Str(s) if s == "http/1.1" => Alpn::Http11,
                        other => {
                            self.error(&path, one_of(&["h2", "http/1.1"], other));
                            continue;
                        }
                    };
                    if alpn.contains(&protocol) {
                        self.error(&path, format!("{} is listed twice", value.describe()));
                    } else {
                        alpn.push(protocol);
                    }
                }
                if items.0.is_empty() {
                    self.error(&at("alpn"), "at least one of h2, http/1.1 is required");
                }
                alpn
            }
        };

        let session_resumption = raw.session_resumption.unwrap_or(true);
        let session_ticket_keys =
            self.file_paths(&at("session_ticket_keys"), raw.session_ticket_keys);
        if !session_resumption && !session_ticket_keys.is_empty() {
            self.warning(
                &at("session_ticket_keys"),
                "ignored with session_resumption: false",
            );
        }
        TlsConfig {
            cert,
            key,
            protocols,
            alpn,
            session_resumption,
            session_ticket_keys,
        }
    }

    fn client_auth(&mut self, base: &str, raw: raw::RawClientAuth) -> ClientAuthConfig {
        let at = |key: &str| join_key(base, key);
        const VERIFY: &[&str] = &["on", "optional", "optional_no_ca", "off"];
        let verify = match &raw.verify {
            None => Some(VerifyMode::On),
            // YAML 1.1 read `on`/`off` as booleans; people still write `true`/`false`.
            Some(Scalar::Bool(true)) => Some(VerifyMode::On),
            Some(Scalar::Bool(false)) => Some(VerifyMode::Off),
            Some(Scalar::Str(s)) if s == "on" => Some(VerifyMode::On),
            Some(Scalar::Str(s)) if s == "optional" => Some(VerifyMode::Optional),
            Some(Scalar::Str(s)) if s == "optional_no_ca" => Some(VerifyMode::OptionalNoCa),
            Some(Scalar::Str(s)) if s == "off" => Some(VerifyMode::Off),
            Some(other) => {
                self.error(&at("verify"), one_of(VERIFY, other));
                // Unknown intent: skip the checks below that depend on the mode.
                None
            }
        };
        let ca = raw
            .ca
            .as_deref()
            .and_then(|ca| self.file_path(&at("ca"), ca));
        let trusted_ca = self.file_paths(&at("trusted_ca"), raw.trusted_ca);
        let crl = self.file_paths(&at("crl"), raw.crl);
        let on_failure = self.choice(
            &at("on_failure"),
            raw.on_failure.as_ref(),
            &[
                ("http", OnFailure::Http),
                ("handshake", OnFailure::Handshake),
            ],
            OnFailure::Http,
        );
        match verify {
            Some(verify @ (VerifyMode::On | VerifyMode::Optional)) if ca.is_none() && trusted_ca.is_empty() => self.error(
                base,
                format!(
                    "verify: {} needs ca or trusted_ca to check client certificates against (or set verify: off to not ask for one)",
                    verify.as_str()
                ),
            ),
            Some(VerifyMode::Off) if ca.is_some() || !trusted_ca.is_empty() || !crl.is_empty() => {
                self.warning(base, "ca, trusted_ca and crl are ignored with verify: off")
            }
            _ => {}
        }
        ClientAuthConfig {
            verify: verify.unwrap_or(VerifyMode::On),
            ca,
            trusted_ca,
            crl,
            verify_depth: raw.verify_depth.unwrap_or(DEFAULT_VERIFY_DEPTH),
            on_failure,
        }
    }

    fn identity(&mut self, base: &str, raw: raw::RawIdentity) -> IdentityConfig {
        let at = |key: &str| join_key(base, key);
        let presets = match raw.preset {
            None => vec![Preset::Nginx],
            Some(items) => {
                let mut presets = Vec::new();
                for (k, value) in items.0.iter().enumerate() {
                    let Some(preset) = self.pick(
                        &join_index(&at("preset"), k),
                        value,
                        &[
                            ("nginx", Preset::Nginx),
                            ("xfcc", Preset::Xfcc),
                            ("rfc9440", Preset::Rfc9440),
                            ("none", Preset::None),
                        ],
                    ) else {
                        continue;
                    };
                    if !presets.contains(&preset) {
                        presets.push(preset);
                    }
                }
                // `preset: []` asks for no preset headers, like `none`.
                if items.0.is_empty() {
                    presets.push(Preset::None);
                }
                if presets.len() > 1 && presets.contains(&Preset::None) {
                    self.error(&at("preset"), "none cannot be combined with other presets");
                }
                presets
            }
        };
        let set = self.headers(&at("set"), raw.set);
        IdentityConfig { presets, set }
    }

    /// Header name → value pairs (`identity.set`, route `headers`), in file order.
    fn headers(&mut self, base: &str, raw: Option<OrderedMap<Scalar>>) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = Vec::new();
        for (name, value) in raw.map(|m| m.0).unwrap_or_default() {
            let path = join_key(base, &name);
            let lower = name.to_ascii_lowercase();
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                self.error(&path, format!("{name:?} is not a valid header name"));
                continue;
            }
            if UNSETTABLE_HEADERS.contains(&lower.as_str()) {
                self.error(
                    &path,
                    format!(
                        "{name} cannot be set: it describes the connection or the message framing"
                    ),
                );
                continue;
            }
            if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
                self.error(
                    &path,
                    format!("{name} is set twice (header names are case-insensitive)"),
                );
                continue;
            }
            let Some(text) = value.as_text() else {
                self.error(
                    &path,
                    format!("expected a string; found {}", value.describe()),
                );
                continue;
            };
            if text.chars().any(|ch| ch.is_control() && ch != '\t') {
                self.error(
                    &path,
                    "header values cannot contain line breaks or control characters",
                );
                continue;
            }
            headers.push((name, text));
        }
        headers
    }

    fn route(
        &mut self,
        base: &str,
        raw: raw::RawRoute,
        upstreams: &BTreeSet<String>,
        client_auth: &ClientAuthConfig,
        server_base: &str,
    ) -> RouteConfig {
        let at = |key: &str| join_key(base, key);
        let matcher = self.route_match(&at("match"), raw.matcher);

        // With `upstreams:` misspelt (already reported), no name could be checked.
        let upstreams_misspelt = self.damaged.iter().any(|d| d == "upstreams");
        if !upstreams.contains(&raw.upstream) && !upstreams_misspelt {
            let defined = if upstreams.is_empty() {
                "no upstreams are defined".to_string()
            } else {
                format!(
                    "defined: {}",
                    upstreams
                        .iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            self.error(
                &at("upstream"),
                format!("unknown upstream {:?}; {defined}", raw.upstream),
            );
        }

        let allow = match raw.allow {
            None => Vec::new(),
            Some(items) if items.is_empty() => {
                self.error(
                    &at("allow"),
                    "an empty list would allow nobody; remove allow to accept any verified certificate",
                );
                Vec::new()
            }
            Some(items) => {
                if client_auth.verify == VerifyMode::Off {
                    self.error(
                        &at("allow"),
                        format!("allow rules need a client certificate, but {server_base}.client_auth.verify is off"),
                    );
                }
                items
                    .into_iter()
                    .enumerate()
                    .filter_map(|(k, item)| {
                        self.allow_rule(&join_index(&at("allow"), k), item, RuleList::Allow)
                    })
                    .collect()
            }
        };
        let deny = match raw.deny {
            None => Vec::new(),
            Some(items) if items.is_empty() => {
                self.error(
                    &at("deny"),
                    "an empty list denies nobody; remove deny, or write rules",
                );
                Vec::new()
            }
            Some(items) => {
                if client_auth.verify == VerifyMode::Off {
                    self.error(
                        &at("deny"),
                        format!("deny rules need a client certificate, but {server_base}.client_auth.verify is off"),
                    );
                }
                items
                    .into_iter()
                    .enumerate()
                    .filter_map(|(k, item)| {
                        self.allow_rule(&join_index(&at("deny"), k), item, RuleList::Deny)
                    })
                    .collect()
            }
        };

        let headers = self.headers(&at("headers"), raw.headers);

        let max_body_size = match &raw.max_body_size {
            None => Some(DEFAULT_MAX_BODY_SIZE),
            Some(value) => {
                let parsed = match value {
                    Scalar::Int(n) => u64::try_from(*n).map_err(|_| SIZE_SYNTAX.to_string()),
                    Scalar::Str(s) => parse_size(s),
                    _ => Err(SIZE_SYNTAX.to_string()),
                };
                match parsed {
                    // 0 disables the limit, as nginx's `client_max_body_size 0`.
                    Ok(0) => None,
                    Ok(n) => Some(n),
                    Err(message) => {
                        self.error(
                            &at("max_body_size"),
                            format!("{message}; found {}", value.describe()),
                        );
                        Some(DEFAULT_MAX_BODY_SIZE)
                    }
                }
            }
        };

        let defaults = Timeouts::default();
        let raw_timeouts = raw.timeouts.unwrap_or_default();
        let timeouts_base = at("timeouts");
        let timeouts = Timeouts {
            connect: self.duration(
                &join_key(&timeouts_base, "connect"),
                raw_timeouts.connect.as_ref(),
                defaults.connect,
            ),
            read: self.duration(
                &join_key(&timeouts_base, "read"),
                raw_timeouts.read.as_ref(),
                defaults.read,
            ),
            send: self.duration(
                &join_key(&timeouts_base, "send"),
                raw_timeouts.send.as_ref(),
                defaults.send,
            ),
        };

        let signed_urls = raw
            .signed_urls
            .and_then(|raw| self.signed_urls(&at("signed_urls"), raw, client_auth, server_base));
        let upstream_path = raw
            .upstream_path
            .and_then(|path| self.upstream_path(&at("upstream_path"), path, &matcher));

        RouteConfig {
            matcher,
            upstream: raw.upstream,
            require_client_cert: raw.require_client_cert.unwrap_or(false),
            allow,
            deny,
            deny_all: raw.deny_all.unwrap_or(false),
            upstream_path,
            headers,
            max_body_size,
            timeouts,
            signed_urls,
        }
    }

    /// `upstream_path:` of a route: what replaces the matched `path_prefix` or `path`.
    /// nginx refuses a URI part in `proxy_pass` under a regex location, and so does this:
    /// there is no matched prefix to replace.
    fn upstream_path(&mut self, key: &str, path: String, matcher: &RouteMatch) -> Option<String> {
        if matcher.path.is_none() && matcher.path_prefix.is_none() {
            self.error(
                key,
                "replaces the matched path_prefix or path; this route's match has neither",
            );
            return None;
        }
        if matcher.grpc_service.is_some() {
            self.error(
                key,
                "a gRPC method's path is /package.Service/Method on both sides; remove upstream_path or grpc_service",
            );
            return None;
        }
        match certgate_path::normalize(&path, certgate_path::Options::default()) {
            Ok(std::borrow::Cow::Borrowed(_)) => Some(path),
            Ok(std::borrow::Cow::Owned(normal)) => {
                self.error(
                    key,
                    format!("expected a normal path such as {normal:?}; found {path:?}"),
                );
                None
            }
            Err(why) => {
                self.error(
                    key,
                    format!("expected a path starting with / ({why}); found {path:?}"),
                );
                None
            }
        }
    }

    /// `signed_urls:` of a route. Minting needs a verified client certificate, and the
    /// signed request itself arrives without one: the server must ask for certificates
    /// (`verify: on` or `optional`) and let a handshake without one finish
    /// (`on_failure: http`).
    fn signed_urls(
        &mut self,
        base: &str,
        raw: raw::RawSignedUrls,
        client_auth: &ClientAuthConfig,
        server_base: &str,
    ) -> Option<SignedUrlsConfig> {
        let at = |key: &str| join_key(base, key);
        let mut ok = true;
        match client_auth.verify {
            VerifyMode::On | VerifyMode::Optional => {}
            other => {
                self.error(
                    base,
                    format!(
                        "signed URLs are minted for a verified client certificate, but \
                         {server_base}.client_auth.verify is {}; use on or optional",
                        other.as_str()
                    ),
                );
                ok = false;
            }
        }
        if client_auth.on_failure == OnFailure::Handshake {
            self.error(
                base,
                format!(
                    "a signed URL is loaded without a client certificate, which \
                     {server_base}.client_auth.on_failure: handshake refuses during the TLS \
                     handshake; set on_failure: http (requests without a certificate or a \
                     valid signature still get nginx's 400 page)"
                ),
            );
            ok = false;
        }
        let key_files = self.file_paths(&at("key_file"), Some(raw.key_file.clone()));
        if raw.key_file.0.is_empty() {
            self.error(&at("key_file"), "at least one key file is required");
            ok = false;
        }
        for (k, path) in key_files.iter().enumerate() {
            if key_files[..k].contains(path) {
                self.error(
                    &join_index(&at("key_file"), k),
                    format!("{} is listed twice", path.display()),
                );
                ok = false;
            }
        }
        let max_ttl = self.duration(&at("max_ttl"), raw.max_ttl.as_ref(), DEFAULT_SIGNED_URL_TTL);
        if max_ttl > MAX_SIGNED_URL_TTL {
            self.error(
                &at("max_ttl"),
                "must be at most 24h: a signed URL is a bearer token until it expires",
            );
            ok = false;
        }
        if max_ttl.subsec_nanos() != 0 {
            self.error(&at("max_ttl"), "must be a whole number of seconds");
            ok = false;
        }
        let bind = self.choice(
            &at("bind"),
            raw.bind.as_ref(),
            &[
                ("none", SignedUrlBind::None),
                ("client_ip", SignedUrlBind::ClientIp),
            ],
            SignedUrlBind::None,
        );
        ok.then_some(SignedUrlsConfig {
            key_files,
            max_ttl,
            bind,
        })
    }

    fn route_match(&mut self, base: &str, raw: raw::RawMatch) -> RouteMatch {
        let at = |key: &str| join_key(base, key);
        let mut matcher = RouteMatch::default();
        if raw.path.is_none()
            && raw.path_prefix.is_none()
            && raw.path_regex.is_none()
            && raw.grpc_service.is_none()
            && raw.host.is_none()
        {
            self.error(
                base,
                "at least one of path, path_prefix, path_regex, grpc_service, host is required",
            );
        }
        for (key, value, slot) in [
            ("path", raw.path, &mut matcher.path),
            ("path_prefix", raw.path_prefix, &mut matcher.path_prefix),
        ] {
            if let Some(value) = value {
                if value.starts_with('/') {
                    *slot = Some(value);
                } else {
                    self.error(&at(key), format!("must start with /; found {value:?}"));
                }
            }
        }
        if let Some(pattern) = raw.path_regex {
            match regex::Regex::new(&pattern) {
                Ok(_) => matcher.path_regex = Some(pattern),
                Err(e) => self.error(
                    &at("path_regex"),
                    format!("invalid regular expression: {}", regex_error(&e)),
                ),
            }
        }
        if let Some(service) = raw.grpc_service {
            let valid = !service.is_empty()
                && service.split('.').all(|part| {
                    !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                });
            if valid {
                matcher.grpc_service = Some(service);
            } else {
                self.error(
                    &at("grpc_service"),
                    format!("expected a gRPC service name like package.Service (no slashes); found {service:?}"),
                );
            }
        }
        if let Some(host) = raw.host {
            matcher.host = self.host_name(&at("host"), &host, true);
        }
        matcher
    }

    /// One item of `allow` or `deny`: exactly one rule, its values checked and normalised
    /// to the form the certificate's value is compared in.
    fn allow_rule(
        &mut self,
        path: &str,
        item: OrderedMap<OneOrMany<Scalar>>,
        list: RuleList,
    ) -> Option<AllowRule> {
        let mut entries = item.0;
        if entries.len() != 1 {
            let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
            let message = if keys.is_empty() {
                format!(
                    "expected one rule such as cn: [name]; rules are {}",
                    ALLOW_RULES.join(", ")
                )
            } else {
                format!(
                    "each item holds exactly one rule, found {}; write one item per rule (any rule that matches {})",
                    keys.join(", "),
                    list.verb()
                )
            };
            self.error(path, message);
            return None;
        }
        let (rule, raw_values) = entries.pop()?;
        let path = join_key(path, &rule);
        if rule == "verified" {
            if list == RuleList::Deny {
                self.error(
                    &path,
                    "deny cannot refuse every verified certificate; use deny_all: true to close the route",
                );
                return None;
            }
            return match raw_values.0.as_slice() {
                [Scalar::Bool(true)] => Some(AllowRule::Verified),
                [other] => {
                    self.error(
                        &path,
                        format!(
                            "expected true (any verified certificate); found {}",
                            other.describe()
                        ),
                    );
                    None
                }
                _ => {
                    self.error(&path, "expected true (any verified certificate)");
                    None
                }
            };
        }
        let mut values = Vec::new();
        for (k, value) in raw_values.0.iter().enumerate() {
            match value {
                Scalar::Str(s) => values.push(s.clone()),
                other => {
                    self.error(
                        &join_index(&path, k),
                        format!("expected a string; found {}", other.describe()),
                    );
                    return None;
                }
            }
        }
        if values.is_empty() {
            self.error(&path, "at least one value is required");
            return None;
        }
        if let Some(k) = values.iter().position(|v| v.trim().is_empty()) {
            self.error(&join_index(&path, k), "must not be empty");
            return None;
        }
        Some(match rule.as_str() {
            "cn" => AllowRule::Cn(values),
            "ou" => AllowRule::Ou(values),
            "subject" | "issuer" => {
                if values.len() != 1 {
                    self.error(&path, format!("expected one {rule} DN such as \"CN=my-client,O=Example\"; use one item per {rule}"));
                    return None;
                }
                let dn = values.into_iter().next()?;
                if rule == "subject" {
                    AllowRule::Subject(dn)
                } else {
                    AllowRule::Issuer(dn)
                }
            }
            "subject_regex" | "issuer_regex" => {
                let mut ok = true;
                for (k, pattern) in values.iter().enumerate() {
                    if let Err(e) = regex::Regex::new(pattern) {
                        self.error(
                            &join_index(&path, k),
                            format!("invalid regular expression: {}", regex_error(&e)),
                        );
                        ok = false;
                    }
                }
                if !ok {
                    return None;
                }
                if rule == "subject_regex" {
                    AllowRule::SubjectRegex(values)
                } else {
                    AllowRule::IssuerRegex(values)
                }
            }
            "san_uri" => AllowRule::SanUri(values),
            "san_dns" => {
                AllowRule::SanDns(values.into_iter().map(|v| v.to_ascii_lowercase()).collect())
            }
            "fingerprint_sha256" | "spki_sha256" | "fingerprint_sha1" => {
                let (digits, what) = if rule == "fingerprint_sha1" {
                    (40, "a SHA-1 digest: 40 hex digits")
                } else {
                    (64, "a SHA-256 digest: 64 hex digits")
                };
                let mut digests = Vec::new();
                for (k, value) in values.iter().enumerate() {
                    let digest: String = value
                        .chars()
                        .filter(|c| *c != ':')
                        .collect::<String>()
                        .to_ascii_lowercase();
                    if digest.len() == digits && digest.bytes().all(|b| b.is_ascii_hexdigit()) {
                        digests.push(digest);
                    } else {
                        self.error(
                            &join_index(&path, k),
                            format!("expected {what}, colons allowed; found {value:?}"),
                        );
                    }
                }
                match rule.as_str() {
                    "fingerprint_sha256" => AllowRule::FingerprintSha256(digests),
                    "spki_sha256" => AllowRule::SpkiSha256(digests),
                    _ => AllowRule::FingerprintSha1(digests),
                }
            }
            "serial" => {
                let mut serials = Vec::new();
                for (k, value) in values.iter().enumerate() {
                    match normalize_serial(value) {
                        Some(serial) => serials.push(serial),
                        None => self.error(
                            &join_index(&path, k),
                            format!("expected a serial number as $ssl_client_serial prints it: hex digits in pairs such as 0A1B (colons allowed, - before a negative one); found {value:?}"),
                        ),
                    }
                }
                AllowRule::Serial(serials)
            }
            other => {
                let mut message =
                    format!("unknown rule; expected one of {}", ALLOW_RULES.join(", "));
                if let Some(suggestion) = did_you_mean(other, ALLOW_RULES) {
                    message.push_str(&format!(" (did you mean {suggestion}?)"));
                }
                self.error(&path, message);
                return None;
            }
        })
    }

    fn duration(&mut self, path: &str, value: Option<&Scalar>, default: Duration) -> Duration {
        let Some(value) = value else { return default };
        let parsed = match value {
            // A bare number is seconds, as in nginx.
            Scalar::Int(n) => u64::try_from(*n)
                .map(Duration::from_secs)
                .map_err(|_| TIME_SYNTAX.to_string()),
            Scalar::Str(s) => parse_duration(s),
            _ => Err(TIME_SYNTAX.to_string()),
        };
        match parsed {
            Ok(d) if d.is_zero() => {
                self.error(path, "must be greater than 0");
                default
            }
            Ok(d) => d,
            Err(message) => {
                self.error(path, format!("{message}; found {}", value.describe()));
                default
            }
        }
    }

    fn upstream(&mut self, name: &str, value: &Value) -> Option<UpstreamConfig> {
        let base = join_key("upstreams", name);
        let at = |key: &str| join_key(&base, key);
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        {
            self.error(
                &base,
                format!("upstream names may use letters, digits, _, - and .; found {name:?}"),
            );
        }
        let raw = self.section::<raw::RawUpstream>(value, &base)?;

        let mut servers: Vec<UpstreamServer> = Vec::new();
        if raw.servers.0.is_empty() {
            self.error(&at("servers"), "at least one server is required");
        }
        for (k, text) in raw.servers.0.iter().enumerate() {
            let path = join_index(&at("servers"), k);
            match parse_upstream_server(text) {
                Ok(server) if servers.iter().any(|s| s.address == server.address) => self.error(
                    &path,
                    format!(
                        "{} is listed twice; use weight=N to send it more traffic",
                        server.address
                    ),
                ),
                Ok(server) => servers.push(server),
                Err(message) => self.error(&path, message),
            }
        }

        let protocol = self.choice(
            &at("protocol"),
            raw.protocol.as_ref(),
            &[
                ("http", UpstreamProtocol::Http),
                ("https", UpstreamProtocol::Https),
                ("h2c", UpstreamProtocol::H2c),
                ("grpc", UpstreamProtocol::Grpc),
                ("grpcs", UpstreamProtocol::Grpcs),
            ],
            UpstreamProtocol::Http,
        );
        let lb = self.choice(
            &at("lb"),
            raw.lb.as_ref(),
            &[
                ("round_robin", LbPolicy::RoundRobin),
                ("random", LbPolicy::Random),
                ("consistent_hash", LbPolicy::ConsistentHash),
            ],
            LbPolicy::RoundRobin,
        );
        let health_check = raw
            .health_check
            .and_then(|hc| self.health_check(&at("health_check"), hc));

        let tls = match (raw.tls, protocol.is_tls()) {
            (Some(_), false) => {
                let name = match protocol {
                    UpstreamProtocol::H2c => "h2c",
                    UpstreamProtocol::Grpc => "grpc",
                    _ => "http",
                };
                self.error(
                    &at("tls"),
                    format!(
                        "tls is only used with protocol https or grpcs (this upstream is {name})"
                    ),
                );
                None
            }
            (None, false) => None,
            (None, true) => Some(UpstreamTls::default()),
            (Some(tls), true) => Some(self.upstream_tls(&at("tls"), tls)),
        };

        Some(UpstreamConfig {
            servers,
            protocol,
            lb,
            health_check,
            keepalive: raw.keepalive.unwrap_or(DEFAULT_KEEPALIVE),
            tls,
        })
    }

    fn health_check(&mut self, base: &str, raw: raw::RawHealthCheck) -> Option<HealthCheck> {
        let at = |key: &str| join_key(base, key);
        let interval = self.duration(
            &at("interval"),
            raw.interval.as_ref(),
            DEFAULT_HEALTH_CHECK_INTERVAL,
        );
        match &raw.kind {
            Scalar::Str(s) if s == "tcp" => {
                if raw.path.is_some() {
                    self.error(&at("path"), "path is only used with type: http");
                }
                Some(HealthCheck::Tcp { interval })
            }
            Scalar::Str(s) if s == "http" => {
                let path = raw.path.unwrap_or_else(|| "/".to_string());
                if !path.starts_with('/') {
                    self.error(&at("path"), format!("must start with /; found {path:?}"));
                }
                Some(HealthCheck::Http { path, interval })
            }
            other => {
                self.error(&at("type"), one_of(&["tcp", "http"], other));
                None
            }
        }
    }

    fn upstream_tls(&mut self, base: &str, raw: raw::RawUpstreamTls) -> UpstreamTls {
        let at = |key: &str| join_key(base, key);
        let sni = raw
            .sni
            .and_then(|sni| self.host_name(&at("sni"), &sni, false));
        let trusted_ca = raw
            .trusted_ca
            .and_then(|p| self.file_path(&at("trusted_ca"), &p));
        let cert = raw.cert.and_then(|p| self.file_path(&at("cert"), &p));
        let key = raw.key.and_then(|p| self.file_path(&at("key"), &p));
        match (&cert, &key) {
            (Some(_), None) => self.error(&at("key"), "missing: cert is set, so key is required"),
            (None, Some(_)) => self.error(&at("cert"), "missing: key is set, so cert is required"),
            _ => {}
        }
        let verify = raw.verify.unwrap_or(true);
        if !verify && trusted_ca.is_some() {
            self.warning(&at("trusted_ca"), "ignored with verify: false");
        }
        UpstreamTls {
            sni,
            verify,
            trusted_ca,
            verify_depth: raw.verify_depth.unwrap_or(DEFAULT_VERIFY_DEPTH),
            cert,
            key,
        }
    }

    /// Cross-server checks: unique names; per listen address at most one default server
    /// and each server name claimed by one server (else SNI could not pick one).
    fn check_listeners(&mut self, servers: &[(usize, ServerConfig)]) {
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (i, server) in servers {
            if let Some(first) = names.get(server.name.as_str()) {
                self.error(
                    &join_key(&join_index("servers", *i), "name"),
                    format!(
                        "duplicate server name {:?} (also servers[{first}])",
                        server.name
                    ),
                );
            } else {
                names.insert(&server.name, *i);
            }
        }

        let mut default_server: HashMap<SocketAddr, usize> = HashMap::new();
        let mut claimed: HashMap<(SocketAddr, &str), usize> = HashMap::new();
        for (i, server) in servers {
            let base = join_index("servers", *i);
            let describe = |j: usize| -> String {
                let name = servers
                    .iter()
                    .find(|(k, _)| *k == j)
                    .map(|(_, s)| s.name.as_str())
                    .unwrap_or("");
                format!("servers[{j}] ({name})")
            };
            for (k, addr) in server.listen.iter().enumerate() {
                if server.server_names.is_empty() {
                    if let Some(first) = default_server.get(addr) {
                        self.error(
                            &join_index(&join_key(&base, "listen"), k),
                            format!(
                                "{addr} already has a default server, {}; give one of them server_names",
                                describe(*first)
                            ),
                        );
                    } else {
                        default_server.insert(*addr, *i);
                    }
                }
                for (n, name) in server.server_names.iter().enumerate() {
                    if let Some(first) = claimed.get(&(*addr, name.as_str())) {
                        self.error(
                            &join_index(&join_key(&base, "server_names"), n),
                            format!(
                                "{name:?} on {addr} is already served by {}",
                                describe(*first)
                            ),
                        );
                    } else {
                        claimed.insert((*addr, name), *i);
                    }
                }
            }
        }
    }
}

/// Which list a rule is written in: `verified` only makes sense in `allow`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum RuleList {
    Allow,
    Deny,
}

impl RuleList {
    fn verb(self) -> &'static str {
        match self {
            RuleList::Allow => "allows",
            RuleList::Deny => "denies",
        }
    }
}

/// `0a:1b` / `0A1B` / `-01` → the form `$ssl_client_serial` prints (`i2a_ASN1_INTEGER`:
/// upper-case hex in whole octets). `None` for anything that form can never be.
pub(crate) fn normalize_serial(text: &str) -> Option<String> {
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let digits: String = digits
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_uppercase();
    let valid = !digits.is_empty()
        && digits.len().is_multiple_of(2)
        && digits.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| format!("{sign}{digits}"))
}

fn one_of(choices: &[&str], found: &Scalar) -> String {
    let mut message = format!(
        "expected one of {}; found {}",
        choices.join(", "),
        found.describe()
    );
    if let Scalar::Str(s) = found {
        if let Some(suggestion) = did_you_mean(s, choices) {
            message.push_str(&format!(" (did you mean {suggestion}?)"));
        }
    }
    message
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The regex crate's syntax errors span several lines (pattern, caret, message);
/// keep the message so each configuration error stays on one line.
fn regex_error(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.lines().map(str::trim).collect::<Vec<_>>().join(" "))
}

/// `host:port` optionally followed by `weight=N`, as nginx's upstream `server` line.
fn parse_upstream_server(text: &str) -> Result<UpstreamServer, String> {
    let syntax = || format!("expected host:port, optionally followed by weight=N; found {text:?}");
    let mut tokens = text.split_whitespace();
    let address = tokens.next().ok_or_else(syntax)?;
    let port = if let Some(rest) = address.strip_prefix('[') {
        let (ip, port) = rest.split_once("]:").ok_or_else(syntax)?;
        ip.parse::<std::net::Ipv6Addr>().map_err(|_| syntax())?;
        port
    } else {
        let (host, port) = address.rsplit_once(':').ok_or_else(syntax)?;
        if host.contains(':') {
            return Err(format!(
                "IPv6 addresses need brackets, as [::1]:5000; found {text:?}"
            ));
        }
        let valid_host = !host.is_empty()
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid_host {
            return Err(syntax());
        }
        port
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => {
            return Err(format!(
                "port must be a number from 1 to 65535; found {text:?}"
            ))
        }
    }
    let mut weight = 1;
    for token in tokens {
        match token.strip_prefix("weight=") {
            Some(n) => match n.parse::<u32>() {
                Ok(n) if n >= 1 => weight = n,
                _ => {
                    return Err(format!(
                        "weight must be an integer from 1 to {}; found {token:?}",
                        u32::MAX
                    ))
                }
            },
            None => {
                return Err(format!(
                    "unknown server parameter {token:?}; only weight=N is supported"
                ))
            }
        }
    }
    Ok(UpstreamServer {
        address: address.to_string(),
        weight,
    })
}
