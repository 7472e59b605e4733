//! The decide phase: every check that can refuse a request before anything is sent
//! upstream — SNI and Host naming the same server (421), the server's client-certificate
//! policy (nginx's 400 pages), the route (404), per-route certificate requirement and
//! `allow` rules (403), signed URLs on routes with `signed_urls` (403 when not valid) and
//! the minting endpoint (a verified certificate required), a declared `Content-Length` over
//! `max_body_size` (413), and `CONNECT` (405: a reverse proxy opens no tunnels).
//!
//! It starts with the path: [`normalize_path`] rewrites it to the one spelling every check
//! here is made on and the upstream is sent (certgate-path), and refuses with 400 the
//! spellings no normalization can settle. Routes are then chosen on that path, and must be
//! the same under the readings a backend may still apply (Tomcat's `;parameters`, a decoded
//! `%2F` under `paths.encoded_slashes: keep`).
//! Pure: reads the request head, the connection's identity and the configuration.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use certgate_config::VerifyMode;
use certgate_identity::VerifyResult;
use http::request::Parts;
use http::uri::PathAndQuery;
use http::Uri;

use crate::compile::{CompiledRoute, CompiledServer};
use crate::responses::Rejection;
use crate::tls::{select_server, ConnectionIdentity};
use crate::State;

/// What the decide phase settled for a request it lets through.
pub struct Decision {
    pub server_index: usize,
    pub route_index: usize,
    /// The connection's identity, re-bound to the server and generation of this decision
    /// when a reload happened since the handshake; for a signed request, the identity of
    /// the certificate that minted the URL.
    pub conn: Arc<ConnectionIdentity>,
    /// `POST /.certgate/sign`: answered by the gateway itself ([`crate::signed::mint`]);
    /// `route_index` means nothing then.
    pub mint: bool,
    /// The request carried a valid signed URL.
    pub signed: bool,
}

impl Decision {
    pub fn server<'s>(&self, state: &'s State) -> Option<&'s CompiledServer> {
        state.compiled.servers.get(self.server_index)
    }

    pub fn route<'s>(&self, state: &'s State) -> Option<&'s CompiledRoute> {
        self.server(state)?.routes.get(self.route_index)
    }
}

/// A refusal, with what was known when it was made (for metrics and the access log).
pub struct Refusal {
    pub rejection: Rejection,
    pub server_index: Option<usize>,
    pub route_index: Option<usize>,
    /// Why a signed URL was refused.
    pub signed_failure: Option<crate::signed::Failure>,
}

/// Host (HTTP/1.1) or :authority (HTTP/2), without port or trailing dot, lower-cased;
/// borrowed from the request when it is already in that form (almost always).
pub fn request_host(head: &Parts) -> Cow<'_, str> {
    let raw = match head.uri.authority() {
        Some(authority) => authority.host(),
        None => {
            let Some(host) = head
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
            else {
                return Cow::Borrowed("");
            };
            match host.rsplit_once(':') {
                // An IPv6 literal keeps its brackets; a port after them is dropped.
                Some((name, port)) if port.bytes().all(|c| c.is_ascii_digit()) => name,
                _ => host,
            }
        }
    };
    let host = raw.trim_end_matches('.');
    if host.bytes().any(|c| c.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// Rewrites `uri`'s path to its normal form (certgate-path); the query is kept as it is.
/// An already-normal path costs one scan: no allocation, `uri` untouched.
pub fn normalize_path(
    uri: &mut Uri,
    options: certgate_path::Options,
) -> Result<(), certgate_path::Refused> {
    let mut target = match certgate_path::normalize(uri.path(), options)? {
        Cow::Borrowed(_) => return Ok(()),
        Cow::Owned(path) => path,
    };
    if let Some(query) = uri.query() {
        target.push('?');
        target.push_str(query);
    }
    // The normal form only drops or decodes what the parser accepted, so it parses; were
    // it ever refused, the request is refused with it rather than forwarded as sent.
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query =
        Some(PathAndQuery::try_from(target).map_err(|_| certgate_path::Refused::BadEscape)?);
    *uri = Uri::from_parts(parts).map_err(|_| certgate_path::Refused::BadEscape)?;
    Ok(())
}

pub fn is_grpc(head: &Parts) -> bool {
    head.headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Decides `head` from `remote` on a connection with identity `conn`, under configuration
/// `state`.
pub fn decide(
    state: &State,
    conn: &Arc<ConnectionIdentity>,
    head: &Parts,
    remote: Option<IpAddr>,
) -> Result<Decision, Refusal> {
    let refuse = |rejection, server_index, route_index| Refusal {
        rejection,
        server_index,
        route_index,
        signed_failure: None,
    };
    let compiled = &state.compiled;
    let mut server_index = conn.server;
    let group = compiled
        .listeners
        .iter()
        .find(|g| g.servers.contains(&server_index) && Some(g.addr) == conn.listen)
        .or_else(|| {
            compiled
                .listeners
                .iter()
                .find(|g| g.servers.contains(&server_index))
        });
    if conn.generation != state.generation {
        // The configuration was reloaded since the handshake: re-resolve by SNI.
        if let Some(group) = group {
            server_index = select_server(compiled, group, conn.sni.as_deref());
        }
    }
    let host = request_host(head);
    if let Some(group) = group {
        if group.servers.len() > 1
            && !host.is_empty()
            && select_server(compiled, group, Some(host.as_ref())) != server_index
        {
            // The TLS policy of one server must not admit a request for another.
            return Err(refuse(Rejection::Misdirected, Some(server_index), None));
        }
    }
    let Some(server) = compiled.servers.get(server_index) else {
        return Err(refuse(Rejection::Internal, None, None));
    };
    let at_server = |rejection| refuse(rejection, Some(server_index), None);

    let cert_sent = conn.cert_sent();
    let verified = matches!(conn.verify, VerifyResult::Success);
    // A signed URL stands in for a missing certificate, never for one that failed.
    let signature = server.signs && crate::signed::has_signature(head);
    match server.verify {
        VerifyMode::On if !cert_sent && !signature => {
            return Err(at_server(Rejection::NoCertificate))
        }
        VerifyMode::On | VerifyMode::Optional if cert_sent && !verified => {
            return Err(at_server(Rejection::BadCertificate))
        }
        // nginx forwards only "issuer not trusted" failures under optional_no_ca.
        VerifyMode::OptionalNoCa
            if cert_sent
                && !verified
                && !conn
                    .verify_code
                    .is_some_and(certgate_pki::verify::untrusted_issuer_only) =>
        {
            return Err(at_server(Rejection::BadCertificate))
        }
        _ => {}
    }

    if head.method == http::Method::CONNECT {
        return Err(at_server(Rejection::MethodNotAllowed));
    }
    let path = head.uri.path();
    let rebound = || {
        if server_index != conn.server || conn.generation != state.generation {
            Arc::new(conn.for_server(server_index, state.generation))
        } else {
            conn.clone()
        }
    };
    if server.signs && path == crate::signed::MINT_PATH {
        // Minting needs the certificate itself, verified, whatever the server's mode.
        if !verified {
            return Err(at_server(if cert_sent {
                Rejection::BadCertificate
            } else {
                Rejection::NoCertificate
            }));
        }
        return Ok(Decision {
            server_index,
            route_index: 0,
            conn: rebound(),
            mint: true,
            signed: false,
        });
    }
    let route_for = |path: &str| {
        server
            .routes
            .iter()
            .position(|r| r.matcher.matches(path, &host))
    };
    let route_index = route_for(path);
    // A backend that drops `;parameters` (Tomcat, Jetty, Spring) or decodes a kept `%2F`
    // reads another path; it must be one the same route, with the same rules, covers.
    let servlet = certgate_path::without_parameters(path);
    let decoded = (state.compiled.paths.encoded_slashes == certgate_path::EncodedSlashes::Keep)
        .then(|| certgate_path::with_decoded_slashes(path))
        .flatten();
    if [servlet, decoded]
        .iter()
        .flatten()
        .any(|reading| route_for(reading) != route_index)
    {
        return Err(at_server(Rejection::BadPath));
    }
    let Some(route_index) = route_index else {
        // Signature parameters earn a client without a certificate nothing, not even
        // knowing which paths have routes: it gets the 400 page as without them.
        if signature && server.verify == VerifyMode::On && !cert_sent {
            return Err(at_server(Rejection::NoCertificate));
        }
        return Err(at_server(Rejection::NoRoute));
    };
    let route = &server.routes[route_index];
    let at_route = |rejection| refuse(rejection, Some(server_index), Some(route_index));
    let mut signed_conn = None;
    if signature {
        let now = u64::try_from(crate::compile::unix_now()).unwrap_or(0);
        let checked = crate::signed::verify(route, server, head, remote, now).and_then(|der| {
            // Parsed only once the tag proved certgate wrote these bytes.
            let signed = conn
                .signed_identity(&der, server_index, state.generation)
                .map_err(|_| crate::signed::Failure::Malformed)?;
            let cert = signed
                .cert
                .as_deref()
                .ok_or(crate::signed::Failure::Malformed)?;
            crate::signed::admit(route, cert, now)?;
            Ok(signed)
        });
        match checked {
            Ok(signed) => signed_conn = Some(signed),
            // Not a signed route: the URL is the application's business, and the request
            // needs a certificate like any other.
            Err(crate::signed::Failure::NotSignedRoute) => {
                if server.verify == VerifyMode::On && !cert_sent {
                    return Err(at_server(Rejection::NoCertificate));
                }
            }
            Err(failure) => {
                return Err(Refusal {
                    signed_failure: Some(failure),
                    ..at_route(Rejection::SignedUrl)
                })
            }
        }
    }
    if signed_conn.is_none() {
        if route.require_client_cert && server.verify != VerifyMode::Off && !cert_sent {
            return Err(at_route(Rejection::NoCertificate));
        }
        if !route.allow.is_empty() {
            let allowed = verified && conn.cert.as_ref().is_some_and(|c| route.allow.allows(c));
            if !allowed {
                return Err(at_route(Rejection::Forbidden));
            }
        }
    }
    if route.max_body_size > 0 {
        // nginx answers 413 from the declared length, before reading any of the body.
        let declared = head
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > route.max_body_size) {
            return Err(at_route(Rejection::TooLarge));
        }
    }
    let signed = signed_conn.is_some();
    Ok(Decision {
        server_index,
        route_index,
        conn: signed_conn.unwrap_or_else(rebound),
        mint: false,
        signed,
    })
}
