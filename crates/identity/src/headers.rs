//! Identity headers: presets (`nginx`, `xfcc`, `rfc9440`, `none`) and `set`
//! templates compiled once per configuration into a [`HeaderPlan`], prepared
//! once per TLS connection into [`PreparedHeaders`], and the anti-spoofing rule
//! that decides which client-sent headers never reach the upstream.

use http::{HeaderName, HeaderValue};

use crate::template::Template;
use crate::vars::{Identity, Variable};
use crate::IdentityError;

/// A named set of identity headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// The headers nginx set-ups conventionally pass with `proxy_set_header`:
    /// `X-SSL-Client-Verify`, `-S-DN`, `-I-DN`, `-Serial`, `-Fingerprint`,
    /// `-V-Start`, `-V-End` and `X-SSL-Client-Cert` (URL-escaped PEM).
    Nginx,
    /// Envoy's `X-Forwarded-Client-Cert`.
    Xfcc,
    /// RFC 9440 `Client-Cert` and `Client-Cert-Chain`.
    Rfc9440,
    /// No identity headers.
    None,
}

impl Preset {
    /// The headers the preset sets (lowercase names) and their variables.
    fn headers(self) -> &'static [(&'static str, Variable)] {
        match self {
            Preset::Nginx => &[
                ("x-ssl-client-verify", Variable::SslClientVerify),
                ("x-ssl-client-s-dn", Variable::SslClientSDn),
                ("x-ssl-client-i-dn", Variable::SslClientIDn),
                ("x-ssl-client-serial", Variable::SslClientSerial),
                ("x-ssl-client-fingerprint", Variable::SslClientFingerprint),
                ("x-ssl-client-v-start", Variable::SslClientVStart),
                ("x-ssl-client-v-end", Variable::SslClientVEnd),
                ("x-ssl-client-cert", Variable::SslClientEscapedCert),
            ],
            Preset::Xfcc => &[("x-forwarded-client-cert", Variable::SslClientXfcc)],
            Preset::Rfc9440 => &[
                ("client-cert", Variable::SslClientCertRfc9440),
                ("client-cert-chain", Variable::SslClientCertChainRfc9440),
            ],
            Preset::None => &[],
        }
    }
}

/// Headers a template may not set: they frame the message or manage the
/// connection, so a value derived from a client certificate must never reach them.
const FORBIDDEN: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// The identity headers of one server, compiled from its configuration.
#[derive(Debug, Clone, Default)]
pub struct HeaderPlan {
    entries: Vec<(HeaderName, Template)>,
}

impl HeaderPlan {
    /// Compiles presets (in order, a header set by two presets only once) and
    /// `set` templates. A `set` entry replaces a preset header of the same name
    /// (names are case-insensitive) and entries are added in the order given; a
    /// later `set` entry for the same name replaces an earlier one.
    ///
    /// Fails on an invalid header name, a framing/connection header
    /// (`Content-Length`, `Transfer-Encoding`, `Connection`, …), or a template
    /// error; the error names the header.
    pub fn new(presets: &[Preset], set: &[(String, String)]) -> Result<HeaderPlan, IdentityError> {
        let mut entries: Vec<(HeaderName, Template)> = Vec::new();
        for preset in presets {
            for &(name, variable) in preset.headers() {
                let name = HeaderName::from_static(name);
                if !entries.iter().any(|(n, _)| *n == name) {
                    entries.push((name, Template::variable(variable)));
                }
            }
        }
        for (name, value) in set {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| IdentityError::InvalidHeaderName(name.clone()))?;
            if FORBIDDEN.contains(&header.as_str()) {
                return Err(IdentityError::ForbiddenHeader(name.clone()));
            }
            let template = Template::parse(value).map_err(|e| IdentityError::Header {
                header: name.clone(),
                source: Box::new(e),
            })?;
            entries.retain(|(n, _)| *n != header);
            entries.push((header, template));
        }
        Ok(HeaderPlan { entries })
    }

    /// The headers and templates, in the order they are sent.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &Template)> {
        self.entries.iter().map(|(n, t)| (n, t))
    }

    /// Renders every header for one connection. Called once per TLS connection;
    /// requests only copy the result. A header whose value is empty is left out,
    /// as nginx leaves out a `proxy_set_header` with an empty value; so is one
    /// whose value cannot be a header value (a control character in a raw
    /// subject attribute, say): dropping it is safer than mangling it.
    pub fn prepare(&self, id: &Identity, now_unix: i64) -> PreparedHeaders {
        let mut headers = Vec::with_capacity(self.entries.len());
        for (name, template) in &self.entries {
            let value = template.render(id, now_unix);
            if value.is_empty() {
                continue;
            }
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.push((name.clone(), value));
            }
        }
        PreparedHeaders { headers }
    }

    /// Whether a header arriving from a client is identity-shaped and must be
    /// removed before forwarding, whatever the configuration: every
    /// `X-SSL-Client-*`, `X-Forwarded-Client-Cert`, `Client-Cert` and
    /// `Client-Cert-Chain` (ASCII case-insensitive).
    pub fn is_stripped(name: &str) -> bool {
        const PREFIX: &str = "x-ssl-client-";
        name.get(..PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
            || [
                "x-forwarded-client-cert",
                "client-cert",
                "client-cert-chain",
            ]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(name))
    }

    /// Every header name this plan sets (presets and `set`), whether or not a
    /// given connection gives it a value: client-sent copies of all of them are
    /// removed, so an empty value never lets a forged one through.
    pub fn stripped_names(&self) -> impl Iterator<Item = &HeaderName> {
        self.entries.iter().map(|(n, _)| n)
    }
}

/// The identity headers of one connection, ready to copy into every request.
#[derive(Debug, Clone, Default)]
pub struct PreparedHeaders {
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl PreparedHeaders {
    /// The prepared value of one header, if it is set.
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.headers
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}
