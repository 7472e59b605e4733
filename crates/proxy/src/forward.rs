//! The rewrite phase: what the upstream request carries that the client did not write, and
//! what it does not carry that the client did. Hop-by-hop headers stay on their hop;
//! anti-spoofing drops identity-shaped headers from the client; then the connection's
//! prepared identity headers, per-route templates, and nginx's forwarding headers
//! (`X-Real-IP`, `X-Forwarded-For` as `$proxy_add_x_forwarded_for`, `X-Forwarded-Proto`)
//! are set. Strip first, then set. A route's `upstream_path` replaces the matched prefix
//! of the path ([`upstream_uri`]).
//!
//! Pure request editing, so it can be benchmarked and tested without a connection.

use certgate_identity::{HeaderPlan, Identity, PreparedHeaders};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::compile::{CompiledRoute, CompiledServer};
use crate::routes::UpstreamPath;

/// `uri` with its path rewritten by the route's `upstream_path` and its query kept; `None`
/// when the rewrite is refused ([`UpstreamPath::apply`]).
pub fn upstream_uri(uri: &http::Uri, upstream_path: &UpstreamPath) -> Option<http::Uri> {
    let mut target = upstream_path.apply(uri.path())?;
    if let Some(query) = uri.query() {
        target.push('?');
        target.push_str(query);
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::try_from(target).ok()?);
    http::Uri::from_parts(parts).ok()
}

/// Whether a client-sent header must not reach the upstream.
///
/// A name with `_` is dropped unless `underscores_in_headers` (nginx's default), because
/// CGI/WSGI servers fold `_` and `-` into the same variable: `X_SSL_Client_S_DN` would reach a
/// Flask app as `HTTP_X_SSL_CLIENT_S_DN` beside the real header. Allowed, it is compared with
/// `_` read as `-`, so no spelling of a stripped name gets through.
fn is_spoofable(name: &HeaderName, server: &CompiledServer, route: &CompiledRoute) -> bool {
    if name.as_str().contains('_') {
        if !server.underscores_in_headers {
            return true;
        }
        let folded = name.as_str().replace('_', "-");
        let same = |n: &HeaderName| n.as_str() == folded;
        return HeaderPlan::is_stripped(&folded)
            || folded == "x-real-ip"
            || folded == "x-forwarded-proto"
            || folded == "x-forwarded-for"
            || server.header_plan.stripped_names().any(same)
            || route.headers.iter().any(|(n, _)| same(n));
    }
    HeaderPlan::is_stripped(name.as_str())
        || name == "x-real-ip"
        || name == "x-forwarded-proto"
        || server.header_plan.stripped_names().any(|n| n == name)
        || route.headers.iter().any(|(n, _)| n == name)
}

/// Headers that describe one connection (RFC 9110 §7.6.1) and never cross a proxy, with
/// whatever `Connection` lists. `TE: trailers` is kept when `keep_te_trailers` (gRPC
/// requires it end to end); `Upgrade` and `Connection: upgrade` when `upgrade`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_te_trailers: bool, upgrade: bool) {
    // Most messages carry none of these: look before allocating.
    if let Some(connection) = headers.get(header::CONNECTION) {
        let listed: Vec<HeaderName> = connection
            .to_str()
            .unwrap_or("")
            .split(',')
            .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
            .filter(|name| !(upgrade && name == header::UPGRADE))
            .collect();
        for name in listed {
            headers.remove(name);
        }
        headers.remove(header::CONNECTION);
    }
    for name in [
        header::TRANSFER_ENCODING,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        header::PROXY_AUTHENTICATE,
        header::TRAILER,
    ] {
        if headers.contains_key(&name) {
            headers.remove(name);
        }
    }
    if let Some(te) = headers.get(header::TE) {
        let trailers = keep_te_trailers && te.as_bytes().eq_ignore_ascii_case(b"trailers");
        if !trailers {
            headers.remove(header::TE);
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if headers.contains_key(header::UPGRADE) {
        headers.remove(header::UPGRADE);
    }
}

/// Edits the request `headers` into what the upstream receives: spoofable headers out,
/// identity and forwarding headers in.
pub fn apply(
    headers: &mut HeaderMap,
    server: &CompiledServer,
    route: &CompiledRoute,
    identity: &Identity,
    prepared: &PreparedHeaders,
    remote_ip: Option<&HeaderValue>,
    now_unix: i64,
) {
    // Most requests carry nothing spoofable: only allocate when something must go.
    if headers.keys().any(|name| is_spoofable(name, server, route)) {
        let spoofed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| is_spoofable(name, server, route))
            .cloned()
            .collect();
        for name in spoofed {
            headers.remove(name);
        }
    }

    for (name, value) in &prepared.headers {
        headers.insert(name.clone(), value.clone());
    }
    for (name, template) in &route.headers {
        let value = template.render(identity, now_unix);
        if value.is_empty() {
            continue;
        }
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name.clone(), value);
        }
    }

    if let Some(ip) = remote_ip {
        // nginx's $proxy_add_x_forwarded_for: append to what the client sent.
        let forwarded = match headers.get("x-forwarded-for").map(HeaderValue::as_bytes) {
            Some(existing) if !existing.is_empty() => {
                let mut joined = Vec::with_capacity(existing.len() + 2 + ip.len());
                joined.extend_from_slice(existing);
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(ip.as_bytes());
                HeaderValue::from_bytes(&joined).ok()
            }
            _ => Some(ip.clone()),
        };
        if let Some(forwarded) = forwarded {
            headers.insert("x-forwarded-for", forwarded);
        }
        headers.insert("x-real-ip", ip.clone());
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_stay_behind() {
        let mut map = headers(&[
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("x-private", "secret"),
            ("transfer-encoding", "chunked"),
            ("te", "gzip"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut map, true, false);
        let names: Vec<&str> = map.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["accept"]);
    }

    #[test]
    fn grpc_keeps_te_trailers_and_websocket_keeps_its_upgrade() {
        let mut map = headers(&[("te", "trailers")]);
        strip_hop_by_hop(&mut map, true, false);
        assert_eq!(map.get("te").unwrap(), "trailers");
        let mut map = headers(&[("te", "trailers")]);
        strip_hop_by_hop(&mut map, false, false);
        assert!(map.get("te").is_none());

        let mut map = headers(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        strip_hop_by_hop(&mut map, false, true);
        assert_eq!(map.get("upgrade").unwrap(), "websocket");
        assert_eq!(map.get("connection").unwrap(), "upgrade");
    }
}
