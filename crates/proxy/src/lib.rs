//! The certgate proxy: terminates TLS, verifies client certificates, routes requests and
//! forwards them with the caller's identity in headers. hyper serves HTTP on both sides;
//! pingora runs the process (signals, background services) and load-balances upstreams.
//!
//! The request path, in the order a request meets it:
//! - [`listener`] accept: sockets, worker threads, TLS handshakes (plain HTTP on the TLS port
//!   gets nginx's 400 from `plain_http`); [`tls`] the rustls side
//!   (SNI, client-certificate verifier) and the identity computed once per connection;
//! - [`connection`] one hyper connection per client connection, idle and shutdown closes;
//! - [`request`] one request through the phases: [`decide`] (reject, route with [`routes`],
//!   authorize), [`forward`] (strip, then set headers), [`upstream`] (pools, TLS, the
//!   exchange), [`responses`] (pages and gRPC statuses the gateway writes), [`signed`]
//!   (signed URLs: the minting endpoint and the check of signed requests), [`record`]
//!   (metrics and the access log, when the response [`body`] is done).
//!
//! Around it: [`compile`] turns a validated config into the runtime model (loads every
//! file); [`reload`] SIGHUP reload, [`watch`] reload on file change, [`shutdown`] the
//! SIGTERM drain, [`pid_file`] the pid file and the reload outcome `certgate reload` reads; [`metrics`], [`admin`] (`/metrics`, `/healthz`, `/readyz`),
//! [`access_log`] and [`health`] checks.
#![forbid(unsafe_code)]

pub mod access_log;
mod activity;
pub mod admin;
pub mod body;
mod cert_cache;
pub mod compile;
mod connection;
pub mod decide;
pub mod forward;
mod h1_guard;
pub mod health;
pub mod listener;
pub mod metrics;
pub mod pid_file;
mod plain_http;
pub mod record;
pub mod reload;
pub mod request;
pub mod responses;
pub mod routes;
pub mod shutdown;
pub mod signed;
pub mod tls;
pub mod tls_metrics;
pub mod upstream;
pub mod watch;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use certgate_config::{Config, ConfigErrors};
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;

pub use compile::{compile, Compiled};

/// One configuration generation, swapped atomically as a whole.
pub struct State {
    pub generation: u64,
    pub compiled: Compiled,
    /// The metric series of this generation's servers, routes and upstreams.
    pub handles: metrics::Handles,
}

/// Settings a reload cannot change: the process keeps the values it started with.
pub(crate) struct FixedAtStart {
    pub admin: Option<std::net::SocketAddr>,
    pub shutdown_grace: std::time::Duration,
    pub keepalive_timeout: std::time::Duration,
    /// `watch` from the file; `None` when `--watch` turned watching on regardless.
    pub watch: Option<bool>,
    /// `log.stderr_format`: the log subscriber is installed once, at start.
    pub stderr_format: certgate_config::StderrFormat,
}

/// State shared by the listeners, the handshake callbacks and the request path.
pub struct Shared {
    pub current: ArcSwap<State>,
    pub metrics: Arc<metrics::Metrics>,
    pub access_log: Arc<access_log::AccessLog>,
    /// Set when SIGTERM started the drain (`/readyz` then answers 503).
    pub shutting_down: AtomicBool,
    /// What the process started with that a reload cannot change.
    pub(crate) fixed_at_start: std::sync::OnceLock<FixedAtStart>,
    next_generation: AtomicU64,
    /// The TLS acceptor of each listen address, rebuilt from every new configuration
    /// (the listeners own them; weak here so they do not own `Shared` in a cycle).
    acceptors: std::sync::Mutex<
        Vec<(
            std::net::SocketAddr,
            std::sync::Weak<listener::AcceptorSlot>,
        )>,
    >,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("generation", &self.current.load().generation)
            .finish()
    }
}

impl Shared {
    /// Starts from `compiled`; `log` configures the access log writer.
    pub fn new(compiled: Compiled, log: &certgate_config::LogConfig) -> Arc<Shared> {
        let metrics = metrics::Metrics::new();
        let access_log = access_log::AccessLog::start(log, metrics.access_log_dropped.clone());
        let handles = metrics::Handles::new(&metrics, &compiled);
        Arc::new(Shared {
            current: ArcSwap::from_pointee(State {
                generation: 0,
                compiled,
                handles,
            }),
            metrics,
            access_log,
            shutting_down: AtomicBool::new(false),
            fixed_at_start: std::sync::OnceLock::new(),
            next_generation: AtomicU64::new(1),
            acceptors: std::sync::Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn register_acceptor(
        &self,
        addr: std::net::SocketAddr,
        slot: std::sync::Weak<listener::AcceptorSlot>,
    ) {
        if let Ok(mut list) = self.acceptors.lock() {
            list.push((addr, slot));
        }
    }

    /// Installs a new configuration; new handshakes and new requests use it, requests in
    /// flight keep the snapshot they started with.
    pub fn swap(self: &Arc<Self>, compiled: Compiled) -> u64 {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        if let Ok(list) = self.acceptors.lock() {
            listener::rebuild_acceptors(self, &compiled, &list);
        }
        let handles = metrics::Handles::new(&self.metrics, &compiled);
        self.current.store(Arc::new(State {
            generation,
            compiled,
            handles,
        }));
        generation
    }
}

/// The rustls provider certgate uses everywhere, installed as the process default before
/// pingora (health checks) would install its own.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    if let Some(provider) = rustls::crypto::CryptoProvider::get_default() {
        return provider.clone();
    }
    // aws-lc-rs rather than ring: RSA-2048 server signatures are the bulk of an RSA
    // handshake, and measured 15-45 % more full RSA handshakes/s (benches/load); ECDSA is
    // on par. Installed before pingora would install ring as the process default.
    // Losing this race to another thread is fine: both install the same provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

/// Options of `certgate run` that are not part of gateway.yaml.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Worker threads; 0 = one per CPU core.
    pub threads: usize,
    /// `--pid-file` or `pid_file:`; none by default. Written once the listeners are bound,
    /// removed on a clean exit; the reload status file goes next to it.
    pub pid_file: Option<std::path::PathBuf>,
    /// `--watch`: reload on file change even if gateway.yaml says `watch: false`.
    pub watch: bool,
}

/// Loads, compiles and serves `config` until the process is told to stop.
pub fn run(config: Config, options: RunOptions) -> Result<std::convert::Infallible, ConfigErrors> {
    let _ = crypto_provider();
    let compiled = compile(&config)?;
    for warning in &compiled.warnings {
        tracing::warn!("{warning}");
    }
    access_log::check_target(&config).map_err(|e| ConfigErrors(vec![e]))?;
    let started = started_line(&config, &compiled, &options);
    let server = build_server(compiled, &config, &options).map_err(|e| {
        ConfigErrors(vec![
            config.error_at("servers", format!("cannot start the listeners: {e}"))
        ])
    })?;
    if let Some(path) = &options.pid_file {
        pid_file::write(path).map_err(|e| {
            ConfigErrors(vec![config.error_at(
                "pid_file",
                format!("cannot write the pid file {}: {e}", path.display()),
            )])
        })?;
    }
    tracing::info!("{started}");
    server.run(pingora_core::server::RunArgs::default());
    // SIGINT (pingora's fast shutdown) returns here; SIGTERM's drain exits in `shutdown`.
    if let Some(path) = &options.pid_file {
        pid_file::remove(path);
    }
    std::process::exit(0)
}

/// The one line certgate logs when it starts: its version, the file, what listens where
/// for which servers, the upstreams (pingora's own start-up lines are debug).
fn started_line(config: &Config, compiled: &Compiled, options: &RunOptions) -> String {
    let join = |items: Vec<String>, separator: &str| items.join(separator);
    let listeners = compiled
        .listeners
        .iter()
        .map(|group| {
            let names = group
                .servers
                .iter()
                .filter_map(|&i| compiled.servers.get(i))
                .map(|server| server.name.clone())
                .collect();
            format!("{} ({})", group.addr, join(names, ", "))
        })
        .collect();
    let upstreams = config
        .upstreams
        .iter()
        .map(|(name, upstream)| {
            let servers = upstream
                .servers
                .iter()
                .map(|server| server.address.clone())
                .collect();
            format!("{name} ({})", join(servers, " "))
        })
        .collect();
    // The absolute path: "which gateway.yaml?" is the first question when reading a log.
    let file = std::fs::canonicalize(&config.file).unwrap_or_else(|_| config.file.clone());
    let mut line = format!(
        "certgate started (version {}): config {}; listening on {}; upstreams {}",
        env!("CARGO_PKG_VERSION"),
        file.display(),
        join(listeners, ", "),
        join(upstreams, ", ")
    );
    if let Some(admin) = &config.admin {
        line.push_str(&format!("; admin on {}", admin.listen));
    }
    if options.watch || config.watch {
        line.push_str("; reloading on file change");
    }
    if let Some(path) = &options.pid_file {
        line.push_str(&format!("; pid file {}", path.display()));
    }
    line
}

/// Builds the pingora server with one proxy service listening on every configured address.
pub fn build_server(
    compiled: Compiled,
    config: &Config,
    options: &RunOptions,
) -> pingora_core::Result<Server> {
    let threads = if options.threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        options.threads
    };
    let conf = ServerConf {
        // pingora's own services (admin, background tasks) need one thread each; the
        // proxy runs on `threads` workers of its own (`listener`).
        threads: 1,
        upstream_keepalive_pool_size: compiled.keepalive_pool_size,
        work_stealing: false,
        // pingora sleeps this long after SIGTERM before dropping what still runs;
        // `shutdown::DrainOnTerm` exits earlier once nothing is in flight.
        grace_period_seconds: Some(config.shutdown_grace.as_secs_f64().ceil() as u64 + 1),
        graceful_shutdown_timeout_seconds: Some(1),
        // pingora's `pid_file` is for its daemon mode, which certgate does not use: the
        // pid file is certgate's own (`pid_file`).
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let expiry = metrics::expiry_entries(config, &compiled);
    let shared = Shared::new(compiled, &config.log);
    shared.metrics.set_expiry(&expiry);
    let _ = shared.fixed_at_start.set(FixedAtStart {
        admin: config.admin.as_ref().map(|a| a.listen),
        shutdown_grace: config.shutdown_grace,
        keepalive_timeout: config.keepalive_timeout,
        watch: (!options.watch).then_some(config.watch),
        stderr_format: config.log.stderr_format,
    });
    let state = shared.current.load();
    let mut listeners = Vec::new();
    for group in &state.compiled.listeners {
        let listener = listener::Listener::bind(&shared, group).map_err(|e| {
            pingora_core::Error::because(
                pingora_core::ErrorType::BindError,
                group.addr.to_string(),
                e,
            )
        })?;
        listeners.push(listener);
    }
    drop(state);
    let reload = server.add_service(
        pingora_core::services::background::GenBackgroundService::new(
            "reload on SIGHUP".to_string(),
            Arc::new(reload::ReloadOnHangup {
                shared: shared.clone(),
                path: config.file.clone(),
                status: options.pid_file.as_deref().map(pid_file::status_path),
            }),
        ),
    );
    let reopen = server.add_service(
        pingora_core::services::background::GenBackgroundService::new(
            "reopen access log on SIGUSR1".to_string(),
            Arc::new(access_log::ReopenOnUsr1 {
                log: shared.access_log.clone(),
            }),
        ),
    );
    server.add_service(
        pingora_core::services::background::GenBackgroundService::new(
            "drain on SIGTERM".to_string(),
            Arc::new(shutdown::DrainOnTerm {
                shared: shared.clone(),
                grace: config.shutdown_grace,
                pid_file: options.pid_file.clone(),
            }),
        ),
    );
    if let Some(admin) = &config.admin {
        let mut service = pingora_core::services::listening::Service::new(
            "admin".to_string(),
            admin::Admin::new(shared.clone()),
        );
        service.add_tcp(&admin.listen.to_string());
        server.add_service(service);
    }
    server.add_service(pingora_core::services::background::background_service(
        "health checks",
        health::HealthChecks::new(shared.clone()),
    ));
    let watch = (options.watch || config.watch).then(|| {
        server.add_service(
            pingora_core::services::background::GenBackgroundService::new(
                "reload on file change".to_string(),
                Arc::new(watch::WatchFiles::new(shared.clone(), config)),
            ),
        )
    });
    // Clients are let in only once SIGHUP and SIGUSR1 are handled (and, with `watch`,
    // the files are watched).
    let gateway = server.add_service(listener::GatewayListeners::new(
        shared.clone(),
        listeners,
        threads,
        config.keepalive_timeout,
    ));
    gateway.add_dependency(&reload);
    gateway.add_dependency(&reopen);
    if let Some(watch) = &watch {
        gateway.add_dependency(watch);
    }
    Ok(server)
}
