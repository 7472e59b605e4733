//! The rustls server-certificate verifiers certgate puts into the `ClientConfig` it uses to
//! connect to TLS upstreams (`protocol: https` / `grpcs`): [`UpstreamVerifier`] for
//! `tls.verify: true` (everything rustls's `WebPkiServerVerifier` checks, plus the
//! `tls.verify_depth` limit of nginx's `proxy_ssl_verify_depth`), and
//! [`NoUpstreamVerification`] for `tls.verify: false` (nginx `proxy_ssl_verify off`).
//!
//! Failures come out as the same `rustls::Error::InvalidCertificate(..)` values rustls's own
//! verifier produces, so the proxy logs and maps them without knowing which verifier ran; the
//! one addition is [`ChainTooLong`], carried as `CertificateError::Other`.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{
    verify_tls12_signature, verify_tls13_signature, CryptoProvider, WebPkiSupportedAlgorithms,
};
use rustls::{
    CertRevocationListError, CertificateError, DigitallySignedStruct, Error, ExtendedKeyPurpose,
    OtherError, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use webpki::{EndEntityCert, InvalidNameContext, KeyUsage, VerifiedPath};

/// Why an [`UpstreamVerifier`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamVerifierError {
    /// No trusted CA certificate was given: nothing could ever verify.
    #[error("no trusted CA certificate to verify upstream certificates against")]
    NoTrustAnchors,

    /// A trusted CA certificate cannot serve as a trust anchor (not parseable, or an X.509
    /// v1 certificate, which webpki refuses).
    #[error("trusted CA certificate #{index} cannot be used as a trust anchor: {reason}")]
    InvalidTrustAnchor {
        /// 1-based position in the list handed to [`UpstreamVerifier::new`].
        index: usize,
        reason: String,
    },
}

/// The upstream's certificate chain verified to a trust anchor, but only through more
/// intermediates than `verify_depth` allows (OpenSSL's `X509_V_ERR_CERT_CHAIN_TOO_LONG`).
///
/// [`UpstreamVerifier`] returns it as
/// `Error::InvalidCertificate(CertificateError::Other(OtherError(Arc<ChainTooLong>)))`;
/// downcast `OtherError.0` to recover the numbers. Its `Debug` output is its message, so
/// rustls's own rendering of the error (which uses `Debug` for `Other`) still reads
/// `certificate chain too long …`.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "certificate chain too long ({intermediates} {}, verify_depth {verify_depth})",
    intermediate_noun(*.intermediates)
)]
pub struct ChainTooLong {
    /// Intermediates in the shortest path that verified to a trust anchor (leaf and anchor
    /// not counted).
    pub intermediates: usize,
    /// The configured limit.
    pub verify_depth: u32,
}

fn intermediate_noun(count: usize) -> &'static str {
    if count == 1 {
        "intermediate"
    } else {
        "intermediates"
    }
}

impl fmt::Debug for ChainTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The verifier for upstreams with `tls.verify: true`.
///
/// It accepts a server certificate only if it
/// - chains to one of the configured roots, through the intermediates the server sent,
///   with valid signatures, validity dates that include `now`, and basic constraints, key
///   usage and name constraints as webpki checks them (as rustls's `WebPkiServerVerifier`);
/// - allows serverAuth (if it has an extended key usage extension at all);
/// - is valid for the name connected to: a DNS name must match a DNS SAN (the subject CN is
///   not consulted), an IP address an IP-address SAN;
/// - reaches a root through at most `verify_depth` intermediates (nginx
///   `proxy_ssl_verify_depth` / `grpc_ssl_verify_depth`, OpenSSL >= 1.1 semantics). The limit
///   is checked on the path actually built, so a server that sends superfluous certificates
///   is not penalised for them, and a longer chain fails with [`ChainTooLong`] even though it
///   is otherwise valid. This bounds how far down a CA hierarchy the roots' trust reaches.
///
/// Revocation (OCSP, CRLs) is not checked: a revoked upstream certificate is accepted until
/// it expires, as with nginx without `proxy_ssl_crl`. Stapled OCSP responses are ignored.
pub struct UpstreamVerifier {
    roots: Vec<TrustAnchor<'static>>,
    verify_depth: u32,
    supported: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for UpstreamVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamVerifier")
            .field("roots", &self.roots.len())
            .field("verify_depth", &self.verify_depth)
            .finish()
    }
}

impl UpstreamVerifier {
    /// Trusts exactly `roots` (nginx `proxy_ssl_trusted_certificate`): each is a trust anchor
    /// whether or not it is self-signed, and its own validity dates and constraints are not
    /// checked (as in rustls). `verify_depth` is the most intermediates allowed between the
    /// upstream's certificate and a root; 0 means it must be issued directly by a root.
    ///
    /// `provider` supplies the signature algorithms accepted in certificates and in the
    /// handshake; algorithms it lacks make certificates using them fail to verify.
    ///
    /// Fails if `roots` is empty or one of them cannot serve as a trust anchor.
    pub fn new(
        roots: Vec<CertificateDer<'static>>,
        verify_depth: u32,
        provider: Arc<CryptoProvider>,
    ) -> Result<UpstreamVerifier, UpstreamVerifierError> {
        if roots.is_empty() {
            return Err(UpstreamVerifierError::NoTrustAnchors);
        }
        let roots = roots
            .iter()
            .enumerate()
            .map(|(i, der)| {
                webpki::anchor_from_trusted_cert(der)
                    .map(|anchor| anchor.to_owned())
                    .map_err(|e| UpstreamVerifierError::InvalidTrustAnchor {
                        index: i + 1,
                        reason: format!("{e:?}"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(UpstreamVerifier {
            roots,
            verify_depth,
            supported: provider.signature_verification_algorithms,
        })
    }

    /// The configured `verify_depth`.
    pub fn verify_depth(&self) -> u32 {
        self.verify_depth
    }
}

impl ServerCertVerifier for UpstreamVerifier {
    /// Verifies the chain, the depth limit and then the name, as described on
    /// [`UpstreamVerifier`]; errors are those rustls's `WebPkiServerVerifier` returns, plus
    /// [`ChainTooLong`].
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let cert = EndEntityCert::try_from(end_entity).map_err(pki_error)?;

        // webpki calls this for every candidate path that verified all the way to a trust
        // anchor; refusing one makes it try the others. The shortest refused path is kept
        // for the message.
        let max = usize::try_from(self.verify_depth).unwrap_or(usize::MAX);
        let too_long: Cell<Option<usize>> = Cell::new(None);
        let check_depth = |path: &VerifiedPath<'_>| -> Result<(), webpki::Error> {
            let count = path.intermediate_certificates().count();
            if count <= max {
                return Ok(());
            }
            too_long.set(Some(too_long.get().map_or(count, |seen| seen.min(count))));
            Err(webpki::Error::MaximumPathDepthExceeded)
        };

        let verified = cert.verify_for_usage(
            self.supported.all,
            &self.roots,
            intermediates,
            now,
            KeyUsage::server_auth(),
            None,
            Some(&check_depth),
        );
        if let Err(error) = verified {
            // A path refused only for its length was valid in every other respect, so that
            // is the reason to report, whatever the other candidate paths failed on.
            return Err(match too_long.get() {
                Some(count) => CertificateError::Other(OtherError(Arc::new(ChainTooLong {
                    intermediates: count,
                    verify_depth: self.verify_depth,
                })))
                .into(),
                None => pki_error(error),
            });
        }

        cert.verify_is_valid_for_subject_name(server_name)
            .map_err(pki_error)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.supported)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.supported)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.supported.supported_schemes()
    }
}

/// The verifier for upstreams with `tls.verify: false` (nginx `proxy_ssl_verify off`, its
/// default).
///
/// Any certificate chain is accepted, for any name: untrusted, expired, self-signed, issued
/// for another host. The handshake signature is still verified against the certificate's
/// key, so the upstream must hold the private key of the certificate it presents — but
/// since that certificate is not checked, anyone able to intercept the connection can
/// present a certificate of their own and read and alter the traffic. The connection is
/// encrypted, not authenticated.
pub struct NoUpstreamVerification {
    supported: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for NoUpstreamVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoUpstreamVerification").finish()
    }
}

impl NoUpstreamVerification {
    /// `provider` supplies the signature algorithms accepted for the handshake signature.
    pub fn new(provider: Arc<CryptoProvider>) -> NoUpstreamVerification {
        NoUpstreamVerification {
            supported: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for NoUpstreamVerification {
    /// Accepts every certificate chain and name without looking at them.
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.supported)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.supported)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.supported.supported_schemes()
    }
}

/// webpki's error as a rustls error: a copy of rustls 0.23's private `webpki::pki_error`, so
/// that failures read exactly as with rustls's `WebPkiServerVerifier`.
fn pki_error(error: webpki::Error) -> Error {
    use webpki::Error::*;
    match error {
        BadDer | BadDerTime | TrailingData(_) => CertificateError::BadEncoding.into(),
        CertNotValidYet { time, not_before } => {
            CertificateError::NotValidYetContext { time, not_before }.into()
        }
        CertExpired { time, not_after } => {
            CertificateError::ExpiredContext { time, not_after }.into()
        }
        InvalidCertValidity => CertificateError::Expired.into(),
        UnknownIssuer => CertificateError::UnknownIssuer.into(),
        CertNotValidForName(InvalidNameContext {
            expected,
            presented,
        }) => CertificateError::NotValidForNameContext {
            expected,
            presented,
        }
        .into(),
        CertRevoked => CertificateError::Revoked.into(),
        UnknownRevocationStatus => CertificateError::UnknownRevocationStatus.into(),
        CrlExpired { time, next_update } => {
            CertificateError::ExpiredRevocationListContext { time, next_update }.into()
        }
        IssuerNotCrlSigner => CertRevocationListError::IssuerInvalidForCrl.into(),

        InvalidSignatureForPublicKey => CertificateError::BadSignature.into(),
        #[allow(deprecated)]
        UnsupportedSignatureAlgorithm | UnsupportedSignatureAlgorithmForPublicKey => {
            CertificateError::UnsupportedSignatureAlgorithm.into()
        }
        UnsupportedSignatureAlgorithmContext(cx) => {
            CertificateError::UnsupportedSignatureAlgorithmContext {
                signature_algorithm_id: cx.signature_algorithm_id,
                supported_algorithms: cx.supported_algorithms,
            }
            .into()
        }
        UnsupportedSignatureAlgorithmForPublicKeyContext(cx) => {
            CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext {
                signature_algorithm_id: cx.signature_algorithm_id,
                public_key_algorithm_id: cx.public_key_algorithm_id,
            }
            .into()
        }

        InvalidCrlSignatureForPublicKey => CertRevocationListError::BadSignature.into(),
        #[allow(deprecated)]
        UnsupportedCrlSignatureAlgorithm | UnsupportedCrlSignatureAlgorithmForPublicKey => {
            CertRevocationListError::UnsupportedSignatureAlgorithm.into()
        }
        UnsupportedCrlSignatureAlgorithmContext(cx) => {
            CertRevocationListError::UnsupportedSignatureAlgorithmContext {
                signature_algorithm_id: cx.signature_algorithm_id,
                supported_algorithms: cx.supported_algorithms,
            }
            .into()
        }
        UnsupportedCrlSignatureAlgorithmForPublicKeyContext(cx) => {
            CertRevocationListError::UnsupportedSignatureAlgorithmForPublicKeyContext {
                signature_algorithm_id: cx.signature_algorithm_id,
                public_key_algorithm_id: cx.public_key_algorithm_id,
            }
            .into()
        }

        #[allow(deprecated)]
        RequiredEkuNotFound => CertificateError::InvalidPurpose.into(),
        RequiredEkuNotFoundContext(webpki::RequiredEkuNotFoundContext { required, present }) => {
            CertificateError::InvalidPurposeContext {
                required: key_purpose(required.oid_values().collect()),
                presented: present.into_iter().map(key_purpose).collect(),
            }
            .into()
        }

        _ => CertificateError::Other(OtherError(Arc::new(error))).into(),
    }
}

/// rustls's (crate-private) `ExtendedKeyPurpose::for_values`.
fn key_purpose(values: Vec<usize>) -> ExtendedKeyPurpose {
    match values.as_slice() {
        KeyUsage::CLIENT_AUTH_REPR => ExtendedKeyPurpose::ClientAuth,
        KeyUsage::SERVER_AUTH_REPR => ExtendedKeyPurpose::ServerAuth,
        _ => ExtendedKeyPurpose::Other(values),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;
    use std::time::{Duration as StdDuration, SystemTime};

    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    use rustls::client::WebPkiServerVerifier;
    use rustls::server::ResolvesServerCert;
    use rustls::sign::CertifiedKey;
    use rustls::{
        ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection,
        SupportedProtocolVersion,
    };
    use time::{Duration, OffsetDateTime};

    use super::*;
    use crate::testpki::{ca_under, root, Issued};

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    /// A server certificate for `sans` (DNS names and IP addresses) with EKU serverAuth,
    /// valid from yesterday to `until_days` from now.
    fn server_cert(sans: &[&str], issuer: &Issued, until_days: i64) -> Issued {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "upstream");
        params.distinguished_name = dn;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(2);
        params.not_after = now + Duration::days(until_days);
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer.cert, &issuer.key).unwrap();
        Issued {
            cert,
            key,
            serial: 0,
        }
    }

    /// A root, `n` intermediates under it, and a leaf for `backend.internal` and 10.0.0.7
    /// under the last one. Returns (root, leaf, intermediates leaf-first, as a server sends).
    fn chain(n: usize) -> (Issued, Issued, Vec<CertificateDer<'static>>) {
        let ca = root("Upstream Root CA");
        let mut cas: Vec<Issued> = Vec::new();
        for i in 0..n {
            let issuer = cas.last().unwrap_or(&ca);
            cas.push(ca_under(&format!("Upstream Intermediate {i}"), issuer));
        }
        let leaf = server_cert(
            &["backend.internal", "10.0.0.7"],
            cas.last().unwrap_or(&ca),
            30,
        );
        let intermediates = cas.iter().rev().map(Issued::der).collect();
        (ca, leaf, intermediates)
    }

    fn now() -> UnixTime {
        UnixTime::now()
    }

    fn dns(name: &str) -> ServerName<'static> {
        ServerName::try_from(name.to_string()).unwrap()
    }

    fn ip(addr: &str) -> ServerName<'static> {
        ServerName::from(addr.parse::<IpAddr>().unwrap())
    }

    fn verify(
        verifier: &dyn ServerCertVerifier,
        leaf: &Issued,
        intermediates: &[CertificateDer<'static>],
        name: &ServerName<'_>,
    ) -> Result<ServerCertVerified, Error> {
        verifier.verify_server_cert(&leaf.der(), intermediates, name, &[], now())
    }

    fn upstream(ca: &Issued, depth: u32) -> UpstreamVerifier {
        UpstreamVerifier::new(vec![ca.der()], depth, provider()).unwrap()
    }

    /// rustls's own verifier over the same roots, for error parity.
    fn webpki_verifier(ca: &Issued) -> Arc<WebPkiServerVerifier> {
        let mut roots = RootCertStore::empty();
        roots.add(ca.der()).unwrap();
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap()
    }

    fn chain_too_long(result: Result<ServerCertVerified, Error>) -> ChainTooLong {
        match result {
            Err(Error::InvalidCertificate(CertificateError::Other(OtherError(e)))) => e
                .downcast_ref::<ChainTooLong>()
                .cloned()
                .unwrap_or_else(|| panic!("not ChainTooLong: {e}")),
            other => panic!("expected ChainTooLong, got {other:?}"),
        }
    }

    #[test]
    fn leaf_issued_by_root_passes_at_depth_0() {
        let (ca, leaf, intermediates) = chain(0);
        for depth in [0, 1, 5] {
            verify(
                &upstream(&ca, depth),
                &leaf,
                &intermediates,
                &dns("backend.internal"),
            )
            .unwrap();
        }
    }

    #[test]
    fn one_intermediate_needs_depth_1() {
        let (ca, leaf, intermediates) = chain(1);
        let name = dns("backend.internal");
        verify(&upstream(&ca, 1), &leaf, &intermediates, &name).unwrap();

        let result = verify(&upstream(&ca, 0), &leaf, &intermediates, &name);
        let message = result.as_ref().unwrap_err().to_string();
        assert!(message.contains("certificate chain too long"), "{message}");
        let e = chain_too_long(result);
        assert_eq!(
            e,
            ChainTooLong {
                intermediates: 1,
                verify_depth: 0
            }
        );
        assert_eq!(
            e.to_string(),
            "certificate chain too long (1 intermediate, verify_depth 0)"
        );
    }

    #[test]
    fn two_intermediates_need_depth_2() {
        let (ca, leaf, intermediates) = chain(2);
        let name = dns("backend.internal");
        let e = chain_too_long(verify(&upstream(&ca, 1), &leaf, &intermediates, &name));
        assert_eq!(
            e.to_string(),
            "certificate chain too long (2 intermediates, verify_depth 1)"
        );
        verify(&upstream(&ca, 2), &leaf, &intermediates, &name).unwrap();
        verify(&upstream(&ca, u32::MAX), &leaf, &intermediates, &name).unwrap();
    }

    #[test]
    fn depth_counts_the_path_built_not_the_certificates_sent() {
        // A server that also sends the root and an unrelated CA: one intermediate on the
        // path, so depth 1 suffices.
        let (ca, leaf, mut intermediates) = chain(1);
        intermediates.push(ca.der());
        intermediates.push(root("Unrelated CA").der());
        let name = dns("backend.internal");
        verify(&upstream(&ca, 1), &leaf, &intermediates, &name).unwrap();
        let e = chain_too_long(verify(&upstream(&ca, 0), &leaf, &intermediates, &name));
        assert_eq!(e.intermediates, 1);
    }

    #[test]
    fn trusting_the_intermediate_shortens_the_path() {
        // A trust anchor need not be self-signed (as in rustls): trusting the intermediate
        // makes the leaf directly issued by a trust anchor.
        let ca = root("Upstream Root CA");
        let sub = ca_under("Upstream Intermediate", &ca);
        let leaf = server_cert(&["backend.internal"], &sub, 30);
        let verifier = UpstreamVerifier::new(vec![sub.der()], 0, provider()).unwrap();
        verify(&verifier, &leaf, &[sub.der()], &dns("backend.internal")).unwrap();
    }

    #[test]
    fn missing_intermediate_is_unknown_issuer() {
        let (ca, leaf, _) = chain(1);
        let result = verify(&upstream(&ca, 1), &leaf, &[], &dns("backend.internal"));
        assert_eq!(
            result.unwrap_err(),
            Error::InvalidCertificate(CertificateError::UnknownIssuer)
        );
    }

    #[test]
    fn unknown_ca_is_unknown_issuer_as_in_rustls() {
        let (_, leaf, intermediates) = chain(1);
        let other = root("Some Other CA");
        let name = dns("backend.internal");
        for depth in [0, 1] {
            let result = verify(&upstream(&other, depth), &leaf, &intermediates, &name);
            assert_eq!(
                result.unwrap_err(),
                Error::InvalidCertificate(CertificateError::UnknownIssuer)
            );
        }
    }

    #[test]
    fn wrong_dns_name_is_not_valid_for_name() {
        let (ca, leaf, intermediates) = chain(1);
        let name = dns("other.internal");
        let result = verify(&upstream(&ca, 1), &leaf, &intermediates, &name);
        let error = result.unwrap_err();
        assert!(
            matches!(
                &error,
                Error::InvalidCertificate(
                    CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. }
                )
            ),
            "{error:?}"
        );
        let rustls = verify(&*webpki_verifier(&ca), &leaf, &intermediates, &name).unwrap_err();
        assert_eq!(error, rustls);
        // The CN is not a name the certificate is valid for.
        assert!(verify(&upstream(&ca, 1), &leaf, &intermediates, &dns("upstream")).is_err());
    }

    #[test]
    fn ip_server_name_is_checked_against_ip_sans() {
        let (ca, leaf, intermediates) = chain(1);
        let verifier = upstream(&ca, 1);
        verify(&verifier, &leaf, &intermediates, &ip("10.0.0.7")).unwrap();
        for wrong in ["10.0.0.8", "::1"] {
            let error = verify(&verifier, &leaf, &intermediates, &ip(wrong)).unwrap_err();
            assert!(
                matches!(
                    &error,
                    Error::InvalidCertificate(
                        CertificateError::NotValidForName
                            | CertificateError::NotValidForNameContext { .. }
                    )
                ),
                "{error:?}"
            );
        }
        // A DNS SAN does not match an IP address written as a name, nor the reverse.
        let dns_only = server_cert(&["backend.internal"], &ca, 30);
        assert!(verify(&verifier, &dns_only, &[], &ip("10.0.0.7")).is_err());
    }

    #[test]
    fn expired_leaf_is_expired() {
        let ca = root("Upstream Root CA");
        let leaf = server_cert(&["backend.internal"], &ca, -1);
        let name = dns("backend.internal");
        let error = verify(&upstream(&ca, 1), &leaf, &[], &name).unwrap_err();
        assert!(
            matches!(
                &error,
                Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. }
                )
            ),
            "{error:?}"
        );
        assert_eq!(
            error,
            verify(&*webpki_verifier(&ca), &leaf, &[], &name).unwrap_err()
        );
        // An expired leaf fails on its dates before any path reaches the depth check.
        let sub = ca_under("Upstream Intermediate", &ca);
        let leaf = server_cert(&["backend.internal"], &sub, -1);
        let error = verify(&upstream(&ca, 0), &leaf, &[sub.der()], &name).unwrap_err();
        assert!(
            matches!(
                &error,
                Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
            ),
            "{error:?}"
        );
    }

    #[test]
    fn forged_issuer_is_bad_signature_as_in_rustls() {
        // Same issuer name as the trusted root, different key.
        let ca = root("Upstream Root CA");
        let impostor = root("Upstream Root CA");
        let leaf = server_cert(&["backend.internal"], &impostor, 30);
        let name = dns("backend.internal");
        let error = verify(&upstream(&ca, 1), &leaf, &[], &name).unwrap_err();
        assert_eq!(
            error,
            Error::InvalidCertificate(CertificateError::BadSignature)
        );
        assert_eq!(
            error,
            verify(&*webpki_verifier(&ca), &leaf, &[], &name).unwrap_err()
        );
    }

    #[test]
    fn client_certificate_is_refused_as_server_certificate() {
        let ca = root("Upstream Root CA");
        let client = crate::testpki::client_under("backend.internal", &ca);
        let name = dns("backend.internal");
        let ours = verify(&upstream(&ca, 1), &client, &[], &name).unwrap_err();
        let theirs = verify(&*webpki_verifier(&ca), &client, &[], &name).unwrap_err();
        assert!(
            matches!(
                &ours,
                Error::InvalidCertificate(
                    CertificateError::InvalidPurpose
                        | CertificateError::InvalidPurposeContext { .. }
                )
            ),
            "{ours:?}"
        );
        assert_eq!(ours.to_string(), theirs.to_string());
    }

    #[test]
    fn garbage_end_entity_is_bad_encoding() {
        let ca = root("Upstream Root CA");
        let error = upstream(&ca, 1)
            .verify_server_cert(
                &CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01]),
                &[],
                &dns("backend.internal"),
                &[],
                now(),
            )
            .unwrap_err();
        assert_eq!(
            error,
            Error::InvalidCertificate(CertificateError::BadEncoding)
        );
    }

    #[test]
    fn validity_is_checked_at_now() {
        let (ca, leaf, intermediates) = chain(1);
        let later = UnixTime::since_unix_epoch(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                + StdDuration::from_secs(90 * 86_400),
        );
        let error = upstream(&ca, 1)
            .verify_server_cert(
                &leaf.der(),
                &intermediates,
                &dns("backend.internal"),
                &[],
                later,
            )
            .unwrap_err();
        assert!(
            matches!(
                &error,
                Error::InvalidCertificate(CertificateError::ExpiredContext { .. })
            ),
            "{error:?}"
        );
    }

    #[test]
    fn constructor_refuses_no_roots_and_unusable_roots() {
        assert!(matches!(
            UpstreamVerifier::new(Vec::new(), 1, provider()),
            Err(UpstreamVerifierError::NoTrustAnchors)
        ));
        let ca = root("Upstream Root CA");
        let error = UpstreamVerifier::new(
            vec![ca.der(), CertificateDer::from(vec![1, 2, 3])],
            1,
            provider(),
        )
        .unwrap_err();
        assert!(
            matches!(
                error,
                UpstreamVerifierError::InvalidTrustAnchor { index: 2, .. }
            ),
            "{error:?}"
        );
        assert!(
            error.to_string().starts_with("trusted CA certificate #2 "),
            "{error}"
        );
    }

    #[test]
    fn schemes_are_the_providers() {
        let ca = root("Upstream Root CA");
        let expected = provider()
            .signature_verification_algorithms
            .supported_schemes();
        assert_eq!(upstream(&ca, 1).supported_verify_schemes(), expected);
        assert_eq!(
            NoUpstreamVerification::new(provider()).supported_verify_schemes(),
            expected
        );
    }

    #[test]
    fn no_verification_accepts_any_chain_and_name() {
        let ca = root("Upstream Root CA");
        let expired = server_cert(&["backend.internal"], &ca, -1);
        let verifier = NoUpstreamVerification::new(provider());
        verify(&verifier, &expired, &[], &dns("anything.example")).unwrap();
        verify(&verifier, &expired, &[], &ip("192.0.2.1")).unwrap();
    }

    // --- Through a real rustls handshake (in memory) ---

    /// Presents a fixed chain and key, even when they do not belong together (rustls's own
    /// builder refuses that).
    #[derive(Debug)]
    struct Present(Arc<CertifiedKey>);

    impl ResolvesServerCert for Present {
        fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    fn server_config(
        chain: Vec<CertificateDer<'static>>,
        key: &KeyPair,
        version: &'static SupportedProtocolVersion,
    ) -> Arc<ServerConfig> {
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let signing_key = provider().key_provider.load_private_key(key).unwrap();
        let config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Present(Arc::new(CertifiedKey::new(
                chain,
                signing_key,
            )))));
        Arc::new(config)
    }

    /// Runs a handshake over in-memory buffers; returns the client's verdict.
    fn handshake(
        verifier: Arc<dyn ServerCertVerifier>,
        server: Arc<ServerConfig>,
        name: ServerName<'static>,
    ) -> Result<(), Error> {
        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        let mut client = ClientConnection::new(Arc::new(client), name).unwrap();
        let mut server = ServerConnection::new(server).unwrap();
        let mut buf = Vec::new();
        for _ in 0..20 {
            buf.clear();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            let mut input = &buf[..];
            while !input.is_empty() {
                server.read_tls(&mut input).unwrap();
                if server.process_new_packets().is_err() {
                    break;
                }
            }
            buf.clear();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
            }
            let mut input = &buf[..];
            while !input.is_empty() {
                client.read_tls(&mut input).unwrap();
                client.process_new_packets()?;
            }
            if !client.is_handshaking() && !client.wants_write() {
                return Ok(());
            }
        }
        panic!("handshake did not finish");
    }

    const VERSIONS: [&SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];

    #[test]
    fn handshake_enforces_verify_depth() {
        let (ca, leaf, intermediates) = chain(2);
        let mut sent = vec![leaf.der()];
        sent.extend(intermediates);
        for version in VERSIONS {
            let server = server_config(sent.clone(), &leaf.key, version);
            let name = dns("backend.internal");
            handshake(Arc::new(upstream(&ca, 2)), server.clone(), name.clone()).unwrap();
            handshake(Arc::new(upstream(&ca, 2)), server.clone(), ip("10.0.0.7")).unwrap();
            let error = handshake(Arc::new(upstream(&ca, 1)), server, name).unwrap_err();
            let message = error.to_string();
            assert!(
                message.contains("certificate chain too long (2 intermediates, verify_depth 1)"),
                "{message}"
            );
        }
    }

    #[test]
    fn no_verification_still_checks_the_handshake_signature() {
        let ca = root("Upstream Root CA");
        let leaf = server_cert(&["backend.internal"], &ca, -1);
        let stranger = KeyPair::generate().unwrap();
        for version in VERSIONS {
            let verifier = Arc::new(NoUpstreamVerification::new(provider()));
            let good = server_config(vec![leaf.der()], &leaf.key, version);
            handshake(verifier.clone(), good, dns("whatever.example")).unwrap();
            // The server presents the certificate but does not hold its key.
            let bad = server_config(vec![leaf.der()], &stranger, version);
            let error = handshake(verifier, bad, dns("whatever.example")).unwrap_err();
            assert_eq!(
                error,
                Error::InvalidCertificate(CertificateError::BadSignature),
                "{version:?}"
            );
        }
    }
}
