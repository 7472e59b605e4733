//! A bare hyper reverse proxy: TLS (tokio-rustls) on one port, every request to one
//! plain-HTTP upstream through hyper's pooled client, no routing, identity, header
//! rewriting, metrics or logging.
//!
//! It is `bare-pingora` with pingora's HTTP layer swapped for hyper's, everything else
//! alike: two threads, each with its own current-thread runtime, listener
//! (`SO_REUSEPORT`) and upstream pool; aws-lc-rs; mimalloc; ALPN h2 and http/1.1.
//! `run.py --systems ...,bare-pingora,bare-hyper` puts the two side by side, which says
//! how much of certgate's per-request cost is pingora's HTTP layer and how much is
//! rustls, tokio and the kernel.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpSocket;
use tokio_rustls::TlsAcceptor;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const THREADS: usize = 2;

type Upstream = Client<HttpConnector, Incoming>;

type Answer = Response<Either<Incoming, Empty<Bytes>>>;

async fn forward(
    client: Upstream,
    authority: Arc<str>,
    mut request: Request<Incoming>,
) -> Result<Answer, Infallible> {
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    match format!("http://{authority}{path}").parse() {
        Ok(uri) => *request.uri_mut() = uri,
        Err(_) => return Ok(bad_gateway()),
    }
    // The upstream speaks HTTP/1.1 whatever the client spoke.
    *request.version_mut() = hyper::Version::HTTP_11;
    match client.request(request).await {
        Ok(response) => Ok(response.map(Either::Left)),
        Err(_) => Ok(bad_gateway()),
    }
}

fn bad_gateway() -> Answer {
    let mut answer = Response::new(Either::Right(Empty::new()));
    *answer.status_mut() = hyper::StatusCode::BAD_GATEWAY;
    answer
}

async fn serve(listen: SocketAddr, acceptor: TlsAcceptor, authority: Arc<str>) {
    let socket = match TcpSocket::new_v4() {
        Ok(socket) => socket,
        Err(e) => {
            eprintln!("bare-hyper: socket: {e}");
            std::process::exit(1);
        }
    };
    let listener = socket
        .set_reuseport(true)
        .and_then(|()| socket.set_reuseaddr(true))
        .and_then(|()| socket.bind(listen))
        .and_then(|()| socket.listen(1024));
    let listener = match listener {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("bare-hyper: listen {listen}: {e}");
            std::process::exit(1);
        }
    };
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(128)
        .build(connector);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            // Out of descriptors, most likely: wait rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let client = client.clone();
        let authority = authority.clone();
        tokio::task::spawn_local(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service =
                service_fn(move |request| forward(client.clone(), authority.clone(), request));
            let _ = auto::Builder::new(LocalExecutor)
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// Spawns HTTP/2 stream tasks on the connection's own thread, as certgate does.
#[derive(Clone, Copy)]
struct LocalExecutor;

impl<F> hyper::rt::Executor<F> for LocalExecutor
where
    F: std::future::Future + 'static,
{
    fn execute(&self, future: F) {
        tokio::task::spawn_local(future);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, cert, key, upstream] = args.as_slice() else {
        eprintln!("usage: bare-hyper LISTEN CERT KEY UPSTREAM");
        std::process::exit(2);
    };
    let (listen, upstream): (SocketAddr, SocketAddr) = match (listen.parse(), upstream.parse()) {
        (Ok(l), Ok(u)) => (l, u),
        _ => {
            eprintln!("bare-hyper: LISTEN and UPSTREAM are IP:PORT");
            std::process::exit(2);
        }
    };
    let certs: Result<Vec<CertificateDer<'static>>, _> = match CertificateDer::pem_file_iter(cert) {
        Ok(iter) => iter.collect(),
        Err(e) => {
            eprintln!("bare-hyper: {cert}: {e}");
            std::process::exit(2);
        }
    };
    let (certs, key) = match (certs, PrivateKeyDer::from_pem_file(key)) {
        (Ok(certs), Ok(key)) => (certs, key),
        _ => {
            eprintln!("bare-hyper: cannot read {cert} or {key}");
            std::process::exit(2);
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key));
    let mut config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("bare-hyper: TLS: {e}");
            std::process::exit(2);
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let authority: Arc<str> = upstream.to_string().into();

    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let acceptor = acceptor.clone();
            let authority = authority.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let Ok(runtime) = runtime else {
                    eprintln!("bare-hyper: cannot start a runtime");
                    std::process::exit(1);
                };
                let local = tokio::task::LocalSet::new();
                local.block_on(&runtime, serve(listen, acceptor, authority));
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}
