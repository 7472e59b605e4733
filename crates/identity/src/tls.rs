//! Connection facts (`$ssl_protocol`, `$ssl_cipher`, `$ssl_server_name`,
//! `$remote_addr`, `$remote_port`) and the translation of rustls' protocol and
//! cipher-suite names into the OpenSSL names nginx reports.

use std::net::IpAddr;

/// What the TLS layer knows about a connection, names already in OpenSSL form
/// (see [`openssl_protocol_name`] and [`openssl_cipher_name`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsInfo {
    /// `$ssl_protocol`, e.g. `TLSv1.3`.
    pub protocol: String,
    /// `$ssl_cipher`, e.g. `TLS_AES_256_GCM_SHA384`.
    pub cipher: String,
    /// `$ssl_server_name`: the SNI host name the client sent, if any.
    pub server_name: Option<String>,
    /// `$remote_addr`.
    pub remote_addr: IpAddr,
    /// `$remote_port`.
    pub remote_port: u16,
}

/// rustls' `ProtocolVersion::as_str()` name → OpenSSL's `SSL_get_version()` name.
/// Unknown names are returned unchanged.
pub fn openssl_protocol_name(rustls_name: &str) -> String {
    match rustls_name {
        "TLSv1_3" => "TLSv1.3",
        "TLSv1_2" => "TLSv1.2",
        "TLSv1_1" => "TLSv1.1",
        "TLSv1_0" => "TLSv1",
        "SSLv3" => "SSLv3",
        "DTLSv1_2" => "DTLSv1.2",
        "DTLSv1_0" => "DTLSv1",
        other => other,
    }
    .to_owned()
}

/// rustls' `CipherSuite::as_str()` name → OpenSSL's `SSL_get_cipher_name()` name
/// (checked with `openssl ciphers -stdname`). Covers every suite rustls 0.23
/// implements with the ring or aws-lc-rs providers; unknown names are returned
/// unchanged.
pub fn openssl_cipher_name(rustls_name: &str) -> String {
    match rustls_name {
        "TLS13_AES_128_GCM_SHA256" => "TLS_AES_128_GCM_SHA256",
        "TLS13_AES_256_GCM_SHA384" => "TLS_AES_256_GCM_SHA384",
        "TLS13_CHACHA20_POLY1305_SHA256" => "TLS_CHACHA20_POLY1305_SHA256",
        "TLS13_AES_128_CCM_SHA256" => "TLS_AES_128_CCM_SHA256",
        "TLS13_AES_128_CCM_8_SHA256" => "TLS_AES_128_CCM_8_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => "ECDHE-RSA-CHACHA20-POLY1305",
        other => other,
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names() {
        assert_eq!(openssl_protocol_name("TLSv1_3"), "TLSv1.3");
        assert_eq!(openssl_protocol_name("TLSv1_2"), "TLSv1.2");
        assert_eq!(openssl_protocol_name(""), "");
    }

    #[test]
    fn cipher_names_for_every_rustls_suite() {
        // Pairs from `openssl ciphers -stdname` (OpenSSL 3.0.22).
        let pairs = [
            ("TLS13_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"),
            ("TLS13_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"),
            (
                "TLS13_CHACHA20_POLY1305_SHA256",
                "TLS_CHACHA20_POLY1305_SHA256",
            ),
            (
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
            ),
            (
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "ECDHE-ECDSA-AES256-GCM-SHA384",
            ),
            (
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                "ECDHE-ECDSA-CHACHA20-POLY1305",
            ),
            (
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "ECDHE-RSA-AES128-GCM-SHA256",
            ),
            (
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                "ECDHE-RSA-AES256-GCM-SHA384",
            ),
            (
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
                "ECDHE-RSA-CHACHA20-POLY1305",
            ),
        ];
        for (rustls, openssl) in pairs {
            assert_eq!(openssl_cipher_name(rustls), openssl, "{rustls}");
        }
        assert_eq!(openssl_cipher_name("Unknown(0x1234)"), "Unknown(0x1234)");
    }
}
