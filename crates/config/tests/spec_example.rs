//! The `gateway.yaml` example from SPEC.md (copied verbatim into `spec_example.yaml`)
//! and the repository's own commented `gateway.yaml` both go through the real parser.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use certgate_config::*;

const SPEC_EXAMPLE: &str = include_str!("spec_example.yaml");
const FINGERPRINT: &str = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";
const SPKI: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// SPEC's example is a reference card: it shows `"…"` for the two digests and a `tls:`
/// block on an `http` upstream to list every key. Filled in the way a user would, it
/// must parse.
fn completed_spec_example() -> String {
    let completed = SPEC_EXAMPLE
        .replace(
            r#"fingerprint_sha256: ["…"]"#,
            &format!("fingerprint_sha256: [\"{FINGERPRINT}\"]"),
        )
        .replace(
            r#"spki_sha256: ["…"]"#,
            &format!("spki_sha256: [\"{SPKI}\"]"),
        )
        .replace(
            "protocol: http                # http |",
            "protocol: https               # http |",
        );
    assert_ne!(completed, SPEC_EXAMPLE);
    completed
}

#[test]
fn spec_example_parses_once_placeholders_are_filled_in() {
    let file = Path::new("/etc/certgate/gateway.yaml");
    let config = match Config::parse(&completed_spec_example(), file) {
        Ok(config) => config,
        Err(errors) => panic!("{errors}"),
    };

    assert_eq!(
        config.admin,
        Some(AdminConfig {
            listen: "127.0.0.1:9901".parse().unwrap()
        })
    );
    assert_eq!(
        config.log,
        LogConfig {
            level: "info".into(),
            access: AccessLog::Stdout,
            format: LogFormat::Combined,
            stderr_format: StderrFormat::Text,
        }
    );

    assert_eq!(config.servers.len(), 1);
    let server = &config.servers[0];
    assert_eq!(server.name, "api");
    assert_eq!(
        server.listen,
        vec!["0.0.0.0:8443".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!(server.server_names, vec!["localhost"]);
    assert_eq!(
        server.tls,
        TlsConfig {
            cert: PathBuf::from("/etc/certgate/certs/server.crt"),
            key: PathBuf::from("/etc/certgate/certs/server.key"),
            protocols: vec![TlsProtocol::Tls12, TlsProtocol::Tls13],
            alpn: vec![Alpn::H2, Alpn::Http11],
            session_resumption: true,
            session_ticket_keys: vec![],
        }
    );
    assert_eq!(
        server.client_auth,
        ClientAuthConfig {
            verify: VerifyMode::On,
            ca: Some(PathBuf::from("/etc/certgate/certs/ca.crt")),
            trusted_ca: vec![],
            crl: vec![],
            verify_depth: 1,
            on_failure: OnFailure::Http,
        }
    );
    assert_eq!(
        server.identity,
        IdentityConfig {
            presets: vec![Preset::Nginx],
            set: vec![("X-Client-CN".into(), "$ssl_client_s_dn_cn".into())],
        }
    );

    assert_eq!(server.routes.len(), 1);
    let route = &server.routes[0];
    assert_eq!(
        route.matcher,
        RouteMatch {
            path_prefix: Some("/".into()),
            ..RouteMatch::default()
        }
    );
    assert_eq!(route.upstream, "app");
    assert!(route.require_client_cert);
    assert_eq!(
        route.allow,
        vec![
            AllowRule::Cn(vec!["my-client".into()]),
            AllowRule::Ou(vec!["payments".into()]),
            AllowRule::Subject("CN=my-client,O=Example".into()),
            AllowRule::SanUri(vec!["spiffe://example.org/ns/prod/*".into()]),
            AllowRule::SanDns(vec!["*.svc.example.org".into()]),
            AllowRule::FingerprintSha256(vec![FINGERPRINT.replace(':', "").to_ascii_lowercase()]),
            AllowRule::SpkiSha256(vec![SPKI.into()]),
        ]
    );
    assert_eq!(route.headers, vec![("X-Route".into(), "api".into())]);
    assert_eq!(route.max_body_size, Some(10 * 1024 * 1024));
    assert_eq!(
        route.timeouts,
        Timeouts {
            connect: Duration::from_secs(5),
            read: Duration::from_secs(60),
            send: Duration::from_secs(60)
        }
    );

    let app = &config.upstreams["app"];
    assert_eq!(
        app.servers,
        vec![UpstreamServer {
            address: "127.0.0.1:5000".into(),
            weight: 1
        }]
    );
    assert_eq!(app.protocol, UpstreamProtocol::Https);
    assert_eq!(app.lb, LbPolicy::RoundRobin);
    assert_eq!(
        app.health_check,
        Some(HealthCheck::Tcp {
            interval: Duration::from_secs(5)
        })
    );
    assert_eq!(app.keepalive, 64);
    assert_eq!(
        app.tls,
        Some(UpstreamTls {
            sni: Some("backend.internal".into()),
            verify: true,
            trusted_ca: Some(PathBuf::from("/etc/certgate/certs/upstream-ca.crt")),
            verify_depth: 2,
            cert: Some(PathBuf::from("/etc/certgate/certs/client.crt")),
            key: Some(PathBuf::from("/etc/certgate/certs/client.key")),
        })
    );
    // Nothing to warn about (upstream verify_depth is enforced, so it draws no warning).
    let warnings: Vec<String> = config.warnings().iter().map(|w| w.to_string()).collect();
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn spec_example_verbatim_reports_exactly_its_placeholders() {
    let errors = Config::parse(SPEC_EXAMPLE, Path::new("gateway.yaml")).unwrap_err();
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "gateway.yaml:39:34: servers[0].routes[0].allow[5].fingerprint_sha256[0]: expected a SHA-256 digest: 64 hex digits, colons allowed; found \"…\"",
            "gateway.yaml:40:27: servers[0].routes[0].allow[6].spki_sha256[0]: expected a SHA-256 digest: 64 hex digits, colons allowed; found \"…\"",
            "gateway.yaml:51:5: upstreams.app.tls: tls is only used with protocol https or grpcs (this upstream is http)",
        ]
    );
}

#[test]
fn repository_gateway_yaml_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../gateway.yaml");
    let config = match Config::load(&path) {
        Ok(config) => config,
        Err(errors) => panic!("{errors}"),
    };
    let base = path.parent().unwrap();
    assert!(
        config.admin.is_none(),
        "admin is commented out in the example"
    );
    let server = &config.servers[0];
    assert_eq!(server.tls.cert, base.join("certs/server.crt"));
    assert_eq!(server.tls.key, base.join("certs/server.key"));
    assert_eq!(server.client_auth.ca, Some(base.join("certs/ca.crt")));
    assert_eq!(server.client_auth.verify, VerifyMode::On);
    for upstream in config.upstreams.values() {
        assert_eq!(upstream.protocol, UpstreamProtocol::Http);
        assert!(upstream.tls.is_none());
    }
    let app = &config.upstreams["app"];
    assert_eq!(app.servers[0].address, "127.0.0.1:5000");
    assert!(server.routes.iter().any(|r| r.upstream == "app"));
    assert!(config.warnings().is_empty(), "{:?}", config.warnings());
}

#[test]
fn load_names_an_unreadable_file() {
    let errors = Config::load(Path::new("/nonexistent/certgate/gateway.yaml")).unwrap_err();
    assert_eq!(errors.len(), 1);
    let text = errors.to_string();
    assert!(
        text.starts_with(
            "/nonexistent/certgate/gateway.yaml: cannot read the configuration file: "
        ),
        "{text}"
    );
}
