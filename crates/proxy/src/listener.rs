//! The accept phase: client-facing sockets, worker threads, accept loops, TLS handshakes
//! and each connection's identity.
//!
//! Each worker thread runs its own single-threaded runtime and its own accept loop on every
//! listen address, so a connection is served by the thread whose I/O driver watches its
//! socket, like nginx's worker processes. (pingora's listening service accepts on one
//! runtime and hands each connection to a random one, so every read on half of the
//! connections was a cross-thread wake-up.) The rustls configuration of each address is
//! built from the config (`tls.protocols`, `tls.session_resumption`, ALPN, client
//! authentication) and swapped on reload; after the handshake, [`crate::connection`] serves
//! the connection's requests.
//!
//! Before a client is authenticated it can only hold what the limits allow: at most
//! `max_connections` open connections per address (accepting pauses at the limit), and
//! `client_header_timeout` for the first byte, the handshake and the first request together.
//! Plain HTTP sent to the TLS port gets nginx's 400 page. What clients get wrong is counted
//! in `certgate_client_errors_total` and logged at `debug` only, so it cannot flood the log.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora_core::server::{ListenFds, ShutdownWatch};
use rustls::ServerConfig;

use crate::compile::ListenerGroup;
use crate::metrics::ClientError;
use crate::tls::Identify;
use crate::Shared;

/// The TLS configuration of one listen address, replaced on every configuration swap.
pub(crate) type AcceptorSlot = ArcSwap<ServerConfig>;

/// One listen address.
pub struct Listener {
    addr: SocketAddr,
    /// Bound at startup (so a busy address is reported then), listening once the service
    /// starts.
    socket: socket2::Socket,
    config: Arc<AcceptorSlot>,
    identify: Identify,
    /// Open connections on this address, for `max_connections`.
    open: AtomicUsize,
    /// Signalled when a connection on this address closes (an accept loop may be waiting).
    freed: tokio::sync::Notify,
    /// When accepting last paused at `max_connections` and said so (logged once a minute).
    paused_logged: std::sync::Mutex<Option<Instant>>,
}

impl Listener {
    /// Binds `group.addr` and builds its TLS configuration from the current one.
    pub fn bind(shared: &Arc<Shared>, group: &ListenerGroup) -> std::io::Result<Listener> {
        let socket = bind(group.addr)?;
        let state = shared.current.load();
        let config = crate::tls::server_config(shared, &state.compiled, group)
            .map_err(|e| std::io::Error::other(format!("TLS settings: {e}")))?;
        let config = Arc::new(ArcSwap::new(config));
        shared.register_acceptor(group.addr, Arc::downgrade(&config));
        Ok(Listener {
            addr: group.addr,
            socket,
            config,
            identify: Identify::new(shared, group.addr),
            open: AtomicUsize::new(0),
            freed: tokio::sync::Notify::new(),
            paused_logged: std::sync::Mutex::new(None),
        })
    }
}

/// A bound, non-blocking socket with `SO_REUSEADDR`, as nginx binds.
fn bind(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// nginx's default `listen ... backlog=511`.
const BACKLOG: i32 = 511;

/// Rebuilds the TLS acceptor of every listen address from a new configuration generation.
pub(crate) fn rebuild_acceptors(
    shared: &Arc<Shared>,
    compiled: &crate::Compiled,
    slots: &[(SocketAddr, Weak<AcceptorSlot>)],
) {
    for (addr, slot) in slots {
        let (Some(slot), Some(group)) = (
            slot.upgrade(),
            compiled.listeners.iter().find(|g| g.addr == *addr),
        ) else {
            continue;
        };
        match crate::tls::server_config(shared, compiled, group) {
            Ok(config) => slot.store(config),
            Err(e) => tracing::error!(
                listen = %addr,
                "cannot apply the new TLS settings, keeping the previous ones: {e}"
            ),
        }
    }
}

/// The pingora service that runs the worker threads. pingora gives it one thread of its
/// own, which only waits for shutdown.
pub struct GatewayListeners {
    shared: Arc<Shared>,
    listeners: Vec<Arc<Listener>>,
    workers: usize,
    idle_timeout: Duration,
}

impl GatewayListeners {
    /// `idle_timeout` is `keepalive_timeout`: how long a connection may wait for a request.
    pub fn new(
        shared: Arc<Shared>,
        listeners: Vec<Listener>,
        workers: usize,
        idle_timeout: Duration,
    ) -> Self {
        GatewayListeners {
            shared,
            listeners: listeners.into_iter().map(Arc::new).collect(),
            workers: workers.max(1),
            idle_timeout,
        }
    }
}

#[async_trait]
impl pingora_core::services::Service for GatewayListeners {
    async fn start_service(
        &mut self,
        _fds: Option<ListenFds>,
        shutdown: ShutdownWatch,
        _listeners_per_fd: usize,
    ) {
        let mut listening = Vec::new();
        for listener in &self.listeners {
            match listener.socket.listen(BACKLOG) {
                Ok(()) => listening.push(listener.clone()),
                Err(e) => {
                    // Bound at startup, so this is rare; serving without the address is
                    // not an option.
                    tracing::error!(listen = %listener.addr, "cannot listen: {e}");
                    std::process::exit(1);
                }
            }
        }
        let load = Arc::new(WorkerLoad::new(self.workers));
        for index in 0..self.workers {
            let worker = Arc::new(Worker {
                index,
                load: load.clone(),
                shared: self.shared.clone(),
                idle_timeout: self.idle_timeout,
            });
            let listeners = listening.clone();
            let shutdown = shutdown.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("certgate-w{index}"))
                .spawn(move || run_worker(worker, listeners, shutdown));
            if let Err(e) = spawned {
                tracing::error!("cannot start worker thread {index}: {e}");
            }
        }
        // The workers hold their own handles; dropping these lets the sockets close (new
        // connections refused) once every accept loop has stopped at shutdown.
        self.listeners.clear();
        drop(listening);
        let mut shutdown = shutdown;
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    }

    fn name(&self) -> &str {
        "certgate"
    }

    fn threads(&self) -> Option<usize> {
        Some(1)
    }
}

/// Open client connections per worker thread.
///
/// A worker holding more than its share waits a moment before its next accept, so the
/// others take the next connections, as nginx's `ngx_accept_disabled` does. Without it, a
/// burst of connections (64 clients starting at once) goes to whichever worker woke first
/// and stays there for the connections' life, leaving the other core idle.
struct WorkerLoad {
    open: Box<[AtomicUsize]>,
}

/// How long a worker over its share holds back before accepting anyway, so a busy or
/// stalled peer never delays a new connection by more than this.
const ACCEPT_DEFER: Duration = Duration::from_millis(1);

impl WorkerLoad {
    fn new(workers: usize) -> WorkerLoad {
        WorkerLoad {
            open: (0..workers).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// More than one connection above the least loaded other worker.
    fn over_share(&self, worker: usize) -> bool {
        let mine = self.open[worker].load(Ordering::Relaxed);
        self.open
            .iter()
            .enumerate()
            .any(|(other, open)| other != worker && open.load(Ordering::Relaxed) + 1 < mine)
    }

    fn opened(self: &Arc<Self>, worker: usize) -> OpenConnection {
        self.open[worker].fetch_add(1, Ordering::Relaxed);
        OpenConnection {
            load: self.clone(),
            worker,
        }
    }
}

/// One connection counted in [`WorkerLoad`] until dropped.
struct OpenConnection {
    load: Arc<WorkerLoad>,
    worker: usize,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.load.open[self.worker].fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the connections of one worker thread share.
struct Worker {
    index: usize,
    load: Arc<WorkerLoad>,
    shared: Arc<Shared>,
    idle_timeout: Duration,
}

fn run_worker(worker: Arc<Worker>, listeners: Vec<Arc<Listener>>, shutdown: ShutdownWatch) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start a worker runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        let mut loops = Vec::new();
        for listener in listeners {
            // Each worker registers its own handle on the socket with its own I/O driver.
            let socket = listener
                .socket
                .try_clone()
                .and_then(|s| tokio::net::TcpListener::from_std(s.into()));
            match socket {
                Ok(socket) => loops.push(tokio::spawn(accept_loop(
                    socket,
                    listener,
                    worker.clone(),
                    shutdown.clone(),
                ))),
                Err(e) => tracing::error!(listen = %listener.addr, "cannot accept: {e}"),
            }
        }
        for accept in loops {
            let _ = accept.await;
        }
        // Accepting has stopped (shutdown): keep serving the connections in flight until
        // the process exits.
        std::future::pending::<()>().await;
    });
}

async fn accept_loop(
    socket: tokio::net::TcpListener,
    listener: Arc<Listener>,
    worker: Arc<Worker>,
    mut shutdown: ShutdownWatch,
) {
    loop {
        if worker.load.over_share(worker.index) {
            tokio::time::sleep(ACCEPT_DEFER).await;
        }
        let limit = worker
            .shared
            .current
            .load()
            .compiled
            .client_limits
            .max_connections;
        if listener.open.load(Ordering::Relaxed) >= limit {
            let freed = listener.freed.notified();
            let mut freed = std::pin::pin!(freed);
            // Registered before the second look, so a close in between is not missed.
            freed.as_mut().enable();
            if listener.open.load(Ordering::Relaxed) >= limit {
                listener.paused(limit);
                tokio::select! {
                    () = freed => {}
                    // A reload may raise the limit; look again now and then.
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    changed = shutdown.changed() => {
                        if changed.is_err() || *shutdown.borrow() {
                            break;
                        }
                    }
                }
                continue;
            }
        }
        let accepted = tokio::select! {
            accepted = socket.accept() => accepted,
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
                continue;
            }
        };
        match accepted {
            Ok((tcp, peer)) => {
                let open = worker.load.opened(worker.index);
                let slot = ListenerSlot::take(&listener);
                tokio::spawn(serve(
                    tcp,
                    peer,
                    slot,
                    (worker.clone(), open),
                    shutdown.clone(),
                ));
            }
            Err(e) => {
                tracing::warn!(listen = %listener.addr, "accept() failed: {e}");
                // Out of descriptors (EMFILE, ENFILE): accept() fails at once until one is
                // freed, so pause rather than spin.
                if matches!(e.raw_os_error(), Some(23 | 24)) {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

impl Listener {
    /// Says, at most once a minute, that accepting paused at `max_connections`.
    fn paused(&self, limit: usize) {
        let Ok(mut last) = self.paused_logged.lock() else {
            return;
        };
        if last.is_some_and(|at| at.elapsed() < Duration::from_secs(60)) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(
            listen = %self.addr,
            "max_connections ({limit}) reached: not accepting until a connection closes"
        );
    }
}

/// One connection counted against its listener's `max_connections` until dropped.
struct ListenerSlot(Arc<Listener>);

impl ListenerSlot {
    fn take(listener: &Arc<Listener>) -> ListenerSlot {
        listener.open.fetch_add(1, Ordering::Relaxed);
        ListenerSlot(listener.clone())
    }
}

impl Drop for ListenerSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.freed.notify_one();
    }
}

/// TLS records start with the handshake content type (a ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// One client connection: TLS handshake, identity, then HTTP requests until it ends.
/// `_open` counts it in the worker's load until then. (Passed in rather than held by a
/// wrapping `async` block, which would store this whole future twice.)
async fn serve(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    slot: ListenerSlot,
    (worker, _open): (Arc<Worker>, OpenConnection),
    shutdown: ShutdownWatch,
) {
    let listener = &slot.0;
    let shared = &worker.shared;
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(%peer, "TCP_NODELAY: {e}");
    }
    let limits = shared.current.load().compiled.client_limits;
    // nginx's post-accept timeout: the first bytes, the handshake and (below, in
    // `connection`) the first request each get `client_header_timeout`.
    let deadline = tokio::time::Instant::now() + limits.client_header_timeout;
    let client_error = |kind: ClientError, detail: &dyn std::fmt::Display| {
        shared.metrics.client_errors.count(kind);
        tracing::debug!(%peer, listen = %listener.addr, kind = kind.label(), "{detail}");
    };

    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        // Closed or reset before sending anything: a port probe, not worth a line.
        Ok(_) => return,
        Err(_) => {
            return client_error(
                ClientError::HandshakeTimeout,
                &"nothing sent before client_header_timeout",
            );
        }
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        if first[0].is_ascii_uppercase() {
            client_error(
                ClientError::PlainHttp,
                &"plain HTTP request on the TLS port",
            );
            return crate::plain_http::answer(tcp, deadline, limits.max_header_bytes()).await;
        }
        return client_error(
            ClientError::NotTls,
            &format_args!("not TLS: first byte {:#04x}", first[0]),
        );
    }

    let acceptor = tokio_rustls::TlsAcceptor::from(listener.config.load_full());
    // Boxed: the handshake's state is large and would otherwise stay inline in this task's
    // allocation for the connection's life.
    let handshake = Box::pin(acceptor.accept(tcp));
    let tls = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            return client_error(
                ClientError::TlsHandshake,
                &format_args!("TLS handshake failed: {e}"),
            );
        }
        Err(_) => {
            return client_error(ClientError::HandshakeTimeout, &"TLS handshake timed out");
        }
    };
    drop(acceptor);
    let Some(identity) = listener.identify.connection(tls.get_ref().1) else {
        return;
    };
    crate::connection::serve(
        tls,
        identity,
        peer,
        worker.shared.clone(),
        crate::connection::Timeouts {
            idle: worker.idle_timeout,
            first_request: deadline,
            limits,
        },
        shutdown,
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_more_than_one_connection_ahead_lets_the_others_accept() {
        let load = Arc::new(WorkerLoad::new(2));
        // A burst: worker 0 wins the first accepts.
        let a = load.opened(0);
        assert!(!load.over_share(0), "one ahead is within the share");
        let b = load.opened(0);
        assert!(load.over_share(0), "two ahead: hold back");
        assert!(!load.over_share(1));
        let c = load.opened(1);
        assert!(!load.over_share(0));
        // Closed connections leave the count.
        drop((a, b));
        assert!(!load.over_share(1), "one ahead is within the share");
        let d = load.opened(1);
        assert!(load.over_share(1));
        drop((c, d));
        assert!(!load.over_share(0) && !load.over_share(1));
    }

    #[test]
    fn a_single_worker_always_accepts() {
        let load = Arc::new(WorkerLoad::new(1));
        let open: Vec<_> = (0..10).map(|_| load.opened(0)).collect();
        assert!(!load.over_share(0));
        drop(open);
    }
}
