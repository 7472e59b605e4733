//! The access log: nginx `combined` plus the client certificate's subject DN, verify result,
//! request time and upstream response time, or the same fields as one JSON object per line.
//!
//! The request path only formats the line and hands it to a writer thread over a channel
//! bounded by a count of queued lines; when the writer falls behind, lines are dropped and counted
//! (`certgate_access_log_dropped_total`) rather than slowing requests down. SIGUSR1 makes
//! the writer reopen its file, as nginx does for logrotate.

use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use certgate_config::{AccessLog as AccessTarget, LogConfig, LogFormat};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use prometheus::IntCounter;

/// Lines buffered between the request path and the writer before new ones are dropped.
/// Counted rather than given to `sync_channel`, whose slot array (16k × 40 bytes) would be
/// allocated and touched at start; the list channel only holds memory for queued lines.
const QUEUE: usize = 16 * 1024;

const OFF: u8 = 0;
const COMBINED: u8 = 1;
const JSON: u8 = 2;

enum Message {
    Line(String),
    Reopen,
    Retarget(AccessTarget),
    Flush(SyncSender<()>),
}

/// Handle to the writer thread; cheap to share.
pub struct AccessLog {
    tx: Sender<Message>,
    /// Lines sent and not yet taken by the writer.
    queued: Arc<AtomicUsize>,
    format: AtomicU8,
    dropped: IntCounter,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessLog")
    }
}

/// Checks that the access log file can be opened for appending (created if missing), so a
/// bad path is a configuration error at start and on reload, never a silent loss of logs.
pub fn check_target(config: &certgate_config::Config) -> Result<(), certgate_config::ConfigError> {
    if let AccessTarget::File(path) = &config.log.access {
        open_append(path).map_err(|e| {
            config.error_at(
                "log.access",
                format!("cannot open the access log {}: {e}", path.display()),
            )
        })?;
    }
    Ok(())
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

fn format_code(config: &LogConfig) -> u8 {
    match (&config.access, config.format) {
        (AccessTarget::Off, _) => OFF,
        (_, LogFormat::Combined) => COMBINED,
        (_, LogFormat::Json) => JSON,
    }
}

impl AccessLog {
    /// Starts the writer thread for `config`.
    pub fn start(config: &LogConfig, dropped: IntCounter) -> Arc<AccessLog> {
        let (log, rx) = AccessLog::unstarted(config, dropped);
        let target = config.access.clone();
        let taken = log.queued.clone();
        let spawned = std::thread::Builder::new()
            .name("certgate-access-log".into())
            .spawn(move || writer(rx, target, &taken));
        if let Err(e) = spawned {
            tracing::error!("cannot start the access log writer, access log off: {e}");
        }
        Arc::new(log)
    }

    /// The handle and the receiving end its writer reads.
    fn unstarted(config: &LogConfig, dropped: IntCounter) -> (AccessLog, Receiver<Message>) {
        let (tx, rx) = channel();
        let log = AccessLog {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            format: AtomicU8::new(format_code(config)),
            dropped,
        };
        (log, rx)
    }

    /// Applies a reloaded `log:` section (target and format).
    pub fn reconfigure(&self, config: &LogConfig) {
        self.format.store(format_code(config), Ordering::Relaxed);
        let _ = self.tx.send(Message::Retarget(config.access.clone()));
    }

    /// Reopens the file (after logrotate moved it).
    pub fn reopen(&self) {
        let _ = self.tx.send(Message::Reopen);
    }

    /// Waits (bounded) until every line queued so far is written; used before exiting.
    pub fn flush(&self, timeout: Duration) {
        let (done_tx, done_rx) = sync_channel(1);
        if self.tx.send(Message::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(timeout);
        }
    }

    pub fn enabled(&self) -> bool {
        self.format.load(Ordering::Relaxed) != OFF
    }

    /// Formats `entry` and queues it; never blocks.
    pub fn log(&self, entry: &Entry<'_>) {
        let line = match self.format.load(Ordering::Relaxed) {
            COMBINED => entry.combined(),
            JSON => entry.json(),
            _ => return,
        };
        if self.queued.fetch_add(1, Ordering::Relaxed) >= QUEUE
            || self.tx.send(Message::Line(line)).is_err()
        {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.dropped.inc();
        }
    }
}

enum Sink {
    Off,
    Stdout(std::io::BufWriter<std::io::Stdout>),
    File(PathBuf, std::io::BufWriter<std::fs::File>),
}

impl Sink {
    fn open(target: &AccessTarget) -> Sink {
        match target {
            AccessTarget::Off => Sink::Off,
            AccessTarget::Stdout => Sink::Stdout(std::io::BufWriter::new(std::io::stdout())),
            AccessTarget::File(path) => match open_append(path) {
                Ok(f) => Sink::File(path.clone(), std::io::BufWriter::new(f)),
                Err(e) => {
                    tracing::error!("cannot open the access log {}: {e}", path.display());
                    Sink::Off
                }
            },
        }
    }

    fn writer(&mut self) -> Option<&mut dyn Write> {
        match self {
            Sink::Off => None,
            Sink::Stdout(w) => Some(w),
            Sink::File(_, w) => Some(w),
        }
    }

    fn flush(&mut self) {
        if let Some(w) = self.writer() {
            if let Err(e) = w.flush() {
                tracing::warn!("access log write failed: {e}");
            }
        }
    }
}

fn writer(rx: Receiver<Message>, target: AccessTarget, queued: &AtomicUsize) {
    let mut sink = Sink::open(&target);
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        // Write everything already queued, then flush once: one syscall per burst.
        while let Some(message) = next.take() {
            match message {
                Message::Line(line) => {
                    queued.fetch_sub(1, Ordering::Relaxed);
                    if let Some(w) = sink.writer() {
                        if let Err(e) = w.write_all(line.as_bytes()) {
                            tracing::warn!("access log write failed: {e}");
                        }
                    }
                }
                Message::Reopen => {
                    sink.flush();
                    if let Sink::File(path, _) = &sink {
                        let path = path.clone();
                        tracing::info!("reopening the access log {}", path.display());
                        sink = Sink::open(&AccessTarget::File(path));
                    }
                }
                Message::Retarget(target) => {
                    sink.flush();
                    sink = Sink::open(&target);
                }
                Message::Flush(done) => {
                    sink.flush();
                    let _ = done.try_send(());
                }
            }
            next = rx.try_recv().ok();
        }
        sink.flush();
    }
}

/// Waits for SIGUSR1 and reopens the access log file.
pub struct ReopenOnUsr1 {
    pub log: Arc<AccessLog>,
}

#[async_trait]
impl BackgroundService for ReopenOnUsr1 {
    /// Ready (so the listeners may open) only once SIGUSR1 is handled: its default action
    /// would end the process.
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: pingora_core::services::ServiceReadyNotifier,
    ) {
        let mut usr1 =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("cannot listen for SIGUSR1, access log reopen disabled: {e}");
                    ready.notify_ready();
                    return;
                }
            };
        ready.notify_ready();
        loop {
            tokio::select! {
                _ = usr1.recv() => self.log.reopen(),
                _ = shutdown.changed() => break,
            }
        }
    }
}

/// The fields of one access log line, borrowed from the request.
pub struct Entry<'a> {
    pub time: SystemTime,
    pub remote_addr: Option<std::net::IpAddr>,
    pub method: &'a str,
    pub uri: &'a str,
    pub protocol: &'a str,
    pub status: u16,
    pub body_bytes_sent: usize,
    pub referer: &'a str,
    pub user_agent: &'a str,
    pub client_s_dn: &'a str,
    pub client_verify: &'a str,
    pub request_time: Duration,
    pub upstream_time: Option<Duration>,
    pub server: &'a str,
    pub route: &'a str,
}

impl Entry<'_> {
    /// nginx `combined`, then `"$ssl_client_s_dn" $ssl_client_verify $request_time
    /// $upstream_response_time` (`-` when nothing was sent upstream), as in
    /// `log_format certgate '$remote_addr - $remote_user [$time_local] "$request" $status
    /// $body_bytes_sent "$http_referer" "$http_user_agent" "$ssl_client_s_dn"
    /// $ssl_client_verify $request_time $upstream_response_time';`
    pub fn combined(&self) -> String {
        let mut s = String::with_capacity(256);
        match self.remote_addr {
            Some(ip) => {
                let _ = write!(s, "{ip}");
            }
            None => s.push('-'),
        }
        s.push_str(" - - [");
        push_time_local(&mut s, self.time);
        s.push_str("] \"");
        push_escaped_nginx(&mut s, self.method);
        s.push(' ');
        push_escaped_nginx(&mut s, self.uri);
        s.push(' ');
        s.push_str(self.protocol);
        let _ = write!(s, "\" {} {} \"", self.status, self.body_bytes_sent);
        push_escaped_nginx(&mut s, or_dash(self.referer));
        s.push_str("\" \"");
        push_escaped_nginx(&mut s, or_dash(self.user_agent));
        s.push_str("\" \"");
        push_escaped_nginx(&mut s, or_dash(self.client_s_dn));
        s.push_str("\" ");
        s.push_str(or_dash(self.client_verify));
        let _ = write!(s, " {:.3} ", self.request_time.as_secs_f64());
        match self.upstream_time {
            Some(t) => {
                let _ = write!(s, "{:.3}", t.as_secs_f64());
            }
            None => s.push('-'),
        }
        s.push('\n');
        s
    }

    /// One JSON object; times in seconds, `upstream_response_time` null when nothing was
    /// sent upstream.
    pub fn json(&self) -> String {
        let mut s = String::with_capacity(384);
        s.push_str("{\"time\":\"");
        push_time_iso(&mut s, self.time);
        s.push_str("\",\"remote_addr\":");
        match self.remote_addr {
            Some(ip) => push_json_str(&mut s, &ip.to_string()),
            None => s.push_str("null"),
        }
        for (key, value) in [
            ("server", self.server),
            ("route", self.route),
            ("method", self.method),
            ("uri", self.uri),
            ("protocol", self.protocol),
        ] {
            let _ = write!(s, ",\"{key}\":");
            push_json_str(&mut s, value);
        }
        let _ = write!(
            s,
            ",\"status\":{},\"body_bytes_sent\":{}",
            self.status, self.body_bytes_sent
        );
        for (key, value) in [
            ("http_referer", self.referer),
            ("http_user_agent", self.user_agent),
            ("ssl_client_s_dn", self.client_s_dn),
            ("ssl_client_verify", self.client_verify),
        ] {
            let _ = write!(s, ",\"{key}\":");
            push_json_str(&mut s, value);
        }
        let _ = write!(
            s,
            ",\"request_time\":{:.3},\"upstream_response_time\":",
            self.request_time.as_secs_f64()
        );
        match self.upstream_time {
            Some(t) => {
                let _ = write!(s, "{:.3}", t.as_secs_f64());
            }
            None => s.push_str("null"),
        }
        s.push_str("}\n");
        s
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

/// nginx escapes `"`, `\` and bytes outside printable ASCII as `\xXX` in log variables.
fn push_escaped_nginx(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b as char);
        }
    }
}

pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn split_time(time: SystemTime) -> (i64, u32, u32, i64, i64, i64, u32) {
    let d = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (y, m, day) = civil(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    (
        y,
        m,
        day,
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        d.subsec_millis(),
    )
}

/// nginx's `$time_local` (`23/Nov/2026:01:55:45 +0000`), in UTC.
fn push_time_local(out: &mut String, time: SystemTime) {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d, hh, mm, ss, _) = split_time(time);
    let month = MONTHS[(m as usize).saturating_sub(1) % 12];
    let _ = write!(out, "{d:02}/{month}/{y}:{hh:02}:{mm:02}:{ss:02} +0000");
}

/// nginx's `$time_iso8601` with milliseconds, in UTC.
fn push_time_iso(out: &mut String, time: SystemTime) {
    let (y, m, d, hh, mm, ss, ms) = split_time(time);
    let _ = write!(out, "{y}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{ms:03}Z");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            time: UNIX_EPOCH + Duration::from_millis(1_795_000_000_123),
            remote_addr: Some("127.0.0.1".parse().unwrap()),
            method: "GET",
            uri: "/a?b=\"c\"",
            protocol: "HTTP/1.1",
            status: 200,
            body_bytes_sent: 11,
            referer: "",
            user_agent: "curl/8.5.0",
            client_s_dn: "CN=alice,O=Example",
            client_verify: "SUCCESS",
            request_time: Duration::from_millis(1500),
            upstream_time: None,
            server: "api",
            route: "/",
        }
    }

    #[test]
    fn a_writer_that_falls_behind_loses_counted_lines_not_requests() {
        let dropped = IntCounter::new("dropped", "test").unwrap();
        let (log, rx) = AccessLog::unstarted(&LogConfig::default(), dropped.clone());
        // The writer has not started: the queue fills, then further lines are dropped and counted.
        for _ in 0..QUEUE + 3 {
            log.log(&entry());
        }
        assert_eq!(dropped.get(), 3);

        // Once the writer has caught up there is room again.
        let queued = log.queued.clone();
        let writer = std::thread::spawn(move || writer(rx, AccessTarget::Off, &queued));
        log.flush(Duration::from_secs(10));
        assert_eq!(log.queued.load(Ordering::Relaxed), 0);
        log.log(&entry());
        assert_eq!(dropped.get(), 3);
        drop(log);
        writer.join().unwrap();
    }

    #[test]
    fn combined_is_nginx_combined_plus_identity_and_timings() {
        assert_eq!(
            entry().combined(),
            "127.0.0.1 - - [18/Nov/2026:11:06:40 +0000] \"GET /a?b=\\x22c\\x22 HTTP/1.1\" 200 11 \"-\" \"curl/8.5.0\" \"CN=alice,O=Example\" SUCCESS 1.500 -\n"
        );
    }

    #[test]
    fn json_escapes_and_uses_null_for_no_upstream() {
        let line = entry().json();
        assert!(
            line.starts_with(
                "{\"time\":\"2026-11-18T11:06:40.123Z\",\"remote_addr\":\"127.0.0.1\""
            ),
            "{line}"
        );
        assert!(line.contains("\"uri\":\"/a?b=\\\"c\\\"\""), "{line}");
        assert!(
            line.ends_with("\"request_time\":1.500,\"upstream_response_time\":null}\n"),
            "{line}"
        );
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_782), (2024, 2, 29));
    }
}
