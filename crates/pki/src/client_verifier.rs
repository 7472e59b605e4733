//! The rustls `ClientCertVerifier` certgate installs on its listeners: it asks for a client
//! certificate, names the `ca` subjects, always checks the CertificateVerify signature
//! (proof that the client holds the private key), and — only in [`ClientAuthMode::Require`]
//! — verifies the chain during the handshake with the current [`ChainVerifier`].
//!
//! The chain verifier sits behind an `ArcSwap`, so a reload changes the trust
//! configuration of listeners that are already running.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, ArcSwapOption};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, PeerMisbehaved,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer, UnixTime};

use crate::der;
use crate::verify::{codes, ChainVerifier, VerifyFailure};

/// How the handshake treats client certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuthMode {
    /// `verify: on` with `on_failure: handshake`: a certificate is mandatory and a chain
    /// that does not verify aborts the handshake with a TLS alert.
    Require,
    /// Every other mode: a certificate is asked for but optional, and any certificate
    /// whose CertificateVerify signature is valid is accepted. The proxy verifies the chain
    /// after the handshake (on every handshake, resumed ones included) and answers as
    /// nginx does.
    Request,
}

/// A rustls client-certificate verifier backed by a hot-swappable [`ChainVerifier`].
pub struct ClientAuthVerifier {
    mode: ClientAuthMode,
    chain: Arc<ArcSwap<ChainVerifier>>,
    provider: Arc<CryptoProvider>,
    hints: HintCache,
}

impl fmt::Debug for ClientAuthVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientAuthVerifier")
            .field("mode", &self.mode)
            .field("chain", &self.chain.load())
            .finish()
    }
}

impl ClientAuthVerifier {
    /// `provider` supplies the signature algorithms for CertificateVerify checks and the
    /// list of schemes offered to clients.
    pub fn new(
        mode: ClientAuthMode,
        chain: Arc<ArcSwap<ChainVerifier>>,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        ClientAuthVerifier {
            mode,
            chain,
            provider,
            hints: HintCache::default(),
        }
    }

    pub fn mode(&self) -> ClientAuthMode {
        self.mode
    }
}

/// The TLS alert-bearing error for a failed verification, by OpenSSL code.
fn certificate_error(failure: &VerifyFailure) -> CertificateError {
    use codes::*;
    match failure.code {
        CERT_HAS_EXPIRED => CertificateError::Expired,
        CERT_NOT_YET_VALID => CertificateError::NotValidYet,
        UNABLE_TO_GET_ISSUER_CERT
        | UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        | UNABLE_TO_VERIFY_LEAF_SIGNATURE
        | DEPTH_ZERO_SELF_SIGNED_CERT
        | SELF_SIGNED_CERT_IN_CHAIN
        | CERT_CHAIN_TOO_LONG => CertificateError::UnknownIssuer,
        CERT_REVOKED => CertificateError::Revoked,
        UNABLE_TO_GET_CRL
        | CRL_SIGNATURE_FAILURE
        | KEYUSAGE_NO_CRL_SIGN
        | DIFFERENT_CRL_SCOPE
        | UNHANDLED_CRITICAL_CRL_EXTENSION => CertificateError::UnknownRevocationStatus,
        CRL_HAS_EXPIRED | CRL_NOT_YET_VALID => CertificateError::ExpiredRevocationList,
        CERT_SIGNATURE_FAILURE => CertificateError::BadSignature,
        INVALID_PURPOSE => CertificateError::InvalidPurpose,
        UNHANDLED_CRITICAL_EXTENSION => CertificateError::UnhandledCriticalExtension,
        UNSPECIFIED => CertificateError::BadEncoding,
        _ => CertificateError::ApplicationVerificationFailure,
    }
}

/// Version and SubjectPublicKeyInfo of a certificate, read without webpki (which refuses
/// v1 certificates; OpenSSL-made client certificates are often v1).
fn cert_version_and_spki(
    cert: &CertificateDer<'_>,
) -> Result<(u32, SubjectPublicKeyInfoDer<'static>), Error> {
    let bad = || Error::InvalidCertificate(CertificateError::BadEncoding);
    let signed = der::signed(cert).ok_or_else(bad)?;
    let (version, _) = der::tbs_certificate_head(signed.tbs.content).ok_or_else(bad)?;
    // TBSCertificate: [0] version?, serial, signature, issuer, validity, subject, spki, …
    let mut rest = signed.tbs.content;
    if let Some((first, r)) = der::read(rest) {
        if first.tag == der::TAG_CONTEXT_0 {
            rest = r;
        }
    }
    for _ in 0..5 {
        let (_, r) = der::read(rest).ok_or_else(bad)?;
        rest = r;
    }
    let (spki, _) = der::expect(rest, der::TAG_SEQUENCE).ok_or_else(bad)?;
    Ok((version, SubjectPublicKeyInfoDer::from(spki.raw.to_vec())))
}

impl ClientCertVerifier for ClientAuthVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mode == ClientAuthMode::Require
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.hints.get(&self.chain.load_full())
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match self.mode {
            // The proxy verifies after the handshake, where it can answer like nginx.
            ClientAuthMode::Request => Ok(ClientCertVerified::assertion()),
            ClientAuthMode::Require => {
                let mut chain = Vec::with_capacity(1 + intermediates.len());
                chain.push(CertificateDer::from(end_entity.as_ref()));
                chain.extend(
                    intermediates
                        .iter()
                        .map(|c| CertificateDer::from(c.as_ref())),
                );
                match self.chain.load().verify(&chain, now) {
                    Ok(_) => Ok(ClientCertVerified::assertion()),
                    Err(failure) => Err(Error::InvalidCertificate(certificate_error(&failure))),
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algs = &self.provider.signature_verification_algorithms;
        let (version, spki) = cert_version_and_spki(cert)?;
        if version == 2 {
            return rustls::crypto::verify_tls12_signature(message, cert, dss, algs);
        }
        // rustls offers no raw-key variant for TLS 1.2: try the scheme's candidate
        // algorithms whose key type matches, as rustls's own function does.
        let candidates = algs
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algs)| *algs)
            .ok_or(Error::PeerMisbehaved(
                PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ))?;
        let parts = der::spki(spki.as_ref())
            .ok_or(Error::InvalidCertificate(CertificateError::BadEncoding))?;
        for alg in candidates {
            if alg.public_key_alg_id().as_ref() != parts.alg {
                continue;
            }
            return match alg.verify_signature(parts.key, message, dss.signature()) {
                Ok(()) => Ok(HandshakeSignatureValid::assertion()),
                Err(_) => Err(Error::InvalidCertificate(CertificateError::BadSignature)),
            };
        }
        Err(Error::InvalidCertificate(CertificateError::BadSignature))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        let algs = &self.provider.signature_verification_algorithms;
        let (version, spki) = cert_version_and_spki(cert)?;
        if version == 2 {
            rustls::crypto::verify_tls13_signature(message, cert, dss, algs)
        } else {
            rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, algs)
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// `root_hint_subjects` must return a slice borrowed from the verifier, but the subjects
/// live in whichever `ChainVerifier` is current. Each distinct list of subjects is therefore
/// kept for the life of the process (leaked once; a reload that changes the CA file adds
/// one more list of a few hundred bytes), and the current one is found without locking.
#[derive(Default)]
struct HintCache {
    current: ArcSwapOption<HintEntry>,
    kept: Mutex<Vec<&'static [DistinguishedName]>>,
}

struct HintEntry {
    verifier: Arc<ChainVerifier>,
    hints: &'static [DistinguishedName],
}

fn same_hints(a: &[DistinguishedName], b: &[DistinguishedName]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.as_ref() == y.as_ref())
}

impl HintCache {
    fn get(&self, verifier: &Arc<ChainVerifier>) -> &'static [DistinguishedName] {
        if let Some(entry) = &*self.current.load() {
            if Arc::ptr_eq(&entry.verifier, verifier) {
                return entry.hints;
            }
        }
        let hints = {
            let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
            match kept.iter().find(|h| same_hints(h, verifier.hints())) {
                Some(h) => *h,
                None => {
                    let h: &'static [DistinguishedName] = Vec::leak(verifier.hints().to_vec());
                    kept.push(h);
                    h
                }
            }
        };
        self.current.store(Some(Arc::new(HintEntry {
            verifier: verifier.clone(),
            hints,
        })));
        hints
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arc_swap::ArcSwap;
    use rustls::client::ResolvesClientCert;
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::ServerName;
    use rustls::sign::CertifiedKey;
    use rustls::{
        ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection,
        SupportedProtocolVersion,
    };
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    use super::*;
    use crate::testpki::{client_under, root, v1_client_under, Issued, Spec};

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    struct Pki {
        client_ca: Issued,
        server_ca: Issued,
        server: Issued,
    }

    fn pki() -> Pki {
        let client_ca = root("Client CA");
        let server_ca = root("Server CA");
        let mut spec = Spec::client("localhost");
        spec.eku = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let server = {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
            params.extended_key_usages = spec.eku.clone();
            let cert = params
                .signed_by(&key, &server_ca.cert, &server_ca.key)
                .unwrap();
            Issued {
                cert,
                key,
                serial: 0,
            }
        };
        Pki {
            client_ca,
            server_ca,
            server,
        }
    }

    fn server_config(
        pki: &Pki,
        mode: ClientAuthMode,
        version: &'static SupportedProtocolVersion,
    ) -> Arc<ServerConfig> {
        let chain =
            ChainVerifier::new(vec![pki.client_ca.der()], Vec::new(), Vec::new(), 1).unwrap();
        let verifier =
            ClientAuthVerifier::new(mode, Arc::new(ArcSwap::from_pointee(chain)), provider());
        let config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_client_cert_verifier(Arc::new(verifier))
            .with_single_cert(vec![pki.server.der()], pki.server.key_der())
            .unwrap();
        Arc::new(config)
    }

    /// Presents a fixed certificate chain and key, even when they do not belong together
    /// (rustls's own builder refuses that).
    #[derive(Debug)]
    struct Present(Arc<CertifiedKey>);

    impl ResolvesClientCert for Present {
        fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
        fn has_certs(&self) -> bool {
            true
        }
    }

    fn client_config(
        pki: &Pki,
        client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(pki.server_ca.der()).unwrap();
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => {
                let signing_key = provider().key_provider.load_private_key(key).unwrap();
                let certified = CertifiedKey::new(chain, signing_key);
                builder.with_client_cert_resolver(Arc::new(Present(Arc::new(certified))))
            }
        };
        Arc::new(config)
    }

    /// Runs a handshake over in-memory buffers. Returns the server's verdict and, on
    /// success, the certificates the server saw.
    fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> Result<Vec<CertificateDer<'static>>, Error> {
        let mut server = ServerConnection::new(server).unwrap();
        let mut client =
            ClientConnection::new(client, ServerName::try_from("localhost").unwrap()).unwrap();
        let mut buf = Vec::new();
        for _ in 0..20 {
            buf.clear();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            let mut input = &buf[..];
            while !input.is_empty() {
                server.read_tls(&mut input).unwrap();
                server.process_new_packets()?;
            }
            buf.clear();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
            }
            let mut input = &buf[..];
            while !input.is_empty() {
                client.read_tls(&mut input).unwrap();
                // The client learns of a rejection only through the alert; the server's
                // error is what we report.
                if client.process_new_packets().is_err() {
                    break;
                }
            }
            if !server.is_handshaking() && !client.is_handshaking() && !client.wants_write() {
                return Ok(server
                    .peer_certificates()
                    .map(|c| c.to_vec())
                    .unwrap_or_default());
            }
        }
        panic!("handshake did not finish");
    }

    const VERSIONS: [&SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];

    #[test]
    fn require_rejects_unknown_ca_and_request_accepts_it() {
        let pki = pki();
        let stranger_ca = root("Stranger CA");
        let stranger = client_under("stranger", &stranger_ca);
        for version in VERSIONS {
            let client = client_config(&pki, Some((vec![stranger.der()], stranger.key_der())));
            let err = handshake(
                server_config(&pki, ClientAuthMode::Require, version),
                client.clone(),
            )
            .unwrap_err();
            assert_eq!(
                err,
                Error::InvalidCertificate(CertificateError::UnknownIssuer),
                "{version:?}"
            );

            let seen = handshake(
                server_config(&pki, ClientAuthMode::Request, version),
                client,
            )
            .unwrap();
            assert_eq!(
                seen,
                vec![stranger.der()],
                "{version:?}: the proxy gets the chain to verify itself"
            );
        }
    }

    #[test]
    fn require_accepts_a_good_client_and_maps_failures_to_alerts() {
        let pki = pki();
        let good = client_under("good", &pki.client_ca);
        let expired = Spec::client("expired")
            .valid(-10, -2)
            .issue(Some(&pki.client_ca));
        for version in VERSIONS {
            let server = server_config(&pki, ClientAuthMode::Require, version);
            let seen = handshake(
                server.clone(),
                client_config(&pki, Some((vec![good.der()], good.key_der()))),
            )
            .unwrap();
            assert_eq!(seen, vec![good.der()]);
            let err = handshake(
                server.clone(),
                client_config(&pki, Some((vec![expired.der()], expired.key_der()))),
            )
            .unwrap_err();
            assert_eq!(err, Error::InvalidCertificate(CertificateError::Expired));
            // No certificate at all: mandatory in Require mode, optional in Request mode.
            let err = handshake(server, client_config(&pki, None)).unwrap_err();
            assert_eq!(err, Error::NoCertificatesPresented);
            let seen = handshake(
                server_config(&pki, ClientAuthMode::Request, version),
                client_config(&pki, None),
            )
            .unwrap();
            assert!(seen.is_empty());
        }
    }

    #[test]
    fn certificate_verify_is_checked_in_request_mode() {
        let pki = pki();
        let victim = client_under("victim", &pki.client_ca);
        let thief_key = rcgen::KeyPair::generate().unwrap();
        for version in VERSIONS {
            let stolen = (
                vec![victim.der()],
                PrivateKeyDer::Pkcs8(thief_key.serialize_der().into()),
            );
            let err = handshake(
                server_config(&pki, ClientAuthMode::Request, version),
                client_config(&pki, Some(stolen)),
            )
            .unwrap_err();
            assert_eq!(
                err,
                Error::InvalidCertificate(CertificateError::BadSignature),
                "{version:?}"
            );
        }
    }

    #[test]
    fn v1_client_certificates_work() {
        let pki = pki();
        let v1 = v1_client_under("legacy", &pki.client_ca);
        assert_eq!(
            cert_version_and_spki(&v1.der).unwrap().0,
            0,
            "really a v1 certificate"
        );
        let chain =
            ChainVerifier::new(vec![pki.client_ca.der()], Vec::new(), Vec::new(), 1).unwrap();
        assert!(chain
            .verify(std::slice::from_ref(&v1.der), UnixTime::now())
            .is_ok());
        for version in VERSIONS {
            for mode in [ClientAuthMode::Require, ClientAuthMode::Request] {
                let client = client_config(&pki, Some((vec![v1.der.clone()], v1.key_der())));
                let seen = handshake(server_config(&pki, mode, version), client).unwrap();
                assert_eq!(seen, vec![v1.der.clone()], "{version:?} {mode:?}");
            }
            // And a v1 certificate with the wrong key still fails the CertificateVerify check.
            let wrong =
                PrivateKeyDer::Pkcs8(rcgen::KeyPair::generate().unwrap().serialize_der().into());
            let client = client_config(&pki, Some((vec![v1.der.clone()], wrong)));
            let err = handshake(
                server_config(&pki, ClientAuthMode::Request, version),
                client,
            )
            .unwrap_err();
            assert_eq!(
                err,
                Error::InvalidCertificate(CertificateError::BadSignature),
                "{version:?}"
            );
        }
    }

    #[test]
    fn hints_follow_reloads_and_exclude_trusted_ca() {
        let first = root("First CA");
        let second = root("Second CA");
        let hidden = root("Hidden CA");
        let swap = Arc::new(ArcSwap::from_pointee(
            ChainVerifier::new(vec![first.der()], vec![hidden.der()], Vec::new(), 1).unwrap(),
        ));
        let verifier = ClientAuthVerifier::new(ClientAuthMode::Request, swap.clone(), provider());
        let names = |v: &ClientAuthVerifier| -> Vec<String> {
            v.root_hint_subjects()
                .iter()
                .map(|dn| {
                    let (_, name) = <x509_parser::x509::X509Name as x509_parser::prelude::FromDer<_>>::from_der(dn.as_ref()).unwrap();
                    name.to_string()
                })
                .collect()
        };
        assert_eq!(names(&verifier), vec!["CN=First CA"]);
        assert_eq!(names(&verifier), vec!["CN=First CA"]);
        swap.store(Arc::new(
            ChainVerifier::new(vec![first.der(), second.der()], Vec::new(), Vec::new(), 1).unwrap(),
        ));
        assert_eq!(names(&verifier), vec!["CN=First CA", "CN=Second CA"]);
        // Going back to an earlier set reuses the list kept for it.
        swap.store(Arc::new(
            ChainVerifier::new(vec![first.der()], Vec::new(), Vec::new(), 1).unwrap(),
        ));
        assert_eq!(names(&verifier), vec!["CN=First CA"]);
        assert_eq!(verifier.hints.kept.lock().unwrap().len(), 2);
        assert!(verifier.offer_client_auth());
        assert!(!verifier.client_auth_mandatory());
        assert!(!verifier.supported_verify_schemes().is_empty());
    }

    #[test]
    fn require_sees_reloaded_trust() {
        let pki = pki();
        let new_ca = root("New Client CA");
        let client = client_under("client", &new_ca);
        let swap = Arc::new(ArcSwap::from_pointee(
            ChainVerifier::new(vec![pki.client_ca.der()], Vec::new(), Vec::new(), 1).unwrap(),
        ));
        let verifier = ClientAuthVerifier::new(ClientAuthMode::Require, swap.clone(), provider());
        let now = UnixTime::now();
        assert!(verifier
            .verify_client_cert(&client.der(), &[], now)
            .is_err());
        swap.store(Arc::new(
            ChainVerifier::new(vec![new_ca.der()], Vec::new(), Vec::new(), 1).unwrap(),
        ));
        assert!(verifier.verify_client_cert(&client.der(), &[], now).is_ok());
        assert!(verifier.client_auth_mandatory());
    }
}
