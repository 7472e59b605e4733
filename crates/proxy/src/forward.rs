//! What the upstream request carries that the client did not write: anti-spoofing
//! (identity-shaped headers from the client are dropped), the connection's prepared
//! identity headers, per-route templates, and nginx's forwarding headers
//! (`X-Real-IP`, `X-Forwarded-For` as `$proxy_add_x_forwarded_for`, `X-Forwarded-Proto`).
//!
//! Pure header editing, separate from the pingora hook so it can be benchmarked and
//! tested without a session.

use std::net::SocketAddr;

use certgate_identity::{HeaderPlan, Identity, PreparedHeaders};
use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use pingora::Result;

use crate::compile::{CompiledRoute, CompiledServer};

/// Whether a client-sent header must not reach the upstream.
fn is_spoofable(name: &HeaderName, server: &CompiledServer, route: &CompiledRoute) -> bool {
    HeaderPlan::is_stripped(name.as_str())
        || name == "x-real-ip"
        || name == "x-forwarded-proto"
        || server.header_plan.stripped_names().any(|n| n == name)
        || route.headers.iter().any(|(n, _)| n == name)
}

/// Edits `request` into what the upstream receives.
pub fn apply(
    request: &mut RequestHeader,
    server: &CompiledServer,
    route: &CompiledRoute,
    identity: &Identity,
    prepared: &PreparedHeaders,
    remote: Option<SocketAddr>,
    now_unix: i64,
) -> Result<()> {
    // Most requests carry nothing spoofable: only allocate when something must go.
    if request
        .headers
        .keys()
        .any(|name| is_spoofable(name, server, route))
    {
        let spoofed: Vec<HeaderName> = request
            .headers
            .keys()
            .filter(|name| is_spoofable(name, server, route))
            .cloned()
            .collect();
        for name in &spoofed {
            request.remove_header(name);
        }
    }

    for (name, value) in &prepared.headers {
        request.insert_header(name.clone(), value.clone())?;
    }
    for (name, template) in &route.headers {
        let value = template.render(identity, now_unix);
        if value.is_empty() {
            continue;
        }
        if let Ok(value) = HeaderValue::from_str(&value) {
            request.insert_header(name.clone(), value)?;
        }
    }

    if let Some(addr) = remote {
        let ip = addr.ip().to_string();
        // nginx's $proxy_add_x_forwarded_for: append to what the client sent.
        let forwarded = match request
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(existing) if !existing.is_empty() => format!("{existing}, {ip}"),
            _ => ip.clone(),
        };
        request.insert_header("x-forwarded-for", forwarded)?;
        request.insert_header("x-real-ip", ip)?;
    }
    request.insert_header("x-forwarded-proto", "https")?;
    Ok(())
}
