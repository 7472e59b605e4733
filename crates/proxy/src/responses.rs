//! The respond phase for answers the gateway writes itself: nginx's error pages (same titles
//! and wording, so clients and runbooks written for nginx keep working) and, for gRPC
//! requests, trailers-only gRPC statuses instead of HTML.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::ResponseBody;

/// Why the decide phase refused a request. Nothing is forwarded upstream for any of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    NoCertificate,
    BadCertificate,
    Forbidden,
    /// A signed URL that is expired, altered, foreign or for another path (403).
    SignedUrl,
    Misdirected,
    NoRoute,
    TooLarge,
    /// `CONNECT`: certgate is a reverse proxy, not a forward one.
    MethodNotAllowed,
    /// A path no normalization can make unambiguous (`..` above the root, `%2F`, `..;`,
    /// a backslash, a control byte), or whose readings reach different routes.
    BadPath,
    Internal,
}

impl Rejection {
    pub fn status(self) -> u16 {
        match self {
            Rejection::NoCertificate | Rejection::BadCertificate | Rejection::BadPath => 400,
            Rejection::Forbidden | Rejection::SignedUrl => 403,
            Rejection::Misdirected => 421,
            Rejection::NoRoute => 404,
            Rejection::TooLarge => 413,
            Rejection::MethodNotAllowed => 405,
            Rejection::Internal => 500,
        }
    }

    /// nginx's `<title>` line for its special 400 pages (ngx_http_special_response.c).
    fn nginx_title(self) -> Option<&'static str> {
        match self {
            Rejection::NoCertificate => Some("No required SSL certificate was sent"),
            Rejection::BadCertificate => Some("The SSL certificate error"),
            _ => None,
        }
    }

    fn grpc_status(self) -> (u16, &'static str) {
        match self {
            Rejection::NoCertificate => (16, "client certificate required"),
            Rejection::BadCertificate => (16, "client certificate verification failed"),
            Rejection::Forbidden => (7, "client certificate not allowed"),
            Rejection::SignedUrl => (7, "signed URL not valid"),
            Rejection::Misdirected => (3, "misdirected request"),
            Rejection::NoRoute => (12, "no route"),
            Rejection::TooLarge => (8, "request too large"),
            Rejection::MethodNotAllowed => (12, "method not allowed"),
            Rejection::BadPath => (3, "malformed request path"),
            Rejection::Internal => (13, "internal error"),
        }
    }
}

fn reason(code: u16) -> &'static str {
    http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

/// The page body nginx sends, with `certgate` where nginx names itself.
pub fn html_page(code: u16, title: Option<&str>) -> String {
    let reason = reason(code);
    match title {
        Some(title) => format!(
            "<html>\r\n<head><title>{code} {title}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n<center>{title}</center>\r\n<hr><center>certgate</center>\r\n</body>\r\n</html>\r\n"
        ),
        None => format!(
            "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n<hr><center>certgate</center>\r\n</body>\r\n</html>\r\n"
        ),
    }
}

/// The gRPC status a proxy error maps to (SPEC: 14 UNAVAILABLE, 4 DEADLINE_EXCEEDED).
fn grpc_for_code(code: u16) -> (u16, &'static str) {
    match code {
        504 => (4, "upstream timed out"),
        502 | 503 => (14, "upstream unavailable"),
        413 => (8, "request too large"),
        431 => (8, "request header too large"),
        408 => (4, "request body timed out"),
        400 => (3, "bad request"),
        _ => (13, "internal error"),
    }
}

/// An nginx-style HTML page.
fn html(code: u16, title: Option<&str>) -> Response<ResponseBody> {
    let body = Bytes::from(html_page(code, title));
    let mut response = Response::new(ResponseBody::gateway(body.clone()));
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    response
}

/// A trailers-only gRPC response: HTTP 200 with `grpc-status` in the headers and no body,
/// which HTTP/2 sends as one HEADERS frame with END_STREAM, the form gRPC defines.
fn grpc(status: u16, message: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::gateway(Bytes::new()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(status));
    headers.insert("grpc-message", HeaderValue::from_static(message));
    response
}

/// The answer to a refused request.
pub fn reject(rejection: Rejection, is_grpc: bool) -> Response<ResponseBody> {
    if is_grpc {
        let (status, message) = rejection.grpc_status();
        grpc(status, message)
    } else {
        html(rejection.status(), rejection.nginx_title())
    }
}

/// The answer to a request head the HTTP/1.1 framing guard refused, and how to count it.
pub fn framing_violation(
    violation: crate::h1_guard::Violation,
) -> (crate::metrics::ClientError, Response<ResponseBody>) {
    use crate::h1_guard::Violation;
    use crate::metrics::ClientError;
    match violation {
        Violation::ContentLengthWithTransferEncoding
        | Violation::DuplicateContentLength
        | Violation::DuplicateTransferEncoding => (ClientError::BadRequest, html(400, None)),
        Violation::UnsupportedTransferEncoding => (ClientError::BadRequest, html(501, None)),
        Violation::RequestLineTooLong => (ClientError::HeaderTooLarge, html(414, None)),
        Violation::HeaderLineTooLong => (
            ClientError::HeaderTooLarge,
            html(400, Some("Request Header Or Cookie Too Large")),
        ),
    }
}

/// The answer to a failed upstream exchange (502, 504) or a body over the limit (413).
pub fn error_page(code: u16, is_grpc: bool) -> Response<ResponseBody> {
    if is_grpc {
        let (status, message) = grpc_for_code(code);
        grpc(status, message)
    } else {
        html(code, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_400_page_wording() {
        let page = html_page(400, Rejection::NoCertificate.nginx_title());
        assert!(page.starts_with(
            "<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>"
        ));
        assert!(page.contains("<center><h1>400 Bad Request</h1></center>\r\n<center>No required SSL certificate was sent</center>"));
        let page = html_page(400, Rejection::BadCertificate.nginx_title());
        assert!(page.contains("<title>400 The SSL certificate error</title>"));
        let page = html_page(502, None);
        assert!(page.contains("<title>502 Bad Gateway</title>"));
    }
}
