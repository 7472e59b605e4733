//! Active health checks for every upstream that asks for them, whatever its load-balancing
//! policy, and across reloads: one background task reads the *current* configuration each
//! tick, so upstreams added or changed by a reload are checked too (a reload builds new
//! load balancers, which pingora's per-balancer background service would never see).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use certgate_config::HealthCheck;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;

use crate::Shared;

/// How often the task wakes to see which upstream is due.
const TICK: Duration = Duration::from_millis(250);

pub struct HealthChecks {
    shared: Arc<Shared>,
}

impl HealthChecks {
    pub fn new(shared: Arc<Shared>) -> Self {
        HealthChecks { shared }
    }
}

fn interval(check: &HealthCheck) -> Duration {
    match check {
        HealthCheck::Tcp { interval } | HealthCheck::Http { interval, .. } => *interval,
    }
}

#[async_trait]
impl BackgroundService for HealthChecks {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // Keyed by pool key, which is new for every upstream of every configuration
        // generation: a reloaded upstream is checked at once.
        let mut last_run: HashMap<u64, Instant> = HashMap::new();
        loop {
            let state = self.shared.current.load_full();
            let mut live = Vec::with_capacity(state.compiled.upstreams.len());
            for upstream in state.compiled.upstreams.values() {
                let Some(check) = &upstream.health_check else {
                    continue;
                };
                live.push(upstream.pool_key);
                let due = last_run
                    .get(&upstream.pool_key)
                    .is_none_or(|at| at.elapsed() >= interval(check));
                if due {
                    upstream.backends().run_health_check(true).await;
                    last_run.insert(upstream.pool_key, Instant::now());
                }
            }
            last_run.retain(|key, _| live.contains(key));
            drop(state);
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => break,
            }
        }
    }
}
