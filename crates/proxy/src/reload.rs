//! Hot reload: on SIGHUP, re-read gateway.yaml and every file it names, compile it, and
//! swap it in atomically. A config that fails anywhere leaves the running one untouched.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use certgate_config::{Config, ConfigErrors};
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::compile::{compile, Compiled};
use crate::pid_file::{Outcome, ReloadStatus};
use crate::Shared;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    #[error("listen addresses changed ({0}); restart certgate to apply them (the running configuration is kept)")]
    NeedsRestart(String),
}

impl ReloadError {
    /// The error as one line, for a log event (a collector reads one event per line):
    /// several located errors are joined with `; `.
    pub fn one_line(&self) -> String {
        self.to_string()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn listen_set(compiled: &Compiled) -> BTreeSet<SocketAddr> {
    compiled.listeners.iter().map(|g| g.addr).collect()
}

/// One reload at a time: SIGHUP and a file change ([`crate::watch`]) may coincide, and the
/// reload that read the files last must be the one installed last.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Loads and compiles `path`, then installs it. Blocking (file I/O, name resolution).
/// Counts the outcome in `certgate_config_reloads_total`.
pub fn reload_from(shared: &Arc<Shared>, path: &std::path::Path) -> Result<u64, ReloadError> {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let outcome = try_reload(shared, path);
    shared.metrics.reload(outcome.is_ok());
    outcome
}

fn try_reload(shared: &Arc<Shared>, path: &std::path::Path) -> Result<u64, ReloadError> {
    let config = Config::load(path)?;
    let compiled = compile(&config)?;
    crate::access_log::check_target(&config).map_err(|e| ConfigErrors(vec![e]))?;
    let current = shared.current.load();
    let (old, new) = (listen_set(&current.compiled), listen_set(&compiled));
    if old != new {
        let describe = |s: &BTreeSet<SocketAddr>| {
            s.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(ReloadError::NeedsRestart(format!(
            "running: {}; new: {}",
            describe(&old),
            describe(&new)
        )));
    }
    drop(current);
    if let Some(fixed) = shared.fixed_at_start.get() {
        let (admin, new_admin) = (fixed.admin, config.admin.as_ref().map(|a| a.listen));
        if admin != new_admin {
            let show = |a: &Option<SocketAddr>| a.map_or("none".to_string(), |a| a.to_string());
            return Err(ReloadError::NeedsRestart(format!(
                "admin.listen running: {}; new: {}",
                show(&admin),
                show(&new_admin)
            )));
        }
        if fixed.shutdown_grace != config.shutdown_grace {
            tracing::warn!(
                "shutdown_grace changed; the new value applies when certgate is restarted"
            );
        }
        if fixed.keepalive_timeout != config.keepalive_timeout {
            tracing::warn!(
                "keepalive_timeout changed; the new value applies when certgate is restarted"
            );
        }
        if fixed.watch.is_some_and(|watch| watch != config.watch) {
            tracing::warn!("watch changed; the new value applies when certgate is restarted");
        }
        if fixed.stderr_format != config.log.stderr_format {
            tracing::warn!(
                "log.stderr_format changed; the new value applies when certgate is restarted"
            );
        }
    }
    for warning in &compiled.warnings {
        tracing::warn!("{warning}");
    }
    let expiry = crate::metrics::expiry_entries(&config, &compiled);
    let generation = shared.swap(compiled);
    shared.metrics.set_expiry(&expiry);
    shared.access_log.reconfigure(&config.log);
    Ok(generation)
}

/// Waits for SIGHUP and reloads the configuration file the process started with.
pub struct ReloadOnHangup {
    pub shared: Arc<Shared>,
    pub path: PathBuf,
    /// Where each reload's outcome is written for `certgate reload` ([`crate::pid_file`]);
    /// `None` without a pid file.
    pub status: Option<PathBuf>,
}

impl ReloadOnHangup {
    /// Records `outcome` of the `sequence`th SIGHUP in the status file, if there is one.
    fn record(&self, sequence: u64, outcome: Outcome) {
        let Some(path) = &self.status else { return };
        let status = ReloadStatus {
            pid: std::process::id(),
            sequence,
            outcome,
        };
        if let Err(e) = status.write(path) {
            tracing::warn!(
                "cannot write the reload status file {} (certgate reload waits for it): {e}",
                path.display()
            );
        }
    }
}

#[async_trait]
impl BackgroundService for ReloadOnHangup {
    /// Ready (so the listeners may open) only once SIGHUP is handled: its default action
    /// would end the process.
    async fn start_with_ready_notifier(
        &self,
        mut shutdown: ShutdownWatch,
        ready: pingora_core::services::ServiceReadyNotifier,
    ) {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("cannot listen for SIGHUP, reload disabled: {e}");
                ready.notify_ready();
                return;
            }
        };
        self.record(0, Outcome::Started);
        ready.notify_ready();
        let mut sequence = 0;
        loop {
            tokio::select! {
                _ = hangup.recv() => {
                    // Before the files are read: see `pid_file` for why this order.
                    sequence += 1;
                    self.record(sequence, Outcome::Running);
                    let shared = self.shared.clone();
                    let path = self.path.clone();
                    let outcome = tokio::task::spawn_blocking(move || reload_from(&shared, &path)).await;
                    let recorded = match outcome {
                        Ok(Ok(generation)) => {
                            tracing::info!(generation, "configuration reloaded from {}", self.path.display());
                            Outcome::Reloaded { generation }
                        }
                        Ok(Err(e)) => {
                            let reason = e.one_line();
                            tracing::error!("reload failed, keeping the running configuration: {reason}");
                            Outcome::Refused { reason }
                        }
                        Err(e) => {
                            tracing::error!("reload task failed, keeping the running configuration: {e}");
                            Outcome::Refused { reason: format!("the reload task failed: {e}") }
                        }
                    };
                    self.record(sequence, recorded);
                }
                _ = shutdown.changed() => break,
            }
        }
    }
}
