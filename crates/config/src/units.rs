//! nginx's size (`10m`, `512k`, `1g`) and time (`500ms`, `5s`, `1m30s`) syntaxes, so
//! values copied from an nginx config mean the same thing here.

use std::time::Duration;

pub(crate) const SIZE_SYNTAX: &str = "expected a size like 1048576, 512k, 10m or 1g";
pub(crate) const TIME_SYNTAX: &str = "expected a time like 500ms, 5s, 1m, 1h or 1m30s";

/// A size in bytes: digits with an optional `k`/`K`, `m`/`M` or `g`/`G` suffix (powers
/// of 1024, as nginx). Returns an error message on bad syntax or overflow.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, multiplier) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&text[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&text[..i], 1 << 30),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SIZE_SYNTAX.to_string());
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| "size is too large".to_string())
}

/// A duration: one or more `<number><unit>` parts (`ms`, `s`, `m`, `h`, `d`, `w`), or a
/// bare number of seconds (nginx reads `proxy_read_timeout 60` as 60s).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| "time is too large".to_string());
    }
    let mut total_ms: u64 = 0;
    let mut rest = text;
    if rest.is_empty() {
        return Err(TIME_SYNTAX.to_string());
    }
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits_end == 0 {
            return Err(TIME_SYNTAX.to_string());
        }
        let number: u64 = rest[..digits_end]
            .parse()
            .map_err(|_| "time is too large".to_string())?;
        rest = &rest[digits_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit_ms: u64 = match &rest[..unit_end] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            _ => return Err(TIME_SYNTAX.to_string()),
        };
        rest = &rest[unit_end..];
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(|| "time is too large".to_string())?;
    }
    Ok(Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("10m"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("10M"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("10mb").is_err());
        assert!(parse_size("m").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("1.5m").is_err());
        assert_eq!(
            parse_size("99999999999999999999g"),
            Err("size is too large".to_string())
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 s").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5sec").is_err());
        assert!(parse_duration("1.5s").is_err());
    }
}
