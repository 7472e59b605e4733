//! What one client connection's request path tells the connection that serves it: how many
//! requests are in flight and when the last one finished (for `keepalive_timeout`), whether
//! to read and discard a refused body before closing (nginx's lingering close), and whether
//! the HTTP/1.1 framing guard saw a smuggling attempt.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::h1_guard::Violation;

/// Shared by a connection and the requests on it.
pub struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// When the last request finished, as nanoseconds since `started`.
    last_done: AtomicU64,
    linger: AtomicBool,
    violation: AtomicU8,
}

const NO_VIOLATION: u8 = 0;

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done: AtomicU64::new(0),
            linger: AtomicBool::new(false),
            violation: AtomicU8::new(NO_VIOLATION),
        })
    }

    /// Counts a request until the returned guard is dropped (its response body is done).
    pub fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Whether no request has started on the connection yet.
    pub fn untouched(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0 && self.last_done.load(Ordering::Relaxed) == 0
    }

    /// How long the connection has had no request in flight; zero while one is.
    pub fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_nanos(self.last_done.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    /// Asks the connection to drain what the client still sends before closing.
    pub fn linger(&self) {
        self.linger.store(true, Ordering::Relaxed);
    }

    pub fn should_linger(&self) -> bool {
        self.linger.load(Ordering::Relaxed)
    }

    pub fn set_violation(&self, violation: Violation) {
        let code = Violation::ALL
            .iter()
            .position(|&v| v == violation)
            .and_then(|i| u8::try_from(i + 1).ok())
            .unwrap_or(NO_VIOLATION);
        self.violation.store(code, Ordering::Relaxed);
    }

    pub fn violation(&self) -> Option<Violation> {
        let code = self.violation.load(Ordering::Relaxed);
        Violation::ALL
            .get(usize::from(code).checked_sub(1)?)
            .copied()
    }
}

/// One request in flight on a connection.
pub struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let now = self.0.started.elapsed().as_nanos();
        self.0
            .last_done
            .store(u64::try_from(now).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
