//! Signed, expiring URLs (`routes[].signed_urls`): the minting endpoint a client calls over
//! mTLS (`POST /.certgate/sign?path=…&ttl=…`), and the check of a signed request that
//! arrives without a certificate (a `<video>` element in a renderer that cannot present it).
//!
//! A signed URL is the path plus five query parameters, all covered by one HMAC-SHA256:
//! - `cg_exp`: expiry, unix seconds;
//! - `cg_kid`: the id of the key that signed it (rotation: any listed key verifies);
//! - `cg_pfx`: present when a path prefix was signed rather than one path;
//! - `cg_id`: the minting client certificate (leaf DER, base64url), so the backend receives
//!   the same identity headers an mTLS request with that certificate gets;
//! - `cg_sig`: the tag, base64url.
//!
//! The tag covers a length-prefixed message: a version string, the server's name, the scope
//! (path or prefix) and its value, the expiry, the minting client's IP when the route says
//! `bind: client_ip`, and the certificate. Stateless: any replica given the same key files
//! verifies any other's URLs. The parameters are removed before the request is forwarded,
//! and the access log shows them redacted.
//!
//! Decisions (docs/design.md, docs/signed-urls.md): a signed request must name a route with
//! `signed_urls` whose keys verify it and whose `allow` rules accept the certificate in it;
//! a request whose connection presented a certificate that failed verification is refused
//! with nginx's 400 whatever its URL carries; when signature parameters are present they are
//! checked (403 if invalid) and the signature's identity is the request's, so a URL behaves
//! the same on any connection.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use bytes::Bytes;
use certgate_identity::ClientCert;
use certgate_pki::UrlKeys;
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Response, StatusCode, Uri};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::body::ResponseBody;
use crate::compile::{CompiledRoute, CompiledServer};
use crate::tls::ConnectionIdentity;

/// The minting endpoint, on every server with at least one `signed_urls` route.
pub const MINT_PATH: &str = "/.certgate/sign";

/// Bumped if the signed message ever changes shape: old URLs then fail instead of meaning
/// something else.
const VERSION: &[u8] = b"certgate signed url v1";

/// A URL minted by a replica whose clock runs a little ahead is still accepted.
const CLOCK_SKEW_SECS: u64 = 60;

const EXP: &str = "cg_exp";
const KID: &str = "cg_kid";
const PFX: &str = "cg_pfx";
const ID: &str = "cg_id";
const SIG: &str = "cg_sig";
const NAMES: [&str; 5] = [EXP, KID, PFX, ID, SIG];

/// A route's `signed_urls`, with its keys loaded.
pub struct SignedRoute {
    pub keys: Arc<UrlKeys>,
    /// Seconds.
    pub max_ttl: u64,
    pub bind_client_ip: bool,
}

/// Why a signed request was refused: the `result` label of
/// `certgate_signed_url_requests_total` and the reason in the access log. Every one is a
/// 403; nothing is forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A parameter is missing, repeated or not in its format.
    Malformed,
    Expired,
    /// Expires further ahead than the route's current `max_ttl` allows (it was lowered).
    OverMaxTtl,
    /// `cg_kid` names no key of the route (removed after rotation, or another server's).
    UnknownKey,
    /// The tag does not match: altered path, expiry, identity, prefix, other key, or (with
    /// `bind: client_ip`) another client address.
    BadSignature,
    /// The path is not under the signed prefix, or has dot segments or encoded slashes.
    OutsidePrefix,
    /// The route's `allow` rules refuse the certificate in the URL, or it has expired.
    NotAllowed,
    /// Not `GET` or `HEAD`: a signed URL fetches; it never writes.
    Method,
    /// The route has no `signed_urls`.
    NotSignedRoute,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Malformed => "malformed",
            Failure::Expired => "expired",
            Failure::OverMaxTtl => "over_max_ttl",
            Failure::UnknownKey => "unknown_key",
            Failure::BadSignature => "bad_signature",
            Failure::OutsidePrefix => "outside_prefix",
            Failure::NotAllowed => "not_allowed",
            Failure::Method => "method",
            Failure::NotSignedRoute => "not_signed_route",
        }
    }
}

/// Whether the request carries a signature at all: the only cost a request without one
/// pays on a server with signed routes.
pub fn has_signature(head: &Parts) -> bool {
    head.uri
        .query()
        .is_some_and(|q| q.starts_with("cg_sig=") || q.contains("&cg_sig="))
}

/// The signature parameters of a query, each at most once.
#[derive(Default)]
struct Params<'a> {
    exp: Option<&'a str>,
    kid: Option<&'a str>,
    pfx: Option<&'a str>,
    id: Option<&'a str>,
    sig: Option<&'a str>,
}

fn params(query: &str) -> Result<Params<'_>, Failure> {
    let mut p = Params::default();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            EXP => &mut p.exp,
            KID => &mut p.kid,
            PFX => &mut p.pfx,
            ID => &mut p.id,
            SIG => &mut p.sig,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(Failure::Malformed);
        }
    }
    Ok(p)
}

/// What the tag covers, each field length-prefixed so no two messages read alike.
fn message(
    server: &str,
    prefix: bool,
    target: &str,
    expires: u64,
    bound_ip: Option<IpAddr>,
    leaf_der: &[u8],
) -> Vec<u8> {
    let ip = bound_ip.map(|ip| ip.to_string()).unwrap_or_default();
    let expires = expires.to_string();
    let scope: &[u8] = if prefix { b"prefix" } else { b"path" };
    let fields: [&[u8]; 7] = [
        VERSION,
        server.as_bytes(),
        scope,
        target.as_bytes(),
        expires.as_bytes(),
        ip.as_bytes(),
        leaf_der,
    ];
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 4).sum());
    for field in fields {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// Checks the signature of a request on `route`, sent from `remote`. Returns the minting
/// certificate's DER, authenticated by the tag; [`admit`] then checks the certificate.
pub fn verify(
    route: &CompiledRoute,
    server: &CompiledServer,
    head: &Parts,
    remote: Option<IpAddr>,
    now: u64,
) -> Result<Vec<u8>, Failure> {
    let Some(signed) = &route.signed else {
        return Err(Failure::NotSignedRoute);
    };
    if head.method != http::Method::GET && head.method != http::Method::HEAD {
        return Err(Failure::Method);
    }
    let p = params(head.uri.query().unwrap_or(""))?;
    let (Some(exp), Some(kid), Some(id), Some(sig)) = (p.exp, p.kid, p.id, p.sig) else {
        return Err(Failure::Malformed);
    };
    let expires: u64 = exp.parse().map_err(|_| Failure::Malformed)?;
    if expires < now {
        return Err(Failure::Expired);
    }
    if expires > now + signed.max_ttl + CLOCK_SKEW_SECS {
        return Err(Failure::OverMaxTtl);
    }
    if !signed.keys.has(kid) {
        return Err(Failure::UnknownKey);
    }
    let der = B64.decode(id).map_err(|_| Failure::Malformed)?;
    let tag = B64.decode(sig).map_err(|_| Failure::Malformed)?;
    let path = head.uri.path();
    let prefix = match p.pfx {
        Some(encoded) => {
            let prefix = percent_decode_str(encoded)
                .decode_utf8()
                .map_err(|_| Failure::Malformed)?;
            if !path.starts_with(prefix.as_ref()) || !is_canonical(path) {
                return Err(Failure::OutsidePrefix);
            }
            Some(prefix)
        }
        None => None,
    };
    let target = prefix.as_deref().unwrap_or(path);
    let bound_ip = if signed.bind_client_ip { remote } else { None };
    let msg = message(
        &server.name,
        prefix.is_some(),
        target,
        expires,
        bound_ip,
        &der,
    );
    if !signed.keys.verify(kid, &msg, &tag) {
        return Err(Failure::BadSignature);
    }
    Ok(der)
}

/// Whether the certificate a valid URL carries may use `route` now: still within its
/// validity, and accepted by the route's current `allow` rules (a URL minted for one route
/// is no key to another that shares its key file).
pub fn admit(route: &CompiledRoute, cert: &ClientCert, now: u64) -> Result<(), Failure> {
    if cert.not_after_unix() < i64::try_from(now).unwrap_or(i64::MAX) || !route.allow.allows(cert) {
        return Err(Failure::NotAllowed);
    }
    Ok(())
}

/// `uri` without the signature parameters, as the upstream receives it.
pub fn strip(uri: &Uri) -> Uri {
    let Some(query) = uri.query() else {
        return uri.clone();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            !NAMES.contains(&name)
        })
        .collect();
    let mut path_and_query = uri.path().to_string();
    if !kept.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&kept.join("&"));
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

/// The request target for the access log: `cg_sig` and `cg_id` values replaced, so the
/// log never holds a usable URL (nor a kilobyte of certificate per line).
pub fn redact(target: &str) -> Cow<'_, str> {
    let Some((path, query)) = target.split_once('?') else {
        return Cow::Borrowed(target);
    };
    if !query.contains("cg_sig=") && !query.contains("cg_id=") {
        return Cow::Borrowed(target);
    }
    let pairs: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name @ (SIG | ID), _)) => Cow::Owned(format!("{name}=REDACTED")),
            _ => Cow::Borrowed(pair),
        })
        .collect();
    Cow::Owned(format!("{path}?{}", pairs.join("&")))
}

/// Whether a path has no `.`/`..` segments and no encoded `/` or `\`, plain or
/// percent-encoded: an upstream resolving those could serve a file outside a signed prefix.
fn is_canonical(path: &str) -> bool {
    path.split('/').all(|segment| {
        let decoded = percent_decode_str(segment).collect::<Vec<u8>>();
        decoded != b"." && decoded != b".." && !decoded.iter().any(|b| *b == b'/' || *b == b'\\')
    })
}

/// Bytes left as they are in a signed path: RFC 3986 `pchar` and `/`, and `%` so a path
/// that is already percent-encoded stays as it is. Everything else is percent-encoded.
const PATH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@')
    .remove(b'/')
    .remove(b'%');

/// A prefix in the `cg_pfx` value: everything but unreserved characters and `/` encoded.
const QUERY_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The `path`/`prefix` argument of the minting endpoint, as it must appear in requests.
fn canonical_path(decoded: &str) -> Result<String, String> {
    if !decoded.starts_with('/') {
        return Err(format!("must start with /; found {decoded:?}"));
    }
    let encoded = utf8_percent_encode(decoded, PATH_ENCODE).to_string();
    let bytes = encoded.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(format!(
                "has a % not followed by two hex digits; found {decoded:?}"
            ));
        }
    }
    if !is_canonical(&encoded) {
        return Err(format!(
            "must not have . or .. segments or encoded slashes; found {decoded:?}"
        ));
    }
    // Signed in the spelling requests are checked in: the normalized one (`%7e` is `~`,
    // `//` is `/`), else a URL minted for `/a//b` would never verify.
    match certgate_path::normalize(&encoded, certgate_path::Options::default()) {
        Ok(normal) => Ok(normal.into_owned()),
        Err(refused) => Err(format!(
            "is not a valid path ({refused}); found {decoded:?}"
        )),
    }
}

/// What the minting endpoint was asked for.
#[derive(Debug)]
struct MintRequest {
    target: String,
    prefix: bool,
    ttl: Option<u64>,
}

fn mint_request(query: Option<&str>) -> Result<MintRequest, String> {
    let mut path = None;
    let mut prefix = None;
    let mut ttl = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let slot = match name.as_ref() {
            "path" => &mut path,
            "prefix" => &mut prefix,
            "ttl" => &mut ttl,
            other => {
                return Err(format!(
                    "unknown parameter {other:?}; expected path or prefix, and ttl"
                ))
            }
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(format!("{name} is given twice"));
        }
    }
    let ttl = match ttl {
        None => None,
        Some(text) => match text.parse::<u64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(format!(
                    "ttl must be a whole number of seconds, at least 1; found {text:?}"
                ))
            }
        },
    };
    let (target, is_prefix) = match (path, prefix) {
        (Some(path), None) => (
            canonical_path(&path).map_err(|e| format!("path {e}"))?,
            false,
        ),
        (None, Some(prefix)) => {
            let prefix = canonical_path(&prefix).map_err(|e| format!("prefix {e}"))?;
            if !prefix.ends_with('/') {
                return Err(format!(
                    "prefix must end with / (it covers whole directories); found {prefix:?}"
                ));
            }
            (prefix, true)
        }
        (None, None) => return Err("give path=/file or prefix=/directory/".into()),
        (Some(_), Some(_)) => return Err("give path or prefix, not both".into()),
    };
    Ok(MintRequest {
        target,
        prefix: is_prefix,
        ttl,
    })
}

/// The outcome of a mint request, for the metric and the access log.
pub struct Minted {
    pub response: Response<ResponseBody>,
    /// The route the URL was minted for, when one was found.
    pub route_index: Option<usize>,
    /// The route's `allow` rules refused the certificate.
    pub denied: bool,
}

/// Answers `POST /.certgate/sign` for a connection whose certificate verified (the decide
/// phase refused the others with nginx's 400 page).
pub fn mint(
    server: &CompiledServer,
    conn: &ConnectionIdentity,
    head: &Parts,
    host: &str,
    remote: Option<IpAddr>,
    now: u64,
) -> Minted {
    let answer = |status: StatusCode, body: String, route_index, denied| Minted {
        response: json(status, body),
        route_index,
        denied,
    };
    let error = |message: &str| {
        let mut body = String::from("{\"error\":");
        crate::access_log::push_json_str(&mut body, message);
        body.push('}');
        body
    };
    if head.method != http::Method::POST {
        let mut minted = answer(
            StatusCode::METHOD_NOT_ALLOWED,
            error("use POST"),
            None,
            false,
        );
        minted
            .response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return minted;
    }
    let Some(cert) = conn.cert.as_ref() else {
        return answer(
            StatusCode::FORBIDDEN,
            error("a verified client certificate is required"),
            None,
            false,
        );
    };
    let request = match mint_request(head.uri.query()) {
        Ok(request) => request,
        Err(message) => return answer(StatusCode::BAD_REQUEST, error(&message), None, false),
    };
    let Some(route_index) = server
        .routes
        .iter()
        .position(|r| r.matcher.matches(&request.target, host))
    else {
        return answer(
            StatusCode::NOT_FOUND,
            error(&format!("no route matches {}", request.target)),
            None,
            false,
        );
    };
    let route = &server.routes[route_index];
    let Some(signed) = &route.signed else {
        return answer(
            StatusCode::NOT_FOUND,
            error(&format!(
                "the route for {} has no signed_urls",
                request.target
            )),
            Some(route_index),
            false,
        );
    };
    if !route.allow.allows(cert) {
        return answer(
            StatusCode::FORBIDDEN,
            error("this route's allow rules refuse your certificate"),
            Some(route_index),
            true,
        );
    }
    let ttl = request.ttl.unwrap_or(signed.max_ttl);
    if ttl > signed.max_ttl {
        return answer(
            StatusCode::BAD_REQUEST,
            error(&format!(
                "ttl {ttl} is over this route's max_ttl of {} seconds",
                signed.max_ttl
            )),
            Some(route_index),
            false,
        );
    }
    let expires = now + ttl;
    let bound_ip = if signed.bind_client_ip { remote } else { None };
    let der = cert.leaf_der();
    let msg = message(
        &server.name,
        request.prefix,
        &request.target,
        expires,
        bound_ip,
        der,
    );
    let (kid, tag) = signed.keys.sign(&msg);
    let mut url = request.target.clone();
    url.push_str(&format!("?{EXP}={expires}&{KID}={kid}"));
    if request.prefix {
        url.push_str(&format!(
            "&{PFX}={}",
            utf8_percent_encode(&request.target, QUERY_ENCODE)
        ));
    }
    url.push_str(&format!(
        "&{ID}={}&{SIG}={}",
        B64.encode(der),
        B64.encode(tag.as_ref())
    ));
    let mut body = String::from("{\"url\":");
    crate::access_log::push_json_str(&mut body, &url);
    if let Some(authority) = head
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            head.headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .filter(|a| a.parse::<http::uri::Authority>().is_ok())
    {
        body.push_str(",\"absolute_url\":");
        crate::access_log::push_json_str(&mut body, &format!("https://{authority}{url}"));
    }
    body.push_str(&format!(
        ",\"expires\":{expires},\"ttl\":{ttl},\"prefix\":{}}}",
        request.prefix
    ));
    answer(StatusCode::OK, body, Some(route_index), false)
}

fn json(status: StatusCode, mut body: String) -> Response<ResponseBody> {
    body.push('\n');
    let body = Bytes::from(body);
    let mut response = Response::new(ResponseBody::gateway(body.clone()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    // A minted URL is a credential: no cache may keep it.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_removes_only_signature_parameters() {
        let uri: Uri = "/v/a.mp4?x=1&cg_exp=5&cg_kid=ab&cg_id=Zm9v&cg_sig=c2ln&y=2"
            .parse()
            .unwrap();
        assert_eq!(strip(&uri), "/v/a.mp4?x=1&y=2");
        let uri: Uri = "/v/a.mp4?cg_exp=5&cg_pfx=%2Fv%2F&cg_kid=ab&cg_id=Zm9v&cg_sig=c2ln"
            .parse()
            .unwrap();
        assert_eq!(strip(&uri), "/v/a.mp4");
        let uri: Uri = "/v/a.mp4?cg_expx=1".parse().unwrap();
        assert_eq!(strip(&uri), "/v/a.mp4?cg_expx=1");
    }

    #[test]
    fn redact_hides_signature_and_identity() {
        assert_eq!(
            redact("/v/a.mp4?cg_exp=5&cg_kid=ab&cg_id=Zm9v&cg_sig=c2ln"),
            "/v/a.mp4?cg_exp=5&cg_kid=ab&cg_id=REDACTED&cg_sig=REDACTED"
        );
        assert_eq!(redact("/v/a.mp4?x=1"), "/v/a.mp4?x=1");
        assert_eq!(redact("/v/a.mp4"), "/v/a.mp4");
    }

    #[test]
    fn paths_are_canonicalised_and_dot_segments_refused() {
        assert_eq!(
            canonical_path("/videos/a b.mp4").unwrap(),
            "/videos/a%20b.mp4"
        );
        assert_eq!(
            canonical_path("/videos/a%20b.mp4").unwrap(),
            "/videos/a%20b.mp4"
        );
        assert_eq!(canonical_path("/v/ä?#").unwrap(), "/v/%C3%A4%3F%23");
        assert!(canonical_path("videos/a").is_err());
        assert!(canonical_path("/videos/../etc/passwd").is_err());
        assert!(canonical_path("/videos/%2e%2E/x").is_err());
        assert!(canonical_path("/videos/a%2Fb").is_err());
        assert!(canonical_path("/videos/100%").is_err());
        // The spelling requests are normalized to.
        assert_eq!(canonical_path("/v//%7euser/a").unwrap(), "/v/~user/a");
        assert_eq!(canonical_path("/v/%c3%a4").unwrap(), "/v/%C3%A4");
        assert!(canonical_path("/v/%C0%AF").is_err());
        assert!(is_canonical("/videos/a.mp4"));
        assert!(!is_canonical("/videos/./a.mp4"));
        assert!(!is_canonical("/videos/%5c..%5cx"));
    }

    #[test]
    fn mint_parameters() {
        let r = mint_request(Some("path=%2Fvideos%2Fa+b.mp4&ttl=60")).unwrap();
        assert_eq!(
            (r.target.as_str(), r.prefix, r.ttl),
            ("/videos/a%20b.mp4", false, Some(60))
        );
        let r = mint_request(Some("prefix=/hls/x/")).unwrap();
        assert_eq!(
            (r.target.as_str(), r.prefix, r.ttl),
            ("/hls/x/", true, None)
        );
        assert!(mint_request(Some("prefix=/hls/x"))
            .unwrap_err()
            .contains("end with /"));
        assert!(mint_request(Some("path=/a&prefix=/b/")).is_err());
        assert!(mint_request(None).is_err());
        assert!(mint_request(Some("path=/a&ttl=0")).is_err());
        assert!(mint_request(Some("path=/a&ttl=-1")).is_err());
        assert!(mint_request(Some("path=/a&path=/b")).is_err());
        assert!(mint_request(Some("path=/a&foo=1")).is_err());
    }

    #[test]
    fn messages_differ_in_every_field() {
        let base = message("api", false, "/a", 10, None, b"der");
        for other in [
            message("apj", false, "/a", 10, None, b"der"),
            message("api", true, "/a", 10, None, b"der"),
            message("api", false, "/b", 10, None, b"der"),
            message("api", false, "/a", 11, None, b"der"),
            message("api", false, "/a", 10, Some([127, 0, 0, 1].into()), b"der"),
            message("api", false, "/a", 10, None, b"des"),
            // Length prefixes: moving a byte between fields changes the message.
            message("api", false, "/a1", 0, None, b"der"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn only_a_cg_sig_parameter_marks_a_signed_request() {
        let head = |uri: &str| http::Request::get(uri).body(()).unwrap().into_parts().0;
        assert!(has_signature(&head("/a?cg_sig=x")));
        assert!(has_signature(&head("/a?cg_exp=1&cg_sig=x")));
        assert!(!has_signature(&head("/a?xcg_sig=x")));
        assert!(!has_signature(&head("/a?q=cg_sig=x")));
        assert!(!has_signature(&head("/a")));
    }

    #[test]
    fn repeated_parameters_are_malformed() {
        assert!(params("cg_sig=a&cg_sig=b").is_err());
        let p = params("x=1&cg_exp=5&cg_sig=s").unwrap();
        assert_eq!((p.exp, p.sig, p.kid), (Some("5"), Some("s"), None));
    }
}
