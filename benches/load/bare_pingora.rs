//! A bare pingora reverse proxy: TLS on one port, every request to one plain-HTTP
//! upstream, no routing, identity, header rewriting, metrics or logging.
//!
//! `run.py --systems certgate,nginx,haproxy,bare-pingora` runs it beside certgate, so the
//! report shows what pingora costs by itself and what certgate adds on top. It is set up
//! the way certgate runs pingora: two worker threads without work stealing, aws-lc-rs,
//! mimalloc, a pool of 128 idle upstream connections.

use std::net::SocketAddr;

use async_trait::async_trait;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, cert, key, upstream] = args.as_slice() else {
        eprintln!("usage: bare-pingora LISTEN CERT KEY UPSTREAM");
        std::process::exit(2);
    };
    let upstream: SocketAddr = match upstream.parse() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("bare-pingora: upstream {upstream}: {e}");
            std::process::exit(2);
        }
    };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let conf = ServerConf {
        threads: 2,
        work_stealing: false,
        upstream_keepalive_pool_size: 128,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let mut proxy = http_proxy_service(&server.configuration, Bare { upstream });
    let mut tls = match TlsSettings::intermediate(cert, key) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("bare-pingora: {cert}, {key}: {e}");
            std::process::exit(2);
        }
    };
    tls.enable_h2();
    proxy.add_tls_with_settings(listen, None, tls);
    server.add_service(proxy);
    server.run_forever();
}
