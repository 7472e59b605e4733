//! The downstream TLS side of a listener: which server certificate to present (SNI),
//! which client-certificate verifier to run in the handshake, and the per-connection
//! identity computed once when the handshake completes.

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use certgate_config::{OnFailure, TlsProtocol, VerifyMode};
use certgate_identity::{ClientCert, Identity, PreparedHeaders, TlsInfo, VerifyResult};
use certgate_pki::{ClientAuthMode, ClientAuthVerifier};
use rustls::pki_types::UnixTime;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ServerConfig, ServerConnection};

use crate::compile::{Compiled, CompiledServer, ListenerGroup};
use crate::Shared;

/// What the gateway knows about one TLS connection, computed once after the handshake and
/// read by every request on the connection (HTTP/1.1 keep-alive and HTTP/2 streams alike).
pub struct ConnectionIdentity {
    /// Index of the server chosen by SNI, in the configuration generation below.
    pub server: usize,
    pub generation: u64,
    /// The listen address the connection arrived on.
    pub listen: Option<std::net::SocketAddr>,
    pub sni: Option<String>,
    pub verify: VerifyResult,
    /// The `X509_V_ERR_*` code behind a `FAILED` result (`optional_no_ca` forwards only some).
    pub verify_code: Option<i32>,
    pub cert: Option<Arc<ClientCert>>,
    pub protocol: String,
    pub cipher: String,
    /// Identity and its header values, prepared at the connection's first request
    /// (the peer address is not known to the TLS callback).
    prepared: OnceLock<(Identity, PreparedHeaders)>,
    /// Keeps `certgate_connections_active` counted while the connection lives.
    active: Option<Arc<crate::metrics::ActiveConnection>>,
    /// The identity of the last signed URL used on this connection: a player's Range
    /// requests reuse it (certificate parsed and headers prepared once), after their
    /// signature has been checked again.
    last_signed: std::sync::Mutex<Option<Arc<ConnectionIdentity>>>,
}

impl ConnectionIdentity {
    /// The same connection facts re-bound to another server after a reload.
    pub fn for_server(&self, server: usize, generation: u64) -> ConnectionIdentity {
        ConnectionIdentity {
            server,
            generation,
            listen: self.listen,
            sni: self.sni.clone(),
            verify: self.verify.clone(),
            verify_code: self.verify_code,
            cert: self.cert.clone(),
            protocol: self.protocol.clone(),
            cipher: self.cipher.clone(),
            prepared: OnceLock::new(),
            active: self.active.clone(),
            last_signed: Default::default(),
        }
    }

    /// The identity of a request carrying a valid signed URL whose certificate is
    /// `leaf_der` (already authenticated by the URL's signature): the one the previous
    /// signed request on this connection used when it is the same certificate, server and
    /// configuration generation, else parsed anew.
    pub fn signed_identity(
        &self,
        leaf_der: &[u8],
        server: usize,
        generation: u64,
    ) -> Result<Arc<ConnectionIdentity>, certgate_identity::IdentityError> {
        if let Ok(last) = self.last_signed.lock() {
            if let Some(last) = last.as_ref().filter(|last| {
                last.server == server
                    && last.generation == generation
                    && last.cert.as_ref().is_some_and(|c| c.leaf_der() == leaf_der)
            }) {
                return Ok(last.clone());
            }
        }
        let cert = Arc::new(ClientCert::from_chain(&[leaf_der])?);
        let identity = Arc::new(self.signed(cert, server, generation));
        if let Ok(mut last) = self.last_signed.lock() {
            *last = Some(identity.clone());
        }
        Ok(identity)
    }

    /// The identity of a request carrying a valid signed URL: this connection's TLS facts
    /// (protocol, cipher, SNI, peer address) with the certificate that minted the URL and
    /// `$ssl_client_verify` = `SIGNED`.
    pub fn signed(
        &self,
        cert: Arc<ClientCert>,
        server: usize,
        generation: u64,
    ) -> ConnectionIdentity {
        ConnectionIdentity {
            server,
            generation,
            listen: self.listen,
            sni: self.sni.clone(),
            verify: VerifyResult::Signed,
            verify_code: None,
            cert: Some(cert),
            protocol: self.protocol.clone(),
            cipher: self.cipher.clone(),
            prepared: OnceLock::new(),
            active: self.active.clone(),
            last_signed: Default::default(),
        }
    }

    pub fn cert_sent(&self) -> bool {
        self.cert.is_some() || !matches!(self.verify, VerifyResult::None)
    }

    /// The identity and prepared headers, built on first use with the peer address.
    pub fn prepared(
        &self,
        server: &CompiledServer,
        remote: Option<std::net::SocketAddr>,
    ) -> &(Identity, PreparedHeaders) {
        self.prepared.get_or_init(|| {
            let (remote_addr, remote_port) = match remote {
                Some(addr) => (addr.ip(), addr.port()),
                None => (std::net::IpAddr::from([0, 0, 0, 0]), 0),
            };
            let identity = Identity {
                verify: self.verify.clone(),
                cert: self.cert.clone(),
                tls: TlsInfo {
                    protocol: self.protocol.clone(),
                    cipher: self.cipher.clone(),
                    server_name: self.sni.clone(),
                    remote_addr,
                    remote_port,
                },
            };
            let headers = server
                .header_plan
                .prepare(&identity, crate::compile::unix_now());
            (identity, headers)
        })
    }
}

/// Picks the server for a name within one listen address, as nginx picks a
/// `server` block: exact name, then `*.suffix` wildcard, then the default server
/// (one without `server_names`), then the first server on the address.
pub fn select_server(compiled: &Compiled, group: &ListenerGroup, name: Option<&str>) -> usize {
    let first = group.servers.first().copied().unwrap_or(0);
    if let Some(name) = name {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        for &i in &group.servers {
            if compiled.servers[i].server_names.contains(&name) {
                return i;
            }
        }
        for &i in &group.servers {
            let wildcard = compiled.servers[i].server_names.iter().any(|n| {
                n.strip_prefix("*.").is_some_and(|suffix| {
                    name.len() > suffix.len() + 1
                        && name.ends_with(suffix)
                        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
                })
            });
            if wildcard {
                return i;
            }
        }
    }
    group
        .servers
        .iter()
        .copied()
        .find(|&i| compiled.servers[i].server_names.is_empty())
        .unwrap_or(first)
}

/// Presents the certificate of the server SNI selects, from the current configuration.
#[derive(Debug)]
struct SniResolver {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let state = self.shared.current.load();
        let compiled = &state.compiled;
        let group = compiled.listeners.iter().find(|g| g.addr == self.addr)?;
        let server = select_server(compiled, group, hello.server_name());
        Some(compiled.servers[server].certified_key.clone())
    }
}

/// Computes a connection's identity when its handshake completes (full or resumed): the
/// server SNI chose, the client chain verified against that server's CAs and CRLs, and the
/// parsed certificate. Also counts the handshake and the verification outcome.
pub(crate) struct Identify {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    certs: crate::cert_cache::ClientCertCache,
}

impl Identify {
    pub(crate) fn new(shared: &Arc<Shared>, addr: std::net::SocketAddr) -> Identify {
        Identify {
            shared: shared.clone(),
            addr,
            certs: Default::default(),
        }
    }

    /// `None` when the listen address is gone from the configuration (a reload that
    /// needs a restart is refused, so only in a race with shutdown).
    pub(crate) fn connection(&self, tls: &ServerConnection) -> Option<Arc<ConnectionIdentity>> {
        let state = self.shared.current.load();
        let compiled = &state.compiled;
        let group = compiled.listeners.iter().find(|g| g.addr == self.addr)?;
        let sni = tls.server_name();
        let server_index = select_server(compiled, group, sni);
        let server = &compiled.servers[server_index];
        let (verify, verify_code, cert) = match tls.peer_certificates() {
            None | Some([]) => (VerifyResult::None, None, None),
            Some(chain) => {
                // Verified on every handshake, resumed or not, so a CA or CRL change applies
                // to resumed sessions too (rustls does not re-run the verifier on resumption).
                let (verify, verify_code) = match &server.chain_verifier {
                    Some(verifier) => match verifier.verify(chain, UnixTime::now()) {
                        Ok(_) => (VerifyResult::Success, None),
                        Err(failure) => (
                            VerifyResult::Failed(failure.reason.to_string()),
                            Some(failure.code),
                        ),
                    },
                    None => (VerifyResult::None, None),
                };
                let cert = match self.certs.get_or_parse(chain) {
                    Ok(cert) => Some(cert),
                    Err(e) => {
                        tracing::info!(server = %server.name, "client certificate could not be parsed: {e}");
                        None
                    }
                };
                let (verify, verify_code) = match (verify, &cert) {
                    // A certificate we cannot parse is never treated as verified.
                    (VerifyResult::Success, None) => (
                        VerifyResult::Failed("unable to decode issuer public key".into()),
                        Some(certgate_pki::verify::codes::UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY),
                    ),
                    (v, _) => (v, verify_code),
                };
                (verify, verify_code, cert)
            }
        };
        let handles = state.handles.server(Some(server_index));
        handles.handshake_success.inc();
        match &verify {
            VerifyResult::Success => handles.verify_success.inc(),
            // Only requests are signed, never a handshake.
            VerifyResult::None | VerifyResult::Signed => handles.verify_none.inc(),
            VerifyResult::Failed(_) => handles.verify_failed(
                &state.handles.metrics,
                verify_code.map_or("", certgate_pki::verify::error_string),
            ),
        }
        let active = Some(Arc::new(crate::metrics::ActiveConnection::new(
            &handles.connections_active,
        )));
        let protocol = tls
            .protocol_version()
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let cipher = tls
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("");
        Some(Arc::new(ConnectionIdentity {
            server: server_index,
            generation: state.generation,
            listen: Some(self.addr),
            sni: sni.map(str::to_owned),
            verify,
            verify_code,
            cert,
            protocol: certgate_identity::openssl_protocol_name(protocol),
            cipher: certgate_identity::openssl_cipher_name(cipher),
            prepared: OnceLock::new(),
            active,
            last_signed: Default::default(),
        }))
    }
}

/// The chain verifier whose CA names a listener announces: the first server on the address
/// that verifies client certificates.
pub fn listener_chain_verifier(
    compiled: &Compiled,
    addr: std::net::SocketAddr,
) -> Option<Arc<certgate_pki::ChainVerifier>> {
    let group = compiled.listeners.iter().find(|g| g.addr == addr)?;
    group
        .servers
        .iter()
        .find_map(|&i| compiled.servers[i].chain_verifier.clone())
}

/// The rustls configuration of one listen address, from one configuration generation:
/// protocol versions, ALPN, session resumption (and its ticket keys) and the
/// client-certificate verifier; the
/// certificate is picked per handshake by SNI ([`SniResolver`]).
pub fn server_config(
    shared: &Arc<Shared>,
    compiled: &Compiled,
    group: &ListenerGroup,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let servers: Vec<&CompiledServer> = group
        .servers
        .iter()
        .map(|&i| &compiled.servers[i])
        .collect();
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = group
        .protocols
        .iter()
        .map(|p| match p {
            TlsProtocol::Tls12 => &rustls::version::TLS12,
            TlsProtocol::Tls13 => &rustls::version::TLS13,
        })
        .collect();
    let builder = ServerConfig::builder_with_provider(crate::crypto_provider())
        .with_protocol_versions(&versions)?;

    // A rustls listener has one verifier for all servers on the address. Failing the
    // handshake itself is only possible when a single server owns the address;
    // otherwise certificates are requested and each server's policy is applied after
    // the handshake, once SNI has chosen the server.
    let builder = match listener_chain_verifier(compiled, group.addr) {
        Some(verifier) => {
            let first = servers.iter().find(|s| s.chain_verifier.is_some());
            let mode = match first {
                Some(s)
                    if servers.len() == 1
                        && s.verify == VerifyMode::On
                        && s.on_failure == OnFailure::Handshake =>
                {
                    ClientAuthMode::Require
                }
                _ => ClientAuthMode::Request,
            };
            let verifier = Arc::new(ClientAuthVerifier::new(
                mode,
                Arc::new(ArcSwap::new(verifier)),
                crate::crypto_provider(),
            ));
            builder.with_client_cert_verifier(Arc::new(crate::tls_metrics::CountingVerifier {
                inner: verifier,
                shared: shared.clone(),
                addr: group.addr,
            }))
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(SniResolver {
        shared: shared.clone(),
        addr: group.addr,
    }));
    config.alpn_protocols = if servers.iter().any(|s| s.alpn_h2) {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    if !group.session_resumption {
        // No session cache and no tickets (rustls's default ticketer issues none): every
        // handshake is a full one, as nginx's `ssl_session_cache off; ssl_session_tickets off;`.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
    } else if let Some(keys) = &group.ticket_keys {
        // Stateless tickets sealed with `tls.session_ticket_keys`: any certgate process
        // given the same files resumes them (resumed handshakes still re-verify the client
        // chain in `Identify`). Without keys, rustls's in-memory session store: sessions
        // resume on this process only.
        config.ticketer = keys.clone();
    }
    Ok(Arc::new(config))
}
