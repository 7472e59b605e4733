//! The client-facing listeners: sockets, worker threads, accept loops, TLS handshakes, and
//! the wait for each next HTTP/1.x request on a connection.
//!
//! Each worker thread runs its own single-threaded runtime and its own accept loop on every
//! listen address, so a connection is served by the thread whose I/O driver watches its
//! socket, like nginx's worker processes. (pingora's listening service accepts on one
//! runtime and hands each connection to a random one, so every read on half of the
//! connections was a cross-thread wake-up.) The rustls configuration of each address is
//! built here from the config (`tls.protocols`, `tls.session_resumption`, ALPN, client
//! authentication) and swapped on reload; the HTTP side is pingora's `HttpProxy`.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ServerApp};
use pingora::listeners::tls::Acceptor;
use pingora::listeners::TlsAccept;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::server::handshake_with_callback;
use pingora::protocols::tls::{SslDigest, TlsRef, TlsStream, ALPN};
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl,
    TimingDigest, UniqueID, UniqueIDType,
};
use pingora::proxy::HttpProxy;
use pingora::server::{ListenFds, ShutdownWatch};

use crate::compile::ListenerGroup;
use crate::service::Gateway;
use crate::Shared;

/// As pingora's listener: a client gets this long to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// The TLS acceptor of one listen address, replaced on every configuration swap.
pub(crate) type AcceptorSlot = ArcSwap<Acceptor>;

/// One listen address.
pub struct Listener {
    addr: SocketAddr,
    /// Bound at startup (so a busy address is reported then), listening once the service
    /// starts.
    socket: socket2::Socket,
    acceptor: Arc<AcceptorSlot>,
    hook: Box<dyn TlsAccept + Send + Sync>,
}

impl Listener {
    /// Binds `group.addr` and builds its TLS acceptor from the current configuration.
    pub fn bind(shared: &Arc<Shared>, group: &ListenerGroup) -> std::io::Result<Listener> {
        let socket = bind(group.addr)?;
        let state = shared.current.load();
        let config = crate::tls::server_config(shared, &state.compiled, group)
            .map_err(|e| std::io::Error::other(format!("TLS settings: {e}")))?;
        let acceptor = Arc::new(ArcSwap::from_pointee(Acceptor::from_server_config(config)));
        shared.register_acceptor(group.addr, Arc::downgrade(&acceptor));
        Ok(Listener {
            addr: group.addr,
            socket,
            acceptor,
            hook: Box::new(crate::tls::handshake_hook(shared, group.addr)),
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
            Ok(config) => slot.store(Arc::new(Acceptor::from_server_config(config))),
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
    app: Arc<HttpProxy<Gateway>>,
    listeners: Vec<Arc<Listener>>,
    workers: usize,
    idle_timeout: Duration,
}

impl GatewayListeners {
    /// `idle_timeout` is `keepalive_timeout`: how long a connection may wait for a request.
    pub fn new(
        app: HttpProxy<Gateway>,
        listeners: Vec<Listener>,
        workers: usize,
        idle_timeout: Duration,
    ) -> Self {
        GatewayListeners {
            app: Arc::new(app),
            listeners: listeners.into_iter().map(Arc::new).collect(),
            workers: workers.max(1),
            idle_timeout,
        }
    }
}

#[async_trait]
impl pingora::services::Service for GatewayListeners {
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
                app: self.app.clone(),
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
    app: Arc<HttpProxy<Gateway>>,
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
                tokio::spawn(serve(
                    tcp,
                    peer,
                    listener.clone(),
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

/// One client connection: TLS handshake, then HTTP requests until the connection ends.
/// `_open` counts it in the worker's load until then. (Passed in rather than held by a
/// wrapping `async` block, which would store this whole future twice.)
async fn serve(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    listener: Arc<Listener>,
    (worker, _open): (Arc<Worker>, OpenConnection),
    shutdown: ShutdownWatch,
) {
    let mut stream = L4Stream::from(tcp);
    if let Err(e) = stream.set_nodelay() {
        tracing::debug!(%peer, "TCP_NODELAY: {e}");
    }
    let digest = SocketDigest::from_raw_fd(stream.as_raw_fd());
    let _ = digest.peer_addr.set(Some(peer.into()));
    stream.set_socket_digest(digest);

    let acceptor = listener.acceptor.load_full();
    let (stream, buffer_writes) = ClientSocket::new(stream);
    // Boxed, and so is the stream it yields: both are large (the stream ~5 KB) and would
    // otherwise stay inline in this task's allocation for the connection's life.
    let handshake = Box::pin(async {
        handshake_with_callback(&acceptor, stream, listener.hook.as_ref())
            .await
            .map(|tls| Box::new(ReadAhead::new(tls)))
    });
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%peer, listen = %listener.addr, "TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            tracing::info!(%peer, listen = %listener.addr, "TLS handshake timed out");
            return;
        }
    };
    drop(acceptor);
    buffer_writes.store(true, Ordering::Relaxed);
    if matches!(tls.selected_alpn_proto(), Some(ALPN::H2)) {
        // pingora runs the whole HTTP/2 connection and closes it after `keepalive_timeout`
        // with no stream open (`HttpServerOptions::h2_idle_timeout`).
        worker.app.process_new(tls, &shutdown).await;
        return;
    }
    serve_http1(tls, &worker, shutdown).await;
}

/// The HTTP/1.x requests of one connection, as pingora's own loop serves them, except that
/// between requests the connection waits here, holding only its TLS stream. pingora's
/// per-request state (its request future with the whole proxy path inline, tens of KB)
/// exists only once a request's first bytes have arrived, so an idle connection costs
/// what its TLS session and socket buffers cost.
async fn serve_http1(mut stream: Box<ReadAhead>, worker: &Worker, mut shutdown: ShutdownWatch) {
    let app = &worker.app;
    let mut settings: Option<HttpPersistentSettings> = None;
    // Boxed: held inline, it lived across the whole request and pushed every connection's
    // task into the next allocation size class (~0.5 KB more per idle connection).
    let mut idle = Box::pin(tokio::time::sleep(worker.idle_timeout));
    loop {
        if !next_request(
            &mut stream,
            idle.as_mut(),
            worker.idle_timeout,
            &mut shutdown,
        )
        .await
        {
            return;
        }
        let mut session = ServerSession::new_http1(stream);
        match settings.take() {
            Some(settings) => settings.apply_to_session(&mut session),
            None => {
                // What pingora's loop gives the first request of a connection. (The wait
                // itself is `next_request`'s; pingora reads 0 seconds as "no timeout".)
                let seconds = worker.idle_timeout.as_secs().max(1);
                session.set_keepalive((!*shutdown.borrow()).then_some(seconds));
                session.set_keepalive_reuses_remaining(
                    app.server_options()
                        .and_then(|options| options.keepalive_request_limit),
                );
            }
        }
        let Some(reused) = app.process_new_http(session, &shutdown).await else {
            return;
        };
        let (next, persistent) = reused.consume();
        settings = persistent;
        // pingora hands back the stream it was given. HTTP/1.1 pipelining, where bytes of
        // the next request would already sit in `settings` and waiting for more here would
        // stall them, is never turned on.
        if !next.as_any().is::<ReadAhead>() {
            tracing::debug!("pingora returned a stream of another type; closing it");
            return;
        }
        stream = match next.into_any().downcast::<ReadAhead>() {
            Ok(stream) => stream,
            Err(_) => return,
        };
    }
}

/// Waits for the first byte of the client's next request. False when the client closed
/// the connection, it stayed idle longer than `idle_timeout` (`keepalive_timeout`), or the
/// gateway is shutting down (idle keep-alive connections close then, as nginx closes them).
///
/// `idle` is the connection's one timer, armed once and moved on only when it fires. A
/// fresh timer for every wait made tokio wake its own I/O driver (an `eventfd` write) on
/// 0.64 of keep-alive requests under load; this one fires at most once per
/// `idle_timeout` of a busy connection, and then waits on until this wait's own deadline.
async fn next_request(
    stream: &mut ReadAhead,
    mut idle: std::pin::Pin<&mut tokio::time::Sleep>,
    idle_timeout: Duration,
    shutdown: &mut ShutdownWatch,
) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    let deadline = tokio::time::Instant::now() + idle_timeout;
    loop {
        tokio::select! {
            biased;
            arrived = stream.read_ahead() => return matches!(arrived, Ok(true)),
            () = idle.as_mut() => {
                if tokio::time::Instant::now() >= deadline {
                    return false;
                }
                // Armed by an earlier wait: idle time counts from this wait's start.
                idle.as_mut().reset(deadline);
            }
            _ = shutdown.wait_for(|stopping| *stopping) => return false,
        }
    }
}

/// The client's TLS stream with room for one byte read ahead: waiting for a request is a
/// one-byte read, and pingora then reads that byte first.
///
/// Small writes are held until the next flush, so a response header and a small body,
/// which pingora writes separately, leave as one TLS record rather than two, as nginx
/// sends them: one record to seal here, and for the client to open, instead of two.
#[derive(Debug)]
struct ReadAhead {
    tls: TlsStream<ClientSocket>,
    ahead: Option<u8>,
    /// Plain text written but not yet handed to TLS; empty, and unallocated, between
    /// responses.
    held: Vec<u8>,
}

/// Writes are held while the held bytes stay within this; a larger write first sends
/// what is held, then goes straight to TLS. pingora flushes at the end of every
/// response, after each chunk of a chunked or close-delimited body, and after 1xx and
/// upgrade responses; only a body of known length is held between its writes (as
/// pingora's own stream holds it), by up to this many bytes.
const HOLD_LIMIT: usize = 4096;

impl ReadAhead {
    fn new(tls: TlsStream<ClientSocket>) -> Self {
        ReadAhead {
            tls,
            ahead: None,
            held: Vec::new(),
        }
    }

    /// Hands the held bytes to TLS, before anything else is written.
    fn poll_write_held(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        use tokio::io::AsyncWrite as _;
        while !self.held.is_empty() {
            match std::pin::Pin::new(&mut self.tls).poll_write(cx, &self.held) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    self.held.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads one byte and keeps it: true when one arrived, false at the end of the stream.
    async fn read_ahead(&mut self) -> std::io::Result<bool> {
        use tokio::io::AsyncReadExt;
        if self.ahead.is_some() {
            return Ok(true);
        }
        let mut byte = [0u8; 1];
        let n = self.tls.read(&mut byte).await?;
        if n == 1 {
            self.ahead = Some(byte[0]);
        }
        Ok(n == 1)
    }
}

impl tokio::io::AsyncRead for ReadAhead {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::task::Poll;
        let Some(byte) = self.ahead.filter(|_| buf.remaining() > 0) else {
            return std::pin::Pin::new(&mut self.tls).poll_read(cx, buf);
        };
        self.ahead = None;
        buf.put_slice(&[byte]);
        // The rest of the request is usually decrypted already: hand it over in the same
        // read, so pingora parses the header once. An error or "nothing yet" shows up on
        // the next read.
        let _ = std::pin::Pin::new(&mut self.tls).poll_read(cx, buf);
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for ReadAhead {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.held.len() + buf.len() <= HOLD_LIMIT {
            if this.held.capacity() == 0 {
                this.held.reserve_exact(HOLD_LIMIT);
            }
            this.held.extend_from_slice(buf);
            return std::task::Poll::Ready(Ok(buf.len()));
        }
        std::task::ready!(this.poll_write_held(cx))?;
        std::pin::Pin::new(&mut this.tls).poll_write(cx, buf)
    }

    // h2 writes its frames as one vector when the stream takes vectors (measured: about
    // 6 % less CPU per HTTP/2 request than one write per frame); it batches them itself.
    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_write_held(cx))?;
        std::pin::Pin::new(&mut this.tls).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tls.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_write_held(cx))?;
        // An idle connection keeps no write buffer.
        this.held = Vec::new();
        std::pin::Pin::new(&mut this.tls).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_write_held(cx))?;
        std::pin::Pin::new(&mut this.tls).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for ReadAhead {
    async fn shutdown(&mut self) {
        // Whatever was held goes out before the close_notify; a failure here is the
        // peer's, and the close goes ahead as it would have.
        let _ = std::future::poll_fn(|cx| self.poll_write_held(cx)).await;
        Shutdown::shutdown(&mut self.tls).await;
    }
}

impl UniqueID for ReadAhead {
    fn id(&self) -> UniqueIDType {
        self.tls.id()
    }
}

impl Ssl for ReadAhead {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.tls.get_ssl()
    }
    fn get_ssl_digest(&self) -> Option<Arc<SslDigest>> {
        self.tls.get_ssl_digest()
    }
    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.tls.selected_alpn_proto()
    }
}

#[async_trait]
impl Peek for ReadAhead {}

impl GetTimingDigest for ReadAhead {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.tls.get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.tls.get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.tls.get_write_pending_time()
    }
}

impl GetProxyDigest for ReadAhead {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.tls.get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.tls.set_proxy_digest(digest)
    }
}

impl GetSocketDigest for ReadAhead {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.tls.get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.tls.set_socket_digest(digest)
    }
}

/// pingora's default write buffer below TLS on listeners: TLS records written before a
/// flush (a response's header and body) leave in one segment.
const WRITE_BUFFER: usize = 1460;

/// A client socket with pingora's small write buffer once the handshake is done. pingora
/// sets its L4 buffers only on the sockets its own listeners accept; without one, every TLS
/// record of a response was a `sendto` of its own. During the handshake writes go straight
/// out: a failed handshake ends without a flush, and its alert must still reach the client.
#[derive(Debug)]
struct ClientSocket {
    io: tokio::io::BufWriter<L4Stream>,
    buffered: Arc<AtomicBool>,
}

impl ClientSocket {
    /// The socket, and the switch that turns write buffering on.
    fn new(stream: L4Stream) -> (Self, Arc<AtomicBool>) {
        let buffered = Arc::new(AtomicBool::new(false));
        let socket = ClientSocket {
            io: tokio::io::BufWriter::with_capacity(WRITE_BUFFER, stream),
            buffered: buffered.clone(),
        };
        (socket, buffered)
    }
}

impl tokio::io::AsyncRead for ClientSocket {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for ClientSocket {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.buffered.load(Ordering::Relaxed) {
            std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
        } else {
            // Nothing is buffered before the switch, so writing past the buffer is in order.
            std::pin::Pin::new(self.io.get_mut()).poll_write(cx, buf)
        }
    }

    // rustls hands over several TLS records at once.
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.buffered.load(Ordering::Relaxed) {
            std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
        } else {
            std::pin::Pin::new(self.io.get_mut()).poll_write_vectored(cx, bufs)
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for ClientSocket {
    async fn shutdown(&mut self) {
        use tokio::io::AsyncWriteExt;
        let _ = self.io.flush().await;
        Shutdown::shutdown(self.io.get_mut()).await;
    }
}

impl UniqueID for ClientSocket {
    fn id(&self) -> UniqueIDType {
        self.io.get_ref().id()
    }
}

impl Ssl for ClientSocket {}

#[async_trait]
impl Peek for ClientSocket {}

impl GetTimingDigest for ClientSocket {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.io.get_ref().get_timing_digest()
    }
    fn get_read_pending_time(&self) -> Duration {
        self.io.get_ref().get_read_pending_time()
    }
    fn get_write_pending_time(&self) -> Duration {
        self.io.get_ref().get_write_pending_time()
    }
}

impl GetProxyDigest for ClientSocket {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.io.get_ref().get_proxy_digest()
    }
    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.io.get_mut().set_proxy_digest(digest)
    }
}

impl GetSocketDigest for ClientSocket {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.io.get_ref().get_socket_digest()
    }
    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.io.get_mut().set_socket_digest(digest)
    }
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
