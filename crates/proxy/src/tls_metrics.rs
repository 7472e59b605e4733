//! Counts handshakes refused for the client certificate (`on_failure: handshake`): rustls
//! aborts those before certgate's handshake callback runs, so the listener's verifier is
//! wrapped to see the refusal. Every decision is the wrapped verifier's.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use crate::Shared;

pub struct CountingVerifier {
    pub inner: Arc<dyn ClientCertVerifier>,
    pub shared: Arc<Shared>,
    pub addr: std::net::SocketAddr,
}

impl std::fmt::Debug for CountingVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingVerifier")
            .field("addr", &self.addr)
            .finish()
    }
}

impl CountingVerifier {
    fn count_refusal(&self, chain: &[CertificateDer<'_>], now: UnixTime) {
        let state = self.shared.current.load();
        let Some(group) = state
            .compiled
            .listeners
            .iter()
            .find(|g| g.addr == self.addr)
        else {
            return;
        };
        // Refusing in the handshake is only configured when one server owns the address.
        let index = group.servers.first().copied();
        let handles = state.handles.server(index);
        handles.handshake_failure.inc();
        // The wrapped verifier's error has lost OpenSSL's reason: ask the chain verifier again
        // (failure path only).
        let reason = index
            .and_then(|i| state.compiled.servers.get(i))
            .and_then(|s| s.chain_verifier.as_ref())
            .and_then(|v| v.verify(chain, now).err())
            .map_or("certificate rejected", |f| f.reason);
        handles.verify_failed(&state.handles.metrics, reason);
    }
}

impl ClientCertVerifier for CountingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let result = self
            .inner
            .verify_client_cert(end_entity, intermediates, now);
        if result.is_err() {
            let mut chain = Vec::with_capacity(1 + intermediates.len());
            chain.push(end_entity.clone());
            chain.extend(intermediates.iter().cloned());
            self.count_refusal(&chain, now);
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
