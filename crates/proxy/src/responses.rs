//! Responses the gateway writes itself: nginx's error pages (same titles and wording, so
//! clients and runbooks written for nginx keep working) and, for gRPC requests,
//! trailers-only gRPC statuses instead of HTML.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::protocols::http::HttpTask;
use pingora::proxy::Session;

/// Why `request_filter` refused a request. Nothing is forwarded upstream for any of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    NoCertificate,
    BadCertificate,
    Forbidden,
    Misdirected,
    NoRoute,
    TooLarge,
    Internal,
}

impl Rejection {
    fn status(self) -> u16 {
        match self {
            Rejection::NoCertificate | Rejection::BadCertificate => 400,
            Rejection::Forbidden => 403,
            Rejection::Misdirected => 421,
            Rejection::NoRoute => 404,
            Rejection::TooLarge => 413,
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
            Rejection::Misdirected => (3, "misdirected request"),
            Rejection::NoRoute => (12, "no route"),
            Rejection::TooLarge => (8, "request too large"),
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
        400 => (3, "bad request"),
        _ => (13, "internal error"),
    }
}

async fn write_html(session: &mut Session, code: u16, title: Option<&str>) {
    let body = Bytes::from(html_page(code, title));
    let Ok(mut header) = ResponseHeader::build(code, Some(3)) else {
        return;
    };
    let ok = header
        .insert_header(http::header::CONTENT_TYPE, "text/html")
        .is_ok()
        && header
            .insert_header(http::header::CONTENT_LENGTH, body.len())
            .is_ok();
    if !ok {
        return;
    }
    if code == 400 {
        // As nginx does after a certificate error: do not keep the connection.
        session.set_keepalive(None);
    }
    if let Err(e) = session.write_response_header(Box::new(header), false).await {
        tracing::debug!("could not write error response: {e}");
        return;
    }
    if let Err(e) = session.write_response_body(Some(body), true).await {
        tracing::debug!("could not write error response body: {e}");
    }
}

/// A trailers-only gRPC response: HTTP 200 with grpc-status in the headers, no body.
async fn write_grpc(session: &mut Session, status: u16, message: &str) {
    let Ok(mut header) = ResponseHeader::build(200, Some(3)) else {
        return;
    };
    let ok = header
        .insert_header(http::header::CONTENT_TYPE, "application/grpc")
        .is_ok()
        && header
            .insert_header("grpc-status", status.to_string())
            .is_ok()
        && header.insert_header("grpc-message", message).is_ok();
    if !ok {
        return;
    }
    let written = if session.is_http2() {
        // pingora's `write_response_header` drops the end-of-stream flag for h2 and ends
        // the stream later with an empty DATA frame; gRPC clients then see a body without
        // trailers (UNKNOWN). A header task carries the flag: one HEADERS frame with
        // END_STREAM, the trailers-only form gRPC defines.
        session
            .downstream_session
            .response_duplex_vec(vec![HttpTask::Header(Box::new(header), true)])
            .await
            .map(|_| ())
    } else {
        session.write_response_header(Box::new(header), true).await
    };
    if let Err(e) = written {
        tracing::debug!("could not write gRPC status: {e}");
    }
}

pub async fn reject(session: &mut Session, rejection: Rejection, grpc: bool) {
    if grpc {
        let (status, message) = rejection.grpc_status();
        write_grpc(session, status, message).await;
    } else {
        write_html(session, rejection.status(), rejection.nginx_title()).await;
    }
    linger(session).await;
}

/// How long a refused request's unread body is read and discarded (nginx's `lingering_time`).
const LINGERING_TIME: std::time::Duration = std::time::Duration::from_secs(5);

/// nginx's lingering close: after refusing a request whose body is still arriving, read
/// and discard it for a while, so the client's kernel does not answer its own unfinished
/// upload with a reset that destroys the response before the client reads it.
async fn linger(session: &mut Session) {
    if session.is_http2() || session.is_body_done() {
        return;
    }
    session.set_keepalive(None);
    if tokio::time::timeout(LINGERING_TIME, session.drain_request_body())
        .await
        .is_err()
    {
        tracing::debug!("refused request body still arriving after {LINGERING_TIME:?}; closing");
    }
}

pub async fn error_page(session: &mut Session, code: u16, grpc: bool) {
    if grpc {
        let (status, message) = grpc_for_code(code);
        write_grpc(session, status, message).await;
    } else {
        write_html(session, code, None).await;
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
