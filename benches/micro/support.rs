//! Fixtures shared by the micro-benchmarks: a root → intermediate → client PKI made at
//! run time (no key is committed), written next to a `gateway.yaml` that requires client
//! certificates with `verify_depth: 2`, and that configuration compiled the way
//! `certgate run` compiles it.

use std::path::{Path, PathBuf};

use certgate_config::Config;
use certgate_pki::issue::{Authority, CertKind, IssueRequest, Issued, KeyAlgorithm};
use certgate_proxy::compile::Compiled;
use rustls_pki_types::CertificateDer;

/// One benchmark PKI on disk.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub config_text: String,
    /// The client's chain as it arrives in the handshake: leaf, then intermediate.
    pub client_chain: Vec<CertificateDer<'static>>,
    pub root: CertificateDer<'static>,
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// A PKI with keys of `algorithm`, and a config naming it.
pub fn fixture(algorithm: KeyAlgorithm) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let (root_ca, root) =
        Authority::new_root("Bench Root CA", Some("certgate bench"), 3650, algorithm)
            .expect("root");
    let mut request = IssueRequest::new(CertKind::Intermediate { path_len: 0 }, "Bench Issuing CA");
    request.organization = Some("certgate bench".into());
    request.key = algorithm;
    let intermediate: Issued = root_ca.issue(&request).expect("intermediate");
    let issuing = Authority::from_parts(
        vec![intermediate.certificate.clone()],
        intermediate.key_pkcs8(),
        Path::new("intermediate.crt"),
        Path::new("intermediate.key"),
    )
    .expect("intermediate authority");

    let mut request = IssueRequest::new(CertKind::Server, "localhost");
    request.dns_names = vec!["localhost".into()];
    request.key = algorithm;
    let server = issuing.issue(&request).expect("server");

    let mut request = IssueRequest::new(CertKind::Client, "bench-client");
    request.organization = Some("certgate bench".into());
    request.organizational_unit = Some("payments".into());
    request.uris = vec!["spiffe://example.org/ns/prod/sa/bench".into()];
    request.emails = vec!["bench@example.org".into()];
    request.key = algorithm;
    let client = issuing.issue(&request).expect("client");

    let path = dir.path();
    write(&path.join("ca.crt"), &root.certificate_pem());
    write(&path.join("server.crt"), &server.chain_pem());
    write(&path.join("server.key"), &server.key_pem());
    let config_text = format!(
        r#"servers:
  - name: bench
    listen: ["127.0.0.1:18443"]
    tls:
      cert: {dir}/server.crt
      key: {dir}/server.key
    client_auth:
      verify: on
      ca: {dir}/ca.crt
      verify_depth: 2
    identity:
      preset: [nginx]
      set:
        X-Client-CN: "$ssl_client_s_dn_cn"
        X-Client-SPIFFE: "$ssl_client_spiffe_id"
    routes:
      - match: {{ path_prefix: / }}
        upstream: app
upstreams:
  app:
    servers: ["127.0.0.1:5000"]
"#,
        dir = path.display()
    );
    let config_path = path.join("gateway.yaml");
    write(&config_path, &config_text);
    Fixture {
        client_chain: client.chain.clone(),
        root: root.certificate.clone(),
        dir,
        config_path,
        config_text,
    }
}

impl Fixture {
    pub fn config(&self) -> Config {
        Config::parse(&self.config_text, &self.config_path).expect("bench config parses")
    }

    pub fn compiled(&self) -> Compiled {
        certgate_proxy::compile::compile(&self.config()).expect("bench config compiles")
    }
}
