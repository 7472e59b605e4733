//! Plain HTTP sent to a TLS port: as nginx does, read the request header and answer
//! `400 The plain HTTP request was sent to HTTPS port`, then close. Nothing is forwarded,
//! and the client that typed `http://` instead of `https://` sees why.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::responses::html_page;

const TITLE: &str = "The plain HTTP request was sent to HTTPS port";

/// How long, at most, what the client still sends after the answer is read and discarded,
/// so closing does not reset the connection before the client has read the page.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Reads the request header (at most `max_header` bytes, until `deadline`), writes the
/// page and closes. A client that never finishes its header gets nothing, as from nginx.
pub(crate) async fn answer(mut tcp: TcpStream, deadline: Instant, max_header: u64) {
    let limit = usize::try_from(max_header).unwrap_or(usize::MAX);
    let mut buf = [0u8; 4096];
    let mut tail = [0u8; 4];
    let mut read = 0usize;
    loop {
        let n = match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(n)) => n,
        };
        read = read.saturating_add(n);
        if buf
            .get(..n)
            .is_some_and(|bytes| header_ends(&mut tail, bytes))
            || read >= limit
        {
            break;
        }
    }
    let page = html_page(400, Some(TITLE));
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
        page.len()
    );
    if tokio::time::timeout_at(deadline, tcp.write_all(answer.as_bytes()))
        .await
        .is_err()
    {
        return;
    }
    let _ = tcp.shutdown().await;
    let drain_until = Instant::now() + DRAIN;
    while let Ok(Ok(n)) = tokio::time::timeout_at(drain_until, tcp.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
}

/// Whether `bytes` complete an empty line (`\r\n\r\n` or `\n\n`), given the last bytes
/// seen before them in `tail`.
fn header_ends(tail: &mut [u8; 4], bytes: &[u8]) -> bool {
    for &b in bytes {
        tail.rotate_left(1);
        tail[3] = b;
        if tail == b"\r\n\r\n" || tail[2..] == *b"\n\n" {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::header_ends;

    #[test]
    fn the_header_ends_at_an_empty_line_split_anywhere() {
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for split in 0..request.len() {
            let mut tail = [0u8; 4];
            let (a, b) = request.split_at(split);
            let ended = header_ends(&mut tail, a) || header_ends(&mut tail, b);
            assert!(ended, "split at {split}");
        }
        let mut tail = [0u8; 4];
        assert!(header_ends(&mut tail, b"GET / HTTP/1.0\n\n"));
        let mut tail = [0u8; 4];
        assert!(!header_ends(&mut tail, b"GET / HTTP/1.1\r\nHost: x\r\n"));
    }
}
