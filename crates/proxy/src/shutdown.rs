//! Graceful shutdown. pingora stops accepting on SIGTERM and then sleeps a fixed grace period
//! before tearing its runtimes down (which drops whatever is still running). This service
//! ends that wait early: once no request is in flight (or `shutdown_grace` has passed) it
//! flushes the access log, removes the pid file and exits 0, so an idle gateway stops at once and a busy one
//! finishes its requests.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::Shared;

/// How often the drain checks the in-flight count.
const POLL: Duration = Duration::from_millis(50);
/// A connection accepted just before SIGTERM may not have parsed its request yet: give it
/// this long to show up in the in-flight count before an idle gateway exits.
const SETTLE: Duration = Duration::from_millis(250);

pub struct DrainOnTerm {
    pub shared: Arc<Shared>,
    pub grace: Duration,
    /// Removed before exiting (with the reload status file beside it).
    pub pid_file: Option<std::path::PathBuf>,
}

#[async_trait]
impl BackgroundService for DrainOnTerm {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        self.shared.shutting_down.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let in_flight = &self.shared.metrics.requests_in_flight;
        tracing::info!(
            in_flight = in_flight.get(),
            "shutting down: listeners closed, waiting up to {:?} for requests in flight",
            self.grace
        );
        tokio::time::sleep(SETTLE).await;
        while in_flight.get() > 0 && started.elapsed() < self.grace {
            tokio::time::sleep(POLL).await;
        }
        let left = in_flight.get();
        if left > 0 {
            tracing::warn!(
                in_flight = left,
                "shutdown grace period over, exiting with requests in flight"
            );
        } else {
            tracing::info!("all requests finished, exiting");
        }
        self.shared.access_log.flush(Duration::from_secs(2));
        if let Some(path) = &self.pid_file {
            crate::pid_file::remove(path);
        }
        std::process::exit(0);
    }
}
