//! Route selection (`match:` blocks, first match wins, in file order) and per-route
//! authorization (`allow:` rules evaluated against the connection's verified certificate).

use certgate_config::AllowRule;
use certgate_identity::ClientCert;
use regex::Regex;

/// All given conditions must hold; absent conditions match anything.
pub struct RouteMatcher {
    pub path: Option<String>,
    pub path_prefix: Option<String>,
    pub path_regex: Option<Regex>,
    /// Stored as `/package.Service/`, the gRPC path prefix.
    pub grpc_service: Option<String>,
    /// Lower-cased.
    pub host: Option<String>,
}

impl RouteMatcher {
    /// `host` is the request's Host (or :authority) without port, lower-cased.
    pub fn matches(&self, path: &str, host: &str) -> bool {
        self.path.as_deref().is_none_or(|p| p == path)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p))
            && self.path_regex.as_ref().is_none_or(|r| r.is_match(path))
            && self
                .grpc_service
                .as_deref()
                .is_none_or(|s| path.starts_with(s))
            && self.host.as_deref().is_none_or(|h| h == host)
    }
}

/// `upstream_path:` — the matched `path_prefix` (or whole `path`) replaced in the path sent
/// upstream, nginx's `proxy_pass http://up/v2/;`.
pub struct UpstreamPath {
    /// What the route matched: its `path_prefix`, or its exact `path`.
    pub matched: String,
    pub replacement: String,
}

impl UpstreamPath {
    /// The upstream path for `path` (normalized, and matched by this route). Replaced
    /// literally, as nginx does, then with `//` merged. `None` when the junction would
    /// make a dot segment — the off-by-slash case, `path_prefix: /api` with
    /// `upstream_path: /v2/` and a request for `/api..` — which would climb out of the
    /// replacement at the backend: the request is refused instead.
    pub fn apply(&self, path: &str) -> Option<String> {
        let rest = path.strip_prefix(self.matched.as_str())?;
        let mut joined = String::with_capacity(self.replacement.len() + rest.len());
        joined.push_str(&self.replacement);
        joined.push_str(rest);
        if joined.split('/').any(|s| s == "." || s == "..") {
            return None;
        }
        let keep = certgate_path::Options {
            encoded_slashes: certgate_path::EncodedSlashes::Keep,
        };
        match certgate_path::normalize(&joined, keep).ok()? {
            std::borrow::Cow::Borrowed(_) => Some(joined),
            std::borrow::Cow::Owned(merged) => Some(merged),
        }
    }
}

/// A route's authorization: `allow:` (any rule that matches allows), `deny:` (any rule
/// that matches refuses) and `deny_all:`. Empty (no rules, not `deny_all`) lets any
/// request that passed `client_auth` through; otherwise only a verified certificate that
/// an allow rule (if any) and no deny rule matches gets in, and nothing under `deny_all`.
pub struct AllowList {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    deny_all: bool,
}

/// A rule ready to evaluate: regular expressions compiled once, at load.
enum Rule {
    Plain(AllowRule),
    SubjectRegex(Vec<Regex>),
    IssuerRegex(Vec<Regex>),
}

impl AllowList {
    /// Compiles the rules' regular expressions (the configuration crate checked that they
    /// compile; an error here names the pattern).
    pub fn new(
        allow: Vec<AllowRule>,
        deny: Vec<AllowRule>,
        deny_all: bool,
    ) -> Result<Self, String> {
        let compile = |rules: Vec<AllowRule>| -> Result<Vec<Rule>, String> {
            rules.into_iter().map(Rule::new).collect()
        };
        Ok(AllowList {
            allow: compile(allow)?,
            deny: compile(deny)?,
            deny_all,
        })
    }

    /// True when the route authorizes nothing beyond `client_auth`: the caller then need
    /// not hold a verified certificate. Any rule, or `deny_all`, makes it false.
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty() && !self.deny_all
    }

    /// Whether `cert` (which the caller has checked is verified) may use the route.
    pub fn allows(&self, cert: &ClientCert) -> bool {
        !self.deny_all
            && (self.allow.is_empty() || self.allow.iter().any(|rule| rule.matches(cert)))
            && !self.deny.iter().any(|rule| rule.matches(cert))
    }
}

impl Rule {
    fn new(rule: AllowRule) -> Result<Rule, String> {
        let compile = |patterns: &[String]| -> Result<Vec<Regex>, String> {
            patterns
                .iter()
                .map(|p| Regex::new(p).map_err(|e| format!("{p:?}: {e}")))
                .collect()
        };
        Ok(match &rule {
            AllowRule::SubjectRegex(p) => Rule::SubjectRegex(compile(p)?),
            AllowRule::IssuerRegex(p) => Rule::IssuerRegex(compile(p)?),
            _ => Rule::Plain(rule),
        })
    }

    fn matches(&self, cert: &ClientCert) -> bool {
        match self {
            // Unanchored search in the RFC 2253 string, as nginx's `~` (PCRE) does in
            // `$ssl_client_s_dn` / `$ssl_client_i_dn`.
            Rule::SubjectRegex(res) => res.iter().any(|r| r.is_match(cert.subject_dn())),
            Rule::IssuerRegex(res) => res.iter().any(|r| r.is_match(cert.issuer_dn())),
            Rule::Plain(rule) => rule_matches(rule, cert),
        }
    }
}

fn rule_matches(rule: &AllowRule, cert: &ClientCert) -> bool {
    match rule {
        AllowRule::Cn(names) => any_value(cert, "CN", names),
        AllowRule::Ou(names) => any_value(cert, "OU", names),
        AllowRule::Subject(dn) => cert.subject_dn() == dn,
        AllowRule::Issuer(dn) => cert.issuer_dn() == dn,
        AllowRule::SanUri(patterns) => cert
            .san_uri()
            .iter()
            .any(|uri| patterns.iter().any(|p| glob_match(p, uri))),
        AllowRule::SanDns(patterns) => cert.san_dns().iter().any(|dns| {
            patterns
                .iter()
                .any(|p| glob_match(&p.to_ascii_lowercase(), &dns.to_ascii_lowercase()))
        }),
        AllowRule::FingerprintSha256(prints) => {
            prints.iter().any(|p| p == cert.fingerprint_sha256_hex())
        }
        AllowRule::SpkiSha256(prints) => prints.iter().any(|p| p == cert.spki_sha256_hex()),
        AllowRule::FingerprintSha1(prints) => {
            prints.iter().any(|p| p == cert.fingerprint_sha1_hex())
        }
        AllowRule::Serial(serials) => serials.iter().any(|s| s == cert.serial()),
        // The caller only asks about verified certificates.
        AllowRule::Verified => true,
        // Compiled into `Rule::SubjectRegex` / `Rule::IssuerRegex` by `Rule::new`; a
        // pattern that did not compile there refuses rather than allows.
        AllowRule::SubjectRegex(_) | AllowRule::IssuerRegex(_) => false,
    }
}

fn any_value(cert: &ClientCert, attribute: &str, wanted: &[String]) -> bool {
    cert.subject_values(attribute)
        .iter()
        .any(|v| wanted.iter().any(|w| w == v))
}

/// `*` matches any run of characters (including `/` and `.`), everything else literally:
/// `spiffe://example.org/ns/prod/*`, `*.svc.example.org`.
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = value.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    if parts.is_empty() {
        return rest.is_empty();
    }
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 {
            return rest.ends_with(part);
        }
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        assert!(glob_match(
            "spiffe://example.org/ns/prod/*",
            "spiffe://example.org/ns/prod/sa/web"
        ));
        assert!(!glob_match(
            "spiffe://example.org/ns/prod/*",
            "spiffe://example.org/ns/dev/sa/web"
        ));
        assert!(glob_match("*.svc.example.org", "api.svc.example.org"));
        assert!(!glob_match("*.svc.example.org", "svc.example.org"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(glob_match("a*b*c", "a-x-b-y-c"));
        assert!(!glob_match("a*b*c", "a-x-c-y-b"));
    }

    #[test]
    fn matcher_requires_every_condition() {
        let m = RouteMatcher {
            path: None,
            path_prefix: Some("/api/".into()),
            path_regex: None,
            grpc_service: None,
            host: Some("api.example.org".into()),
        };
        assert!(m.matches("/api/users", "api.example.org"));
        assert!(!m.matches("/api/users", "other.example.org"));
        assert!(!m.matches("/web", "api.example.org"));
        let g = RouteMatcher {
            path: None,
            path_prefix: None,
            path_regex: None,
            grpc_service: Some("/helloworld.Greeter/".into()),
            host: None,
        };
        assert!(g.matches("/helloworld.Greeter/SayHello", "x"));
        assert!(!g.matches("/helloworld.GreeterX/SayHello", "x"));
    }

    fn rewrite(matched: &str, replacement: &str, path: &str) -> Option<String> {
        UpstreamPath {
            matched: matched.into(),
            replacement: replacement.into(),
        }
        .apply(path)
    }

    #[test]
    fn upstream_path_replaces_the_matched_prefix_as_nginx_does() {
        assert_eq!(rewrite("/api/", "/", "/api/x/y").as_deref(), Some("/x/y"));
        assert_eq!(rewrite("/api/", "/", "/api/").as_deref(), Some("/"));
        assert_eq!(rewrite("/api/", "/v2/", "/api/x").as_deref(), Some("/v2/x"));
        assert_eq!(rewrite("/api", "/v2", "/api/x").as_deref(), Some("/v2/x"));
        assert_eq!(rewrite("/api", "/v2", "/apix").as_deref(), Some("/v2x"));
        // `//` at the junction is merged.
        assert_eq!(rewrite("/api", "/", "/api/x").as_deref(), Some("/x"));
        assert_eq!(rewrite("/api", "/v2/", "/api/x").as_deref(), Some("/v2/x"));
        // Exact paths are replaced whole.
        assert_eq!(
            rewrite("/login", "/auth/login", "/login").as_deref(),
            Some("/auth/login")
        );
        // The off-by-slash traversal is refused, not forwarded.
        assert_eq!(rewrite("/api", "/v2/", "/api.."), None);
        assert_eq!(rewrite("/api", "/v2/", "/api../secret"), None);
        assert_eq!(rewrite("/static", "/files/", "/static./x"), None);
        assert_eq!(rewrite("/api/", "/", "/other"), None);
    }
}
