//! # certgate-path
//!
//! The one spelling of a request path that certgate routes on, authorizes and forwards.
//! Pure, no I/O, no dependencies on the rest of certgate, so it is unit-tested and fuzzed
//! on its own (`fuzz/fuzz_targets/path_normalize.rs`).
//!
//! A gateway that decides on one spelling of a path and forwards another lets any backend
//! that reads paths differently (resolves `..`, decodes `%61`, merges `//`, reads Tomcat's
//! `;` parameters) serve a resource the gateway refused. So [`normalize`] produces the
//! path every decision is made on *and* the path the backend is sent:
//!
//! - percent-encoded unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, every other
//!   escape is kept with upper-case hex digits (RFC 3986 §6.2.2);
//! - `.` and `..` segments are resolved (RFC 3986 §5.2.4), also when spelled `%2e`;
//! - repeated slashes are merged (nginx's `merge_slashes on`).
//!
//! Spellings that no normalization can make unambiguous are refused ([`Refused`]): a `..`
//! above the root, an encoded slash or backslash (unless [`EncodedSlashes::Keep`]), a raw
//! backslash, a NUL or other control byte, a `;` parameter on a dot segment or on an empty
//! one, a `%` not followed by two hex digits, and escapes that do not decode to valid UTF-8
//! (overlong forms such as `%C0%AF` among them).
//!
//! Two readings remain that a normalized path cannot settle, because they depend on the
//! backend: Tomcat, Jetty and Spring drop `;parameters` from every segment, and some
//! backends decode `%2F` to `/`. [`without_parameters`] and [`with_decoded_slashes`] give
//! those readings, so the caller can require that they reach the same route.
//!
//! An already-normal path costs one scan and no allocation ([`Cow::Borrowed`]).

#![forbid(unsafe_code)]

use std::borrow::Cow;

/// What to do with `%2F` and `%5C` (an encoded `/` or `\`) in a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodedSlashes {
    /// Refuse the request (400). Backends disagree on whether `%2F` separates segments, so
    /// a gateway cannot know which resource such a path names.
    #[default]
    Reject,
    /// Keep the escape as it is (upper-cased) and do not split on it, for APIs that put
    /// slashes inside one segment (RabbitMQ's `/api/queues/%2F/…`, GitLab's project ids).
    /// Dot segments are still refused in the decoded reading (`a%2F..%2Fb`), and the caller
    /// checks that the decoded reading reaches the same route ([`with_decoded_slashes`]).
    Keep,
}

/// How paths are normalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    pub encoded_slashes: EncodedSlashes,
}

/// Why a path was refused. Every one is a 400 for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not origin-form: does not start with `/` (`*`, or an HTTP/2 `:path` of `admin/x`).
    #[error("the path does not start with /")]
    NotAbsolute,
    /// A `..` segment with nothing left to remove: it would name something above the root.
    #[error("a .. segment climbs above the root")]
    AboveRoot,
    /// `%2F` or `%5C` under [`EncodedSlashes::Reject`].
    #[error("an encoded slash or backslash (%2F, %5C)")]
    EncodedSlash,
    /// A raw `\`: Windows servers and some frameworks read it as `/`.
    #[error("a backslash")]
    Backslash,
    /// A NUL or another control byte, raw or encoded (`%00`, `%0A`, `%7F`).
    #[error("a NUL or control byte")]
    ControlByte,
    /// `..;x`, `.;x` or `;x` as a segment: Tomcat and Spring read `..;` as `..`.
    #[error("a ; parameter on a dot segment or an empty segment")]
    DotParameter,
    /// A dot segment between encoded slashes under [`EncodedSlashes::Keep`] (`a%2F..%2Fb`).
    #[error("a dot segment between encoded slashes")]
    EncodedDotSegment,
    /// A `%` not followed by two hex digits.
    #[error("a % not followed by two hex digits")]
    BadEscape,
    /// Escapes that are not valid UTF-8, such as the overlong `%C0%AF` for `/`.
    #[error("escapes that are not valid UTF-8 (an overlong form, a lone byte)")]
    BadUtf8,
}

/// The path every decision is made on and the backend is sent; see the crate docs.
/// Borrowed when `path` is already normal.
pub fn normalize(path: &str, options: Options) -> Result<Cow<'_, str>, Refused> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(Refused::NotAbsolute);
    }
    if plainly_normal(bytes) {
        return Ok(Cow::Borrowed(path));
    }
    // The output so far: `path[..start]` while nothing has changed (`out` is None), else
    // `out`. Either ends with `/` at the top of the loop.
    let mut out: Option<String> = None;
    let mut start = 1;
    loop {
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(bytes.len(), |i| start + i);
        let last = end == bytes.len();
        let raw = &path[start..end];
        match segment(raw, options)? {
            Segment::Empty | Segment::Dot => {
                // `//`, `/./`: the slash already written stands for both. A trailing `.`
                // keeps the slash before it (`/a/.` is `/a/`), as a trailing empty one does.
                if !(last && raw.is_empty()) {
                    materialize(&mut out, path, start);
                }
            }
            Segment::DotDot => {
                let o = materialize(&mut out, path, start);
                // `o` ends with `/`; drop the segment before it, keeping its leading `/`.
                let before = o.len() - 1;
                match o[..before].rfind('/') {
                    Some(slash) => o.truncate(slash + 1),
                    None => return Err(Refused::AboveRoot),
                }
            }
            Segment::Kept => {
                if let Some(o) = out.as_mut() {
                    o.push_str(raw);
                    if !last {
                        o.push('/');
                    }
                }
            }
            Segment::Rewritten(text) => {
                let o = materialize(&mut out, path, start);
                o.push_str(&text);
                if !last {
                    o.push('/');
                }
            }
        }
        if last {
            break;
        }
        start = end + 1;
    }
    Ok(match out {
        Some(o) => Cow::Owned(o),
        None => Cow::Borrowed(path),
    })
}

/// The common case in one tight loop: no escape, backslash, `;` or control byte, no empty
/// segment but a trailing one, no segment starting with `.`. Such a path is normal as it
/// is; anything else takes the segment-by-segment walk (which may still find it normal).
fn plainly_normal(bytes: &[u8]) -> bool {
    let mut previous = b'/';
    for &b in &bytes[1..] {
        match b {
            b'%' | b'\\' | b';' | 0x00..=0x1F | 0x7F => return false,
            b'/' | b'.' if previous == b'/' => return false,
            _ => {}
        }
        previous = b;
    }
    true
}

/// The path as Tomcat, Jetty and Spring read a normalized one: each segment without its
/// `;parameters` (`/admin;x/y` is `/admin/y`). `None` when there are none.
pub fn without_parameters(normalized: &str) -> Option<String> {
    if !normalized.contains(';') {
        return None;
    }
    let mut out = String::with_capacity(normalized.len());
    for (i, segment) in normalized.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(segment.split(';').next().unwrap_or(""));
    }
    Some(out)
}

/// The path as a backend that decodes `%2F` and `%5C` into separators reads a normalized
/// one, merged slashes and all. `None` when it has neither escape.
pub fn with_decoded_slashes(normalized: &str) -> Option<String> {
    if !normalized.contains("%2F") && !normalized.contains("%5C") {
        return None;
    }
    let decoded = normalized.replace("%2F", "/").replace("%5C", "/");
    let mut out = String::with_capacity(decoded.len());
    for c in decoded.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    Some(out)
}

/// What one segment (the text between two slashes) normalizes to.
enum Segment {
    Empty,
    Dot,
    DotDot,
    /// Already normal: copied as it is.
    Kept,
    /// Escapes decoded or upper-cased.
    Rewritten(String),
}

/// Writes the unchanged output so far into `out` on the first change; returns it.
fn materialize<'o>(out: &'o mut Option<String>, path: &str, start: usize) -> &'o mut String {
    out.get_or_insert_with(|| {
        let mut o = String::with_capacity(path.len());
        o.push_str(&path[..start]);
        o
    })
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// The byte `%XY` at `bytes[i..]` encodes, if `bytes[i]` is `%` followed by two hex digits.
fn escape_at(bytes: &[u8], i: usize) -> Result<u8, Refused> {
    let (Some(hi), Some(lo)) = (
        bytes.get(i + 1).copied().and_then(hex_value),
        bytes.get(i + 2).copied().and_then(hex_value),
    ) else {
        return Err(Refused::BadEscape);
    };
    Ok(hi << 4 | lo)
}

/// How many bytes the UTF-8 sequence led by `lead` has; `None` for a byte no valid
/// sequence starts with (a continuation byte, the overlong leads C0 and C1, F5 and above).
fn utf8_len(lead: u8) -> Option<usize> {
    match lead {
        0xC2..=0xDF => Some(2),
        0xE0..=0xEF => Some(3),
        0xF0..=0xF4 => Some(4),
        _ => None,
    }
}

fn segment(raw: &str, options: Options) -> Result<Segment, Refused> {
    let bytes = raw.as_bytes();
    // Whether the text changes, and where the first `;` is in the decoded segment.
    let mut rewrite = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\\' => return Err(Refused::Backslash),
            0x00..=0x1F | 0x7F => return Err(Refused::ControlByte),
            b'%' => {
                let v = escape_at(bytes, i)?;
                let upper = bytes[i + 1..i + 3].iter().all(|c| !c.is_ascii_lowercase());
                match v {
                    0x00..=0x1F | 0x7F => return Err(Refused::ControlByte),
                    b'/' | b'\\' if options.encoded_slashes == EncodedSlashes::Reject => {
                        return Err(Refused::EncodedSlash)
                    }
                    _ if is_unreserved(v) => rewrite = true,
                    0x80..=0xFF => {
                        // A whole UTF-8 sequence of escapes, checked as one character.
                        let len = utf8_len(v).ok_or(Refused::BadUtf8)?;
                        let mut buf = [v, 0, 0, 0];
                        let mut all_upper = upper;
                        for (k, slot) in buf.iter_mut().enumerate().take(len).skip(1) {
                            let at = i + 3 * k;
                            if bytes.get(at) != Some(&b'%') {
                                return Err(Refused::BadUtf8);
                            }
                            *slot = escape_at(bytes, at)?;
                            all_upper &= bytes[at + 1..at + 3]
                                .iter()
                                .all(|c| !c.is_ascii_lowercase());
                        }
                        if std::str::from_utf8(&buf[..len]).is_err() {
                            return Err(Refused::BadUtf8);
                        }
                        rewrite |= !all_upper;
                        i += 3 * len;
                        continue;
                    }
                    _ => rewrite |= !upper,
                }
                i += 3;
            }
            _ => i += 1,
        }
    }
    let text: Cow<'_, str> = if rewrite {
        Cow::Owned(rewritten(raw))
    } else {
        Cow::Borrowed(raw)
    };
    let name = text.split(';').next().unwrap_or("");
    let parameters = text.len() != name.len();
    match (name, parameters) {
        ("", false) => return Ok(Segment::Empty),
        (".", false) => return Ok(Segment::Dot),
        ("..", false) => return Ok(Segment::DotDot),
        ("" | "." | "..", true) => return Err(Refused::DotParameter),
        _ => {}
    }
    if options.encoded_slashes == EncodedSlashes::Keep
        && (text.contains("%2F") || text.contains("%5C"))
        && text
            .split(';')
            .next()
            .unwrap_or("")
            .split("%2F")
            .flat_map(|part| part.split("%5C"))
            .any(|part| part == "." || part == "..")
    {
        return Err(Refused::EncodedDotSegment);
    }
    Ok(match text {
        Cow::Borrowed(_) => Segment::Kept,
        Cow::Owned(text) => Segment::Rewritten(text),
    })
}

/// `raw` with unreserved escapes decoded and the others upper-cased; its escapes were
/// checked by [`segment`].
fn rewritten(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Ok(v) = escape_at(bytes, i) {
                if is_unreserved(v) {
                    out.push(char::from(v));
                } else {
                    out.push('%');
                    out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                    out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
                }
                i += 3;
                continue;
            }
        }
        // Copy up to the next `%` (non-ASCII characters stay whole).
        let next = bytes[i + 1..]
            .iter()
            .position(|&b| b == b'%')
            .map_or(bytes.len(), |p| i + 1 + p);
        out.push_str(&raw[i..next]);
        i = next;
    }
    out
}

/// The invariants of a normalized path, as the fuzz target and the tests check them.
pub fn is_normal(path: &str, options: Options) -> bool {
    path.starts_with('/')
        && !path.contains("//")
        && path.split('/').all(|s| s != "." && s != "..")
        && matches!(normalize(path, options), Ok(Cow::Borrowed(_)))
}

#[cfg(test)]
mod tests;
