//! HTTP/1.1 request-framing guard: refuses the two smuggling-prone request heads hyper accepts.
//!
//! hyper 1.12's HTTP/1 server parser is lenient in two places where certgate must answer
//! `400 Bad Request`, as nginx (and pingora) do:
//!
//! - a request carrying both `Content-Length` and `Transfer-Encoding`: hyper silently drops
//!   `Content-Length` and decodes chunked. RFC 9112 §6.1 lets a server reject such a request,
//!   and §6.3 (item 3) says it "ought to be handled as an error": it is the classic
//!   request-smuggling shape (§11.2), framed one way by us and another way by some other hop;
//! - a request with more than one `Content-Length` field line, or one whose value is a list
//!   (`Content-Length: 5, 5`): hyper accepts repeated field lines whose values agree.
//!   RFC 9112 §6.3 (item 5) treats such a length as valid only if every value agrees, and
//!   RFC 9110 §8.6 lets a recipient reject it as invalid instead, as nginx does.
//!
//! (hyper itself already refuses obs-fold, differing duplicate lengths, a `Transfer-Encoding`
//! whose last coding is not `chunked`, and `Transfer-Encoding` in HTTP/1.0.)
//!
//! This module owns only the detection: [`RequestFraming`] is fed every byte hyper reads from
//! the client (after TLS), in order, and follows HTTP/1.1 request framing exactly far enough
//! to find each request head, so that header-looking text inside a body is never mistaken for
//! a header and every pipelined request is checked. The caller owns the wiring: answering 400,
//! closing the connection, and attaching the guard to HTTP/1 connections only (not h2).
//!
//! Framing follows RFC 9112 and, where hyper is stricter, hyper itself, so the two never
//! disagree about where a head starts on input hyper accepts:
//!
//! - a head is the request line plus field lines up to the first empty line; lines end at LF,
//!   optionally preceded by CR (httparse accepts bare LF); empty lines before a request line
//!   are skipped; field names are case-insensitive;
//! - body: `Transfer-Encoding` whose last coding is `chunked` -> chunked; else one valid
//!   `Content-Length` -> that many bytes; else none. Body bytes are skipped by counting;
//! - the chunked decoder mirrors hyper's byte for byte, CRLF-strict: hyper takes a bare LF
//!   inside a trailer line as part of that line, so a lenient decoder here would end the body
//!   earlier than hyper and let hyper read an unchecked head;
//! - after a head asking for a protocol switch (`CONNECT`, or `Upgrade` in HTTP/1.1 — hyper
//!   ignores `Upgrade` in HTTP/1.0) the rest of the stream is opaque and tracking stops. If the
//!   upstream then refuses the switch, hyper goes on reading HTTP/1.1 requests that this guard
//!   no longer sees: the caller must close such a connection after its response.
//!
//! Anything the guard cannot make sense of (an invalid chunk size, a length overflowing `u64`,
//! a bare CR, ...) stops tracking silently: hyper rejects such input itself. This relies on
//! hyper's default strict header parsing; with `ignore_invalid_headers(true)` hyper would skip
//! field lines this guard takes at face value.
//!
//! A violation is reported once the LF ending the offending head has been fed. Heads are
//! scanned once (the request target and uninteresting field values by a search for LF, the
//! rest byte by byte); bodies are skipped by counting; the state is under a hundred bytes and
//! nothing is allocated.

/// Why a request head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// The head has both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.1, §6.3).
    ContentLengthWithTransferEncoding,
    /// The head has more than one `Content-Length` field line, or a list value such as `5, 5`.
    DuplicateContentLength,
    /// More than one `Transfer-Encoding` field line (nginx: "client sent duplicate header line").
    DuplicateTransferEncoding,
    /// A `Transfer-Encoding` other than exactly `chunked` (`gzip, chunked`): nginx answers 501,
    /// and forwarding it as plain chunked would change what the request means.
    UnsupportedTransferEncoding,
    /// The request line is longer than one header buffer (nginx: 414).
    RequestLineTooLong,
    /// A header line is longer than one header buffer (nginx: 400 "Request Header Or Cookie
    /// Too Large").
    HeaderLineTooLong,
}

impl Violation {
    pub const ALL: [Violation; 6] = [
        Violation::ContentLengthWithTransferEncoding,
        Violation::DuplicateContentLength,
        Violation::DuplicateTransferEncoding,
        Violation::UnsupportedTransferEncoding,
        Violation::RequestLineTooLong,
        Violation::HeaderLineTooLong,
    ];
}

/// Follows HTTP/1.1 request framing on a client's byte stream and flags request heads with
/// ambiguous framing. See the [module docs](self).
#[derive(Debug)]
pub struct RequestFraming {
    state: State,
    head: Head,
    /// The longest request line or header line accepted, line end included
    /// (`large_client_header_buffers`' size).
    line_limit: usize,
    /// Bytes of the current line of the head so far.
    line_len: usize,
}

impl RequestFraming {
    /// A tracker at the start of a connection; lines longer than `line_limit` are refused.
    #[must_use]
    pub fn new(line_limit: usize) -> Self {
        RequestFraming {
            state: State::default(),
            head: Head::default(),
            line_limit,
            line_len: 0,
        }
    }

    /// Whether a request head has started and not ended.
    pub fn in_head(&self) -> bool {
        self.state.in_head()
    }

    /// Feeds bytes read from the client, in order. Returns the first violation found (and keeps
    /// returning it on later calls). After a head that asks for a protocol switch
    /// (`Upgrade` header or `CONNECT` method) the rest of the stream is opaque: stop tracking.
    ///
    /// # Errors
    ///
    /// The [`Violation`] of the first refused request head, once its final LF has been fed.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Violation> {
        let mut rest = bytes;
        loop {
            match self.state {
                State::Refused(violation) => return Err(violation),
                State::Opaque => return Ok(()),
                _ if rest.is_empty() => return Ok(()),
                state => {
                    let before = rest.len();
                    rest = self.step(rest);
                    if state.in_head() || self.state.in_head() {
                        self.count_line(state, before - rest.len());
                    }
                }
            }
        }
    }

    /// Consumes a prefix of `bytes` (at least one byte, or none with a change of state) and
    /// returns the rest.
    fn step<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        match self.state {
            State::RequestLine => {
                let (line, rest) = split_at_byte(bytes, b'\n');
                self.remember_tail(line);
                if rest.is_some() {
                    self.end_request_line();
                }
                rest.unwrap_or_default()
            }
            State::OtherValue => {
                let (_, rest) = split_at_byte(bytes, b'\n');
                if rest.is_some() {
                    self.state = State::LineStart;
                }
                rest.unwrap_or_default()
            }
            State::Body(remaining) => {
                let (rest, left) = skip(bytes, remaining);
                self.state = if left == 0 {
                    State::Idle
                } else {
                    State::Body(left)
                };
                rest
            }
            State::ChunkData(remaining) => {
                let (rest, left) = skip(bytes, remaining);
                self.state = if left == 0 {
                    State::ChunkDataCr
                } else {
                    State::ChunkData(left)
                };
                rest
            }
            State::ChunkExt(size) => {
                // Like hyper: an extension ends at CR; an LF inside it is an error.
                match bytes.iter().position(|&b| b == b'\r' || b == b'\n') {
                    Some(at) => {
                        self.state = if bytes.get(at) == Some(&b'\r') {
                            State::ChunkSizeLf(size)
                        } else {
                            State::Opaque
                        };
                        bytes.get(at + 1..).unwrap_or_default()
                    }
                    None => &[],
                }
            }
            State::Trailer => {
                // Like hyper: a trailer line ends at CR (an LF before it belongs to the line).
                let (_, rest) = split_at_byte(bytes, b'\r');
                if rest.is_some() {
                    self.state = State::TrailerLf;
                }
                rest.unwrap_or_default()
            }
            _ => match bytes.split_first() {
                Some((&b, rest)) => {
                    self.state = self.byte(b);
                    rest
                }
                None => bytes,
            },
        }
    }

    /// Adds `consumed` bytes, read in `was`, to the current line of the head; refuses the
    /// head once the line is over the limit (without waiting for its end, which may never
    /// come), and starts a new line after a line end.
    fn count_line(&mut self, was: State, consumed: usize) {
        self.line_len = self.line_len.saturating_add(consumed);
        if self.line_len > self.line_limit && !matches!(self.state, State::Refused(_)) {
            self.state = State::Refused(
                if matches!(was, State::Idle | State::Method | State::RequestLine) {
                    Violation::RequestLineTooLong
                } else {
                    Violation::HeaderLineTooLong
                },
            );
        } else if !self.state.in_line() {
            self.line_len = 0;
        }
    }

    /// The state after `b` in one of the byte-at-a-time states.
    fn byte(&mut self, b: u8) -> State {
        match (self.state, b) {
            (State::Idle, b'\r') => State::IdleCr,
            (State::Idle | State::IdleCr, b'\n') => State::Idle,
            (State::Idle, _) => {
                self.head = Head::default();
                self.method_byte(b)
            }
            (State::Method, _) => self.method_byte(b),

            (State::LineStart, b'\r') => State::LineStartCr,
            (State::LineStart | State::LineStartCr, b'\n') => self.end_head(),
            (State::LineStart, _) => {
                self.head.name_len = 0;
                self.name_byte(b)
            }
            (State::Name, _) => self.name_byte(b),
            (State::ContentLength, b'\n') => {
                if self.head.cl_elem == Elem::Before {
                    self.head.cl_ok = false;
                }
                State::LineStart
            }
            (State::ContentLength, _) => {
                self.content_length_byte(b);
                State::ContentLength
            }
            (State::TransferEncoding, b'\n') => {
                // As in hyper, the last `Transfer-Encoding` field line decides.
                self.head.te_chunked = self.head.te_elem != Elem::Before
                    && usize::from(self.head.te_match) == CHUNKED.len();
                State::LineStart
            }
            (State::TransferEncoding, _) => {
                self.transfer_encoding_byte(b);
                State::TransferEncoding
            }

            (State::ChunkStart, _) => hex(b).map_or(State::Opaque, State::ChunkSize),
            (State::ChunkSize(size), _) => match hex(b) {
                Some(digit) => size
                    .checked_mul(16)
                    .and_then(|size| size.checked_add(digit))
                    .map_or(State::Opaque, State::ChunkSize),
                None => match b {
                    b' ' | b'\t' => State::ChunkSizeLws(size),
                    b';' => State::ChunkExt(size),
                    b'\r' => State::ChunkSizeLf(size),
                    _ => State::Opaque,
                },
            },
            (State::ChunkSizeLws(size), b' ' | b'\t') => State::ChunkSizeLws(size),
            (State::ChunkSizeLws(size), b';') => State::ChunkExt(size),
            (State::ChunkSizeLws(size), b'\r') => State::ChunkSizeLf(size),
            (State::ChunkSizeLf(0), b'\n') => State::TrailerStart,
            (State::ChunkSizeLf(size), b'\n') => State::ChunkData(size),
            (State::ChunkDataCr, b'\r') => State::ChunkDataLf,
            (State::ChunkDataLf, b'\n') => State::ChunkStart,
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerStart, _) => State::Trailer,
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::EndLf, b'\n') => State::Idle,

            (state @ State::Refused(_), _) => state,
            // Input hyper rejects (the slice states never get here).
            _ => State::Opaque,
        }
    }

    fn method_byte(&mut self, b: u8) -> State {
        match b {
            b' ' => {
                self.head.connect = usize::from(self.head.method) == CONNECT.len();
                State::RequestLine
            }
            b'\r' | b'\n' => State::Opaque,
            _ => {
                self.head.method = match CONNECT.get(usize::from(self.head.method)) {
                    Some(&c) if c == b => self.head.method + 1,
                    _ => NO_MATCH,
                };
                State::Method
            }
        }
    }

    /// Keeps the last two bytes of the request line: the HTTP minor version digit, maybe a CR.
    fn remember_tail(&mut self, segment: &[u8]) {
        let from = segment.len().saturating_sub(2);
        for &b in segment.get(from..).unwrap_or_default() {
            let [_, last] = self.head.tail;
            self.head.tail = [last, b];
        }
    }

    fn end_request_line(&mut self) {
        let [before, last] = self.head.tail;
        let minor = if last == b'\r' { before } else { last };
        // httparse accepts only `HTTP/1.0` and `HTTP/1.1` at the end of the request line.
        self.head.http11 = minor == b'1';
        self.state = State::LineStart;
    }

    fn name_byte(&mut self, b: u8) -> State {
        match b {
            b':' => self.start_value(),
            b'\r' | b'\n' => State::Opaque,
            _ => {
                match self.head.name.get_mut(usize::from(self.head.name_len)) {
                    Some(slot) => {
                        *slot = b.to_ascii_lowercase();
                        self.head.name_len += 1;
                    }
                    None => self.head.name_len = NAME_TOO_LONG,
                }
                State::Name
            }
        }
    }

    fn start_value(&mut self) -> State {
        let head = &mut self.head;
        match head.name.get(..usize::from(head.name_len)) {
            Some(b"content-length") => {
                head.cl_count = head.cl_count.saturating_add(1);
                head.cl_elem = Elem::Before;
                head.cl_value = 0;
                head.cl_ok = true;
                State::ContentLength
            }
            Some(b"transfer-encoding") => {
                head.te_count = head.te_count.saturating_add(1);
                head.te_elem = Elem::Before;
                head.te_match = 0;
                State::TransferEncoding
            }
            Some(b"upgrade") => {
                head.upgrade = true;
                State::OtherValue
            }
            _ => State::OtherValue,
        }
    }

    /// One byte of a `Content-Length` value: a list of decimal numbers with optional
    /// whitespace around each (a CR is only ever the one before the LF: hyper rejects others).
    fn content_length_byte(&mut self, b: u8) {
        let head = &mut self.head;
        match b {
            // A second list element: a duplicate, whatever the values.
            b',' => {
                head.cl_count = head.cl_count.saturating_add(1);
                head.cl_elem = Elem::Before;
            }
            b' ' | b'\t' | b'\r' => {
                if head.cl_elem == Elem::In {
                    head.cl_elem = Elem::After;
                }
            }
            b'0'..=b'9' if head.cl_elem != Elem::After => {
                head.cl_elem = Elem::In;
                match head
                    .cl_value
                    .checked_mul(10)
                    .and_then(|value| value.checked_add(u64::from(b - b'0')))
                {
                    Some(value) => head.cl_value = value,
                    None => head.cl_ok = false,
                }
            }
            _ => head.cl_ok = false,
        }
    }

    /// One byte of a `Transfer-Encoding` value: tracks whether the last list element, trimmed,
    /// is `chunked` (case-insensitively), as hyper's `is_chunked_` decides.
    fn transfer_encoding_byte(&mut self, b: u8) {
        let head = &mut self.head;
        match b {
            b',' => {
                head.te_elem = Elem::Before;
                head.te_match = 0;
                head.te_list = true;
            }
            b' ' | b'\t' | b'\r' => {
                if head.te_elem == Elem::In {
                    head.te_elem = Elem::After;
                }
            }
            _ => {
                head.te_match = match (head.te_elem, CHUNKED.get(usize::from(head.te_match))) {
                    (Elem::Before | Elem::In, Some(&c)) if c == b.to_ascii_lowercase() => {
                        head.te_match + 1
                    }
                    _ => NO_MATCH,
                };
                head.te_elem = Elem::In;
            }
        }
    }

    /// Decides on a complete head: refuse it, or how its body is framed.
    fn end_head(&mut self) -> State {
        let head = &self.head;
        if head.te_count > 0 && head.cl_count > 0 {
            State::Refused(Violation::ContentLengthWithTransferEncoding)
        } else if head.cl_count > 1 {
            State::Refused(Violation::DuplicateContentLength)
        } else if head.te_count > 1 {
            State::Refused(Violation::DuplicateTransferEncoding)
        } else if head.te_count == 1 && head.te_chunked && head.te_list {
            // (A last coding other than `chunked` is hyper's 400.)
            State::Refused(Violation::UnsupportedTransferEncoding)
        } else if head.connect || (head.upgrade && head.http11) {
            State::Opaque
        } else if head.te_count > 0 {
            if head.te_chunked {
                State::ChunkStart
            } else {
                State::Opaque
            }
        } else if head.cl_count == 1 {
            match (head.cl_ok, head.cl_value) {
                (false, _) => State::Opaque,
                (true, 0) => State::Idle,
                (true, length) => State::Body(length),
            }
        } else {
            State::Idle
        }
    }
}

const CONNECT: &[u8] = b"CONNECT";
const CHUNKED: &[u8] = b"chunked";
/// A prefix match that failed.
const NO_MATCH: u8 = u8::MAX;
/// Field names are kept up to this length; longer ones are none of the names that matter.
const NAME_CAP: usize = 32;
const NAME_TOO_LONG: u8 = u8::MAX;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before a request line, skipping empty lines.
    #[default]
    Idle,
    /// A CR before a request line: an empty line if LF follows.
    IdleCr,
    /// In the request method.
    Method,
    /// In the rest of the request line.
    RequestLine,
    /// At the start of a field line, or of the empty line ending the head.
    LineStart,
    /// A CR at the start of a line in the head: the head ends if LF follows.
    LineStartCr,
    /// In a field name.
    Name,
    /// In a field value that does not matter.
    OtherValue,
    /// In a `Content-Length` value.
    ContentLength,
    /// In a `Transfer-Encoding` value.
    TransferEncoding,
    /// In a `Content-Length` body, with this many bytes left.
    Body(u64),
    /// At a chunk-size line.
    ChunkStart,
    /// In a chunk size, with the value so far.
    ChunkSize(u64),
    /// In whitespace after a chunk size.
    ChunkSizeLws(u64),
    /// In a chunk extension.
    ChunkExt(u64),
    /// After the CR ending a chunk-size line.
    ChunkSizeLf(u64),
    /// In chunk data, with this many bytes left.
    ChunkData(u64),
    /// Expecting the CR after chunk data.
    ChunkDataCr,
    /// Expecting the LF after chunk data.
    ChunkDataLf,
    /// After the last chunk or a trailer line: a trailer line or the final CRLF.
    TrailerStart,
    /// In a trailer line.
    Trailer,
    /// After the CR ending a trailer line.
    TrailerLf,
    /// After the CR of the final CRLF of a chunked body.
    EndLf,
    /// Not tracking any more (protocol switch, or input hyper rejects).
    Opaque,
    /// A violation was found.
    Refused(Violation),
}

/// Where a `Content-Length` or `Transfer-Encoding` value is within its current list element.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Elem {
    /// Before the element (only whitespace so far).
    #[default]
    Before,
    /// In the element.
    In,
    /// In whitespace after the element.
    After,
}

impl State {
    /// The states inside a request head, from its first byte to its final line end.
    fn in_head(self) -> bool {
        matches!(
            self,
            State::Method
                | State::RequestLine
                | State::LineStart
                | State::LineStartCr
                | State::Name
                | State::OtherValue
                | State::ContentLength
                | State::TransferEncoding
        )
    }

    /// The states inside one line of a request head.
    fn in_line(self) -> bool {
        matches!(
            self,
            State::Method
                | State::RequestLine
                | State::Name
                | State::OtherValue
                | State::ContentLength
                | State::TransferEncoding
        )
    }
}

/// What the current request head has shown so far.
#[derive(Debug, Default)]
struct Head {
    /// How many bytes of `CONNECT` the method has matched, or `NO_MATCH`.
    method: u8,
    connect: bool,
    /// The last two bytes of the request line (after the method).
    tail: [u8; 2],
    http11: bool,
    /// The current field name, lowercased, if it fits.
    name: [u8; NAME_CAP],
    /// Its length, or `NAME_TOO_LONG`.
    name_len: u8,
    /// `Content-Length` field lines plus extra list elements.
    cl_count: u32,
    cl_elem: Elem,
    cl_value: u64,
    /// Whether the last `Content-Length` value is a valid single length.
    cl_ok: bool,
    /// `Transfer-Encoding` field lines.
    te_count: u32,
    te_elem: Elem,
    /// How many bytes of `chunked` the current coding has matched, or `NO_MATCH`.
    te_match: u8,
    /// Whether the last `Transfer-Encoding` value ends with the `chunked` coding.
    te_chunked: bool,
    /// Whether a `Transfer-Encoding` value is a list (`gzip, chunked`).
    te_list: bool,
    upgrade: bool,
}

/// Splits `bytes` at the first `stop`: what precedes it, and what follows it if found.
fn split_at_byte(bytes: &[u8], stop: u8) -> (&[u8], Option<&[u8]>) {
    let mut parts = bytes.splitn(2, |&b| b == stop);
    (parts.next().unwrap_or_default(), parts.next())
}

/// Skips up to `count` bytes: the rest, and how many are still to skip.
fn skip(bytes: &[u8], count: u64) -> (&[u8], u64) {
    let taken = usize::try_from(count).map_or(bytes.len(), |count| count.min(bytes.len()));
    (
        bytes.get(taken..).unwrap_or_default(),
        count.saturating_sub(taken as u64),
    )
}

fn hex(b: u8) -> Option<u64> {
    char::from(b).to_digit(16).map(u64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLTE: Result<(), Violation> = Err(Violation::ContentLengthWithTransferEncoding);
    const DUP: Result<(), Violation> = Err(Violation::DuplicateContentLength);

    /// Feeds `input` whole, byte by byte, and split in two at every position; all must agree.
    fn check(input: &[u8]) -> Result<(), Violation> {
        let whole = RequestFraming::new(usize::MAX).feed(input);

        let mut guard = RequestFraming::new(usize::MAX);
        let mut bytewise = Ok(());
        for b in input {
            bytewise = guard.feed(std::slice::from_ref(b));
        }
        assert_eq!(bytewise, whole, "byte by byte: {:?}", show(input));

        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            let mut guard = RequestFraming::new(usize::MAX);
            let first = guard.feed(a);
            let second = guard.feed(b);
            if first.is_err() {
                assert_eq!(first, second, "sticky at {at}: {:?}", show(input));
            }
            assert_eq!(second, whole, "split at {at}: {:?}", show(input));
        }
        whole
    }

    /// `check` with a line limit.
    fn check_limited(input: &[u8], limit: usize) -> Result<(), Violation> {
        let whole = RequestFraming::new(limit).feed(input);
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            let mut guard = RequestFraming::new(limit);
            let _ = guard.feed(a);
            assert_eq!(guard.feed(b), whole, "split at {at}: {:?}", show(input));
        }
        whole
    }

    #[test]
    fn lines_longer_than_a_header_buffer_are_refused_before_they_end() {
        let line = |n: usize| format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(n));
        // "GET /" + n + " HTTP/1.1\r\n" = n + 16 bytes, line end included.
        assert_eq!(check_limited(line(48).as_bytes(), 64), Ok(()));
        assert_eq!(
            check_limited(line(49).as_bytes(), 64),
            Err(Violation::RequestLineTooLong)
        );
        // Refused while the line is still arriving: no line end needed.
        let mut guard = RequestFraming::new(64);
        assert_eq!(
            guard.feed(format!("GET /{}", "a".repeat(100)).as_bytes()),
            Err(Violation::RequestLineTooLong)
        );

        let header = |n: usize| format!("GET / HTTP/1.1\r\nX-Long: {}\r\n\r\n", "v".repeat(n));
        // "X-Long: " + n + "\r\n" = n + 10 bytes.
        assert_eq!(check_limited(header(54).as_bytes(), 64), Ok(()));
        assert_eq!(
            check_limited(header(55).as_bytes(), 64),
            Err(Violation::HeaderLineTooLong)
        );
        // Many short lines are each within the limit (the total is hyper's to bound).
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "X-A: b\r\n".repeat(50));
        assert_eq!(check_limited(many.as_bytes(), 64), Ok(()));
        // A body is not a line.
        let body = format!(
            "POST / HTTP/1.1\r\nContent-Length: 200\r\n\r\n{}",
            "b".repeat(200)
        );
        assert_eq!(check_limited(body.as_bytes(), 64), Ok(()));
        // Each pipelined request starts counting afresh.
        let two = "GET /aaaaaaaaaaaaaaaaaaaa HTTP/1.1\r\n\r\n".repeat(2);
        assert_eq!(check_limited(two.as_bytes(), 64), Ok(()));
    }

    #[test]
    fn transfer_encodings_other_than_exactly_chunked_are_refused() {
        assert_eq!(
            check(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
            Err(Violation::UnsupportedTransferEncoding)
        );
        assert_eq!(
            check(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(Violation::DuplicateTransferEncoding)
        );
        assert_eq!(
            check(b"POST / HTTP/1.1\r\nTransfer-Encoding:  Chunked \r\n\r\n0\r\n\r\n"),
            Ok(())
        );
    }

    fn show(input: &[u8]) -> String {
        String::from_utf8_lossy(input).into_owned()
    }

    #[test]
    fn clean_get() {
        assert_eq!(check(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
        assert_eq!(check(b"GET / HTTP/1.1\r\n\r\n"), Ok(()));
    }

    #[test]
    fn header_text_in_a_content_length_body_is_not_a_header() {
        let input = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 19\r\n\r\n\
                      Content-Length: 5\r\n\
                      GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(check(input), Ok(()));
        // ... and the next head is still found.
        let input = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 19\r\n\r\n\
                      Content-Length: 5\r\n\
                      GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(check(input), DUP);
        // The body may even look like a whole smuggled head.
        let body = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        let mut input =
            format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        input.extend_from_slice(body);
        input.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(check(&input), Ok(()));
    }

    #[test]
    fn content_length_with_transfer_encoding() {
        assert_eq!(
            check(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            CLTE
        );
        assert_eq!(
            check(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
            CLTE
        );
        // Whatever the values: an invalid length, a non-chunked coding.
        assert_eq!(
            check(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nContent-Length: x\r\n\r\n"),
            CLTE
        );
        // Also when the length is duplicated too, and in HTTP/1.0.
        assert_eq!(
            check(
                b"POST / HTTP/1.0\r\nContent-Length: 5\r\nContent-Length: 5\r\n\
                  Transfer-Encoding: chunked\r\n\r\n"
            ),
            CLTE
        );
    }

    #[test]
    fn duplicate_content_length() {
        assert_eq!(
            check(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
            DUP
        );
        assert_eq!(
            check(b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello"),
            DUP
        );
        assert_eq!(check(b"POST / HTTP/1.1\r\nContent-Length: 5,\r\n\r\n"), DUP);
        assert_eq!(
            check(b"POST / HTTP/1.1\r\nContent-Length: 0\r\nX: y\r\ncontent-length: 0\r\n\r\n"),
            DUP
        );
    }

    #[test]
    fn reported_only_once_the_head_is_complete_and_then_for_good() {
        let mut guard = RequestFraming::new(usize::MAX);
        assert_eq!(
            guard.feed(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n"),
            Ok(())
        );
        assert_eq!(guard.feed(b"\r"), Ok(()));
        assert_eq!(guard.feed(b"\n"), DUP);
        assert_eq!(guard.feed(b"hello"), DUP);
        assert_eq!(guard.feed(b""), DUP);
    }

    #[test]
    fn chunked_body_with_extensions_and_trailers_then_a_pipelined_violation() {
        let input = b"POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                      5;name=value;x\r\nhello\r\n\
                      1c \t; ext=\"q\"\r\nContent-Length: 5\r\n\r\nabcdefg\r\n\
                      0\r\nExpires: never\r\nContent-Length: 9\r\n\r\n\
                      GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(check(input), DUP);
        // The same without the second request is fine.
        let first = input.len()
            - "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n".len();
        assert_eq!(check(&input[..first]), Ok(()));
    }

    #[test]
    fn chunked_codings() {
        let tail = b"\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        for te in ["chunked", "CHUNKED", "  Chunked"] {
            let mut input = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}").into_bytes();
            input.extend_from_slice(tail);
            assert_eq!(check(&input), DUP, "{te}");
        }
        // A coding before `chunked`: nginx's 501 (hyper would decode it as plain chunked).
        for te in ["gzip, chunked", "gzip,chunked  "] {
            let mut input = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}").into_bytes();
            input.extend_from_slice(tail);
            assert_eq!(
                check(&input),
                Err(Violation::UnsupportedTransferEncoding),
                "{te}"
            );
        }
        // Two field lines: nginx's "duplicate header line" 400.
        let mut input =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked".to_vec();
        input.extend_from_slice(tail);
        assert_eq!(check(&input), Err(Violation::DuplicateTransferEncoding));
        // Not chunked: hyper refuses the request; the guard stops tracking.
        for te in ["chunked, gzip", "chunkedx", "chun ked", "", "xchunked"] {
            let mut input = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}").into_bytes();
            input.extend_from_slice(tail);
            assert_eq!(check(&input), Ok(()), "{te}");
        }
    }

    #[test]
    fn chunk_data_and_trailers_are_not_heads() {
        // A chunk carrying a whole violating head, then trailers that would be one, then a
        // request with another violation: only the last one is a head.
        let body = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut input = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            body.len()
        )
        .into_bytes();
        input.extend_from_slice(body);
        input
            .extend_from_slice(b"\r\n0\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
        input
            .extend_from_slice(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n");
        assert_eq!(check(&input), DUP);
    }

    #[test]
    fn bare_lf_inside_a_trailer_line_belongs_to_it_as_in_hyper() {
        // hyper reads "X: y\n" + CRLF as one trailer line, then needs another line or the
        // final CRLF: the smuggled-looking head below is trailer text to hyper.
        let input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\n\r\n\
                      GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n\
                      GET / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n";
        let mut guard = RequestFraming::new(usize::MAX);
        assert_eq!(guard.feed(input), DUP);
        assert_eq!(check(input), DUP);
    }

    #[test]
    fn pipelined_requests_are_each_checked() {
        let input = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n\
                      POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
                      POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
                      GET /d HTTP/1.1\r\nContent-Length: 0\r\n\r\n\
                      POST /e HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(check(input), CLTE);
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        assert_eq!(
            check(b"\r\n\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"),
            DUP
        );
        assert_eq!(
            check(b"GET / HTTP/1.1\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
            DUP
        );
    }

    #[test]
    fn upgrade_and_connect_make_the_rest_opaque() {
        let junk =
            b"\x81\x05hello GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        for head in [
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
            "GET /ws HTTP/1.1\nUPGRADE: websocket\n\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
            "CONNECT a:443 HTTP/1.0\r\n\r\n",
        ] {
            let mut input = head.as_bytes().to_vec();
            input.extend_from_slice(junk);
            assert_eq!(check(&input), Ok(()), "{head}");
        }
        // The upgrade head itself is still checked.
        assert_eq!(
            check(
                b"GET / HTTP/1.1\r\nUpgrade: h2c\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"
            ),
            DUP
        );
        // hyper ignores Upgrade in HTTP/1.0 and keeps parsing requests: so does the guard.
        let mut input = b"GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n".to_vec();
        input
            .extend_from_slice(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n");
        assert_eq!(check(&input), DUP);
        // Methods are case-sensitive; `connect` is not CONNECT, nor is a longer token.
        assert_eq!(
            check(b"connect a:443 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
            DUP
        );
        assert_eq!(
            check(b"CONNECTX a:443 HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
            DUP
        );
        // Header names merely starting with `upgrade` don't count.
        assert_eq!(
            check(b"GET / HTTP/1.1\r\nUpgrade-Insecure-Requests: 1\r\n\r\nGET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
            DUP
        );
    }

    #[test]
    fn header_names_are_case_insensitive() {
        assert_eq!(
            check(b"POST / HTTP/1.1\r\ncontent-length: 5\r\nTRANSFER-ENCODING: chunked\r\n\r\n"),
            CLTE
        );
        assert_eq!(
            check(b"POST / HTTP/1.1\r\nCONTENT-LENGTH: 1\r\ncOnTeNt-LeNgTh: 1\r\n\r\nx"),
            DUP
        );
        assert_eq!(
            check(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-LENGTH: 1\r\n\r\n"),
            CLTE
        );
    }

    #[test]
    fn other_names_do_not_count() {
        for name in [
            "Content-Length-X",
            "Content-Lengt",
            "X-Content-Length",
            "Content-Length ",
            "Transfer-Encodings",
            "A-Field-Name-Far-Longer-Than-Thirty-Two-Bytes-Content-Length",
        ] {
            let input =
                format!("POST / HTTP/1.1\r\nContent-Length: 0\r\n{name}: 5\r\nX: chunked\r\n\r\n");
            assert_eq!(check(input.as_bytes()), Ok(()), "{name}");
        }
        // Exactly 32 bytes long, then a real duplicate.
        let input = b"GET / HTTP/1.1\r\nXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX: 1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(check(input), DUP);
    }

    #[test]
    fn bare_lf_heads() {
        assert_eq!(
            check(b"POST / HTTP/1.1\nContent-Length: 1\nContent-Length: 1\n\nx"),
            DUP
        );
        assert_eq!(
            check(b"POST / HTTP/1.1\nTransfer-Encoding: chunked\nContent-Length: 1\n\n"),
            CLTE
        );
        assert_eq!(
            check(b"POST / HTTP/1.1\nContent-Length: 12\n\nX: y\r\nZ: w\n\nGET / HTTP/1.1\n\n"),
            Ok(())
        );
        // Mixed endings: the body starts after "\n\r\n" as well.
        assert_eq!(
            check(b"POST / HTTP/1.1\nContent-Length: 3\r\n\nabcGET / HTTP/1.1\r\nContent-Length: 1\nContent-Length: 1\n\r\n"),
            DUP
        );
    }

    #[test]
    fn content_length_values() {
        // Whitespace around the value; leading zeros; the body is skipped exactly.
        let input = b"POST / HTTP/1.1\r\nContent-Length: \t 0005 \t\r\n\r\nabcde\
                      GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(check(input), DUP);
        let input = b"POST / HTTP/1.1\r\nContent-Length:5\r\n\r\nabcde\
                      GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(check(input), DUP);
        // A body covering a whole head hides it.
        let second = "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        let covered = 5 + second.len();
        let input = format!("POST / HTTP/1.1\r\nContent-Length: {covered}\r\n\r\nabcde{second}");
        assert_eq!(check(input.as_bytes()), Ok(()));
        // Then the next request is checked again.
        let input =
            format!("POST / HTTP/1.1\r\nContent-Length: {covered}\r\n\r\nabcde{second}{second}");
        assert_eq!(check(input.as_bytes()), DUP);
        // Invalid lengths (hyper refuses them): tracking stops.
        for value in ["", "5 5", "+5", "-1", "0x5", "18446744073709551616", "5;"] {
            let input = format!(
                "POST / HTTP/1.1\r\nContent-Length: {value}\r\n\r\n\
                 GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"
            );
            assert_eq!(check(input.as_bytes()), Ok(()), "{value:?}");
        }
        // The largest length is fine (and is skipped by counting).
        let mut guard = RequestFraming::new(usize::MAX);
        assert_eq!(
            guard.feed(b"POST / HTTP/1.1\r\nContent-Length: 18446744073709551615\r\n\r\n"),
            Ok(())
        );
        assert_eq!(guard.state, State::Body(u64::MAX));
        assert_eq!(guard.feed(&[b'x'; 4096]), Ok(()));
        assert_eq!(guard.state, State::Body(u64::MAX - 4096));
    }

    #[test]
    fn malformed_chunked_bodies_stop_tracking() {
        let next = "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        for body in [
            "\r\n",                      // no size digit
            " 5\r\nhello\r\n0\r\n\r\n",  // leading whitespace
            "5 5\r\nhello\r\n0\r\n\r\n", // digits after whitespace
            "5\nhello\r\n0\r\n\r\n",     // bare LF after the size
            "5;a\nhello\r\n0\r\n\r\n",   // LF in an extension
            "5\r\nhelloX\r\n0\r\n\r\n",  // data longer than the size
            "5\r\nhello\n0\r\n\r\n",     // bare LF after the data
            "5\r\nhello\rx0\r\n\r\n",    // CR without LF after the data
            "5\rxhello\r\n0\r\n\r\n",    // CR without LF after the size
            "0\r\n\rx\r\n",              // CR without LF as the final line
            "0\r\n\n",                   // bare LF as the final line
            "0\r\nX: y\rZ\r\n\r\n",      // bare CR in a trailer
            "10000000000000000\r\n",     // overflows u64
            "g\r\n",                     // not hex
        ] {
            let input =
                format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{body}{next}");
            assert_eq!(check(input.as_bytes()), Ok(()), "{body:?}");
        }
        // The largest chunk size is fine.
        let mut guard = RequestFraming::new(usize::MAX);
        assert_eq!(
            guard.feed(
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0000FFFFFFFFFFFFFFFF\r\n"
            ),
            Ok(())
        );
        assert_eq!(guard.state, State::ChunkData(u64::MAX));
    }

    #[test]
    fn malformed_heads_stop_tracking() {
        let next = "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
        for head in [
            "\rGET / HTTP/1.1\r\n\r\n",          // bare CR before the request line
            "GET\r\n\r\n",                       // no request target
            "GET / HTTP/1.1\r\nX\r\n\r\n",       // field line without a colon
            "GET / HTTP/1.1\r\nX\rY: 1\r\n\r\n", // CR in a name
            "GET / HTTP/1.1\r\n\rX\r\n",         // CR not ending the head
        ] {
            let input = format!("{head}{next}");
            assert_eq!(check(input.as_bytes()), Ok(()), "{head:?}");
        }
    }

    #[test]
    fn incomplete_input_is_not_a_violation() {
        let input = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n";
        for end in 0..input.len() {
            assert_eq!(check(&input[..end]), Ok(()));
        }
    }

    /// A tiny deterministic generator (Knuth's MMIX LCG).
    struct Lcg(u64);

    impl Lcg {
        fn next_u64(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// Feeds `input` in random pieces; must agree with feeding it whole.
    fn feed_in_pieces(input: &[u8], rng: &mut Lcg) -> Result<(), Violation> {
        let mut guard = RequestFraming::new(usize::MAX);
        let mut result = Ok(());
        let mut rest = input;
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(1 + rng.below(rest.len().min(24)));
            result = guard.feed(piece);
            rest = tail;
        }
        result
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Lcg(0x5eed);
        for _ in 0..10_000 {
            let len = rng.below(512);
            let input: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            let whole = RequestFraming::new(usize::MAX).feed(&input);
            assert_eq!(feed_in_pieces(&input, &mut rng), whole);
        }
    }

    const FRAGMENTS: &[&str] = &[
        "GET / HTTP/1.1\r\n",
        "POST /x HTTP/1.1\n",
        "PUT / HTTP/1.0\r\n",
        "CONNECT a:443 HTTP/1.1\r\n",
        "Host: a\r\n",
        "Content-Length: 5\r\n",
        "content-length:3\n",
        "Content-Length: 0\r\n",
        "Content-Length: 5, 5\r\n",
        "Content-Length: 1x\r\n",
        "Transfer-Encoding: chunked\r\n",
        "transfer-encoding: gzip, CHUNKED\n",
        "Transfer-Encoding: gzip\r\n",
        "Upgrade: websocket\r\n",
        "X: Content-Length: 5\r\n",
        "\r\n",
        "\r\n",
        "\n",
        "\r",
        "5\r\n",
        "3;a=b\r\n",
        "0\r\n",
        "hello",
        "abc",
        "X: y\r\n",
        ":",
        " ",
        "G",
    ];

    /// A whole-buffer, allocating restatement of the framing rules, to compare against.
    fn reference(input: &[u8]) -> Result<(), Violation> {
        fn line(s: &[u8]) -> Option<(&[u8], &[u8])> {
            let at = s.iter().position(|&b| b == b'\n')?;
            Some((&s[..at], &s[at + 1..]))
        }
        fn trim(s: &[u8]) -> &[u8] {
            let ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\r');
            let start = s.iter().position(|b| !ws(b)).unwrap_or(s.len());
            let end = s.iter().rposition(|b| !ws(b)).map_or(start, |e| e + 1);
            &s[start..end.max(start)]
        }
        let mut s = input;
        loop {
            // Empty lines, then the request line.
            let request_line = loop {
                let Some((l, rest)) = line(s) else {
                    return Ok(());
                };
                s = rest;
                match l {
                    b"" | b"\r" => continue,
                    [b'\r', ..] => return Ok(()),
                    _ => break l,
                }
            };
            let Some(sp) = request_line.iter().position(|&b| b == b' ') else {
                return Ok(());
            };
            let method = &request_line[..sp];
            if method.contains(&b'\r') {
                return Ok(());
            }
            let target = &request_line[sp + 1..];
            let http11 = target.strip_suffix(b"\r").unwrap_or(target).last() == Some(&b'1');
            let (mut cl, mut te, mut upgrade) = (0, 0, false);
            let (mut length, mut chunked, mut te_list) = (None, false, false);
            loop {
                let Some((l, rest)) = line(s) else {
                    return Ok(());
                };
                s = rest;
                if l.is_empty() || l == b"\r" {
                    break;
                }
                let Some(colon) = l.iter().position(|&b| b == b':') else {
                    return Ok(());
                };
                if l[..colon].contains(&b'\r') {
                    return Ok(());
                }
                let name = l[..colon].to_ascii_lowercase();
                let value = &l[colon + 1..];
                match &name[..] {
                    b"content-length" => {
                        cl += value.split(|&b| b == b',').count();
                        let v = trim(value);
                        length = if !v.is_empty() && v.iter().all(u8::is_ascii_digit) {
                            std::str::from_utf8(v).unwrap().parse::<u64>().ok()
                        } else {
                            None
                        };
                    }
                    b"transfer-encoding" => {
                        te += 1;
                        te_list |= value.contains(&b',');
                        let last = value.split(|&b| b == b',').next_back().unwrap();
                        chunked = trim(last).eq_ignore_ascii_case(b"chunked");
                    }
                    b"upgrade" => upgrade = true,
                    _ => {}
                }
            }
            if te > 0 && cl > 0 {
                return CLTE;
            }
            if cl > 1 {
                return DUP;
            }
            if te > 1 {
                return Err(Violation::DuplicateTransferEncoding);
            }
            if te == 1 && chunked && te_list {
                return Err(Violation::UnsupportedTransferEncoding);
            }
            if method == b"CONNECT" || (upgrade && http11) {
                return Ok(());
            }
            if te > 0 {
                if !chunked {
                    return Ok(());
                }
                loop {
                    let Some(cr) = s.iter().position(|&b| b == b'\r') else {
                        return Ok(());
                    };
                    let size_line = &s[..cr];
                    let digits = size_line
                        .iter()
                        .take_while(|b| b.is_ascii_hexdigit())
                        .count();
                    if digits == 0 {
                        return Ok(());
                    }
                    let Some(size) = size_line[..digits]
                        .iter()
                        .try_fold(0u64, |n, &b| n.checked_mul(16)?.checked_add(hex(b)?))
                    else {
                        return Ok(());
                    };
                    let after = &size_line[digits..];
                    let ws = after
                        .iter()
                        .take_while(|b| matches!(b, b' ' | b'\t'))
                        .count();
                    let after = &after[ws..];
                    if !(after.is_empty() || (after[0] == b';' && !after.contains(&b'\n'))) {
                        return Ok(());
                    }
                    if s.get(cr + 1) != Some(&b'\n') {
                        return Ok(());
                    }
                    s = &s[cr + 2..];
                    if size == 0 {
                        break;
                    }
                    if (s.len() as u64) < size.saturating_add(2) {
                        return Ok(());
                    }
                    let size = size as usize;
                    if &s[size..size + 2] != b"\r\n" {
                        return Ok(());
                    }
                    s = &s[size + 2..];
                }
                // Trailer lines, each ending at CRLF, then CRLF.
                loop {
                    match s {
                        [b'\r', b'\n', ..] => {
                            s = &s[2..];
                            break;
                        }
                        [] | [b'\r', ..] => return Ok(()),
                        _ => {
                            let Some(cr) = s.iter().position(|&b| b == b'\r') else {
                                return Ok(());
                            };
                            if s.get(cr + 1) != Some(&b'\n') {
                                return Ok(());
                            }
                            s = &s[cr + 2..];
                        }
                    }
                }
            } else if cl == 1 {
                let Some(length) = length else {
                    return Ok(());
                };
                if (s.len() as u64) < length {
                    return Ok(());
                }
                s = &s[length as usize..];
            }
        }
    }

    #[test]
    fn agrees_with_a_whole_buffer_reference_on_random_fragment_soups() {
        let mut rng = Lcg(42);
        let mut violations = 0;
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..1 + rng.below(16) {
                if rng.below(20) == 0 {
                    input.push(rng.next_u64() as u8);
                } else {
                    input.extend_from_slice(FRAGMENTS[rng.below(FRAGMENTS.len())].as_bytes());
                }
            }
            let whole = RequestFraming::new(usize::MAX).feed(&input);
            assert_eq!(whole, reference(&input), "{:?}", show(&input));
            assert_eq!(
                feed_in_pieces(&input, &mut rng),
                whole,
                "{:?}",
                show(&input)
            );
            violations += usize::from(whole.is_err());
        }
        // The soups do reach the interesting cases.
        assert!(violations > 200, "{violations}");
    }

    #[test]
    fn split_in_three_anywhere() {
        // Three-way splits of one input covering heads, a chunked body and trailers.
        let input =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2;e\r\nab\r\n0\r\nT: 1\r\n\r\n\
                      GET / HTTP/1.1\nContent-Length: 1\nContent-Length: 1\n\n";
        let whole = RequestFraming::new(usize::MAX).feed(input);
        assert_eq!(whole, DUP);
        for i in 0..=input.len() {
            for j in i..=input.len() {
                let mut guard = RequestFraming::new(usize::MAX);
                let _ = guard.feed(&input[..i]);
                let _ = guard.feed(&input[i..j]);
                assert_eq!(guard.feed(&input[j..]), whole, "{i} {j}");
            }
        }
    }

    /// Payload text that looks like framing.
    const NASTY: &[&str] = &[
        "\r\n",
        "\n",
        "\r\n\r\n",
        "Content-Length: 1\r\n",
        "Transfer-Encoding: chunked\r\n",
        "GET / HTTP/1.1\r\n",
        "0\r\n\r\n",
        "5\r\n",
        "Upgrade: x\r\n",
        "CONNECT ",
        "abc",
    ];

    fn nasty(rng: &mut Lcg, parts: usize) -> String {
        (0..parts).map(|_| NASTY[rng.below(NASTY.len())]).collect()
    }

    /// Builds a pipeline of well-framed requests, each with a random framing (some ambiguous)
    /// and a body full of framing-looking text; returns it with the expected verdict.
    fn pipeline(rng: &mut Lcg) -> (Vec<u8>, Result<(), Violation>) {
        let mut out = String::new();
        for _ in 0..1 + rng.below(4) {
            for _ in 0..rng.below(3) {
                out += ["\r\n", "\n"][rng.below(2)];
            }
            let eol = ["\r\n", "\n"][rng.below(2)];
            let method = ["GET", "POST", "PUT", "PATCH"][rng.below(4)];
            out += &format!("{method} /{} HTTP/1.1{eol}Host: a{eol}", rng.below(100));
            let parts = rng.below(6);
            let payload = nasty(rng, parts);
            let mut cl = 0;
            let mut te = false;
            let mut fields = Vec::new();
            for _ in 0..rng.below(3) {
                match rng.below(4) {
                    0 => {
                        fields.push(format!("Content-Length: {0}, {0}", payload.len()));
                        cl += 2;
                    }
                    _ => {
                        let name =
                            ["Content-Length", "content-length", "CONTENT-LENGTH"][rng.below(3)];
                        fields.push(format!(
                            "{name}:{}{}",
                            [" ", ""][rng.below(2)],
                            payload.len()
                        ));
                        cl += 1;
                    }
                }
            }
            if rng.below(3) == 0 {
                let coding = ["chunked", "gzip, chunked", "Chunked"][rng.below(3)];
                fields.push(format!("Transfer-Encoding: {coding}"));
                te = true;
            }
            for _ in 0..rng.below(3) {
                fields.push(format!("X-{}: {}", rng.below(10), nasty(rng, 1).trim_end()));
            }
            // Shuffle the field lines.
            for i in (1..fields.len()).rev() {
                fields.swap(i, rng.below(i + 1));
            }
            for field in &fields {
                out += field;
                out += eol;
            }
            out += eol;
            if te && cl > 0 {
                return (out.into_bytes(), CLTE);
            }
            if cl > 1 {
                return (out.into_bytes(), DUP);
            }
            if te && fields.iter().any(|f| f.contains("gzip, chunked")) {
                return (
                    out.into_bytes(),
                    Err(Violation::UnsupportedTransferEncoding),
                );
            }
            if te {
                let mut rest = payload.as_str();
                while !rest.is_empty() {
                    let (chunk, tail) = rest.split_at(1 + rng.below(rest.len()));
                    let ext = [";a=b", " ;x", ""][rng.below(3)];
                    out += &format!("{:X}{ext}\r\n{chunk}\r\n", chunk.len());
                    rest = tail;
                }
                out += "0\r\n";
                for _ in 0..rng.below(3) {
                    out +=
                        ["Content-Length: 7\r\n", "GET / HTTP/1.1\r\n", "T: x\r\n"][rng.below(3)];
                }
                out += "\r\n";
            } else if cl == 1 {
                out += &payload;
            }
        }
        (out.into_bytes(), Ok(()))
    }

    #[test]
    fn random_pipelines_of_well_framed_requests() {
        let mut rng = Lcg(7);
        let mut verdicts = [0; 4];
        for _ in 0..5_000 {
            let (input, expected) = pipeline(&mut rng);
            assert_eq!(
                RequestFraming::new(usize::MAX).feed(&input),
                expected,
                "{:?}",
                show(&input)
            );
            assert_eq!(reference(&input), expected, "{:?}", show(&input));
            assert_eq!(
                feed_in_pieces(&input, &mut rng),
                expected,
                "{:?}",
                show(&input)
            );
            verdicts[match expected {
                Ok(()) => 0,
                Err(Violation::ContentLengthWithTransferEncoding) => 1,
                Err(Violation::DuplicateContentLength) => 2,
                Err(_) => 3,
            }] += 1;
        }
        assert!(verdicts.iter().all(|&n| n > 200), "{verdicts:?}");
    }
}
