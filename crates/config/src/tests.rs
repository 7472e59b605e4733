//! Behaviour of `Config::parse` as a user sees it: defaults, and each class of error
//! with its exact text, line and column.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::*;

/// The smallest valid file; tests splice their own keys into copies of it.
const MINIMAL: &str = "\
servers:
  - listen: 127.0.0.1:8443
    tls: { cert: certs/server.crt, key: certs/server.key }
    client_auth: { ca: certs/ca.crt }
    routes:
      - match: { path_prefix: / }
        upstream: app
upstreams:
  app: { servers: [\"127.0.0.1:5000\"] }
";

fn parse(yaml: &str) -> Config {
    match Config::parse(yaml, Path::new("/etc/certgate/gateway.yaml")) {
        Ok(config) => config,
        Err(errors) => panic!("unexpected errors:\n{errors}"),
    }
}

/// Every error, displayed as the CLI prints it.
fn errors(yaml: &str) -> Vec<String> {
    match Config::parse(yaml, Path::new("gateway.yaml")) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn error(yaml: &str) -> String {
    let mut all = errors(yaml);
    assert_eq!(all.len(), 1, "expected exactly one error, got {all:#?}");
    all.remove(0)
}

#[test]
fn minimal_config_gets_every_default() {
    let config = parse(MINIMAL);
    assert_eq!(config.admin, None);
    assert_eq!(
        config.log,
        LogConfig {
            level: "info".into(),
            access: AccessLog::Stdout,
            format: LogFormat::Combined,
            stderr_format: StderrFormat::Text,
        }
    );
    assert_eq!(config.file, PathBuf::from("/etc/certgate/gateway.yaml"));

    let server = &config.servers[0];
    assert_eq!(server.name, "server0");
    assert_eq!(
        server.listen,
        vec!["127.0.0.1:8443".parse::<SocketAddr>().unwrap()]
    );
    assert!(server.server_names.is_empty());
    assert_eq!(
        server.tls.cert,
        PathBuf::from("/etc/certgate/certs/server.crt")
    );
    assert_eq!(
        server.tls.key,
        PathBuf::from("/etc/certgate/certs/server.key")
    );
    assert_eq!(
        server.tls.protocols,
        vec![TlsProtocol::Tls12, TlsProtocol::Tls13]
    );
    assert_eq!(server.tls.alpn, vec![Alpn::H2, Alpn::Http11]);
    assert!(server.tls.session_resumption);
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
            set: vec![]
        }
    );

    let route = &server.routes[0];
    assert!(
        !route.require_client_cert,
        "only verify: on refuses anonymous callers by default, as nginx"
    );
    assert!(route.allow.is_empty());
    assert!(route.headers.is_empty());
    assert_eq!(route.max_body_size, Some(1024 * 1024));
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
    assert_eq!(app.protocol, UpstreamProtocol::Http);
    assert_eq!(app.lb, LbPolicy::RoundRobin);
    assert_eq!(app.health_check, None);
    assert_eq!(app.keepalive, 64);
    assert_eq!(app.tls, None);
    assert!(config.warnings().is_empty());
}

#[test]
fn relative_paths_follow_the_config_file_and_absolute_ones_stay() {
    let yaml = MINIMAL.replace("key: certs/server.key", "key: /abs/server.key");
    let config = Config::parse(&yaml, Path::new("gateway.yaml")).unwrap();
    assert_eq!(
        config.servers[0].tls.cert,
        PathBuf::from("certs/server.crt")
    );
    assert_eq!(config.servers[0].tls.key, PathBuf::from("/abs/server.key"));
    let config = Config::parse(&yaml, Path::new("conf/gw.yaml")).unwrap();
    assert_eq!(
        config.servers[0].tls.cert,
        PathBuf::from("conf/certs/server.crt")
    );
}

#[test]
fn yaml_syntax_errors_carry_file_line_and_column() {
    assert_eq!(
        error("servers:\n  - listen: [a\n"),
        "gateway.yaml:3:1: invalid YAML: did not find expected ',' or ']', while parsing a flow sequence at line 2 column 13"
    );
    assert_eq!(
        error("upstreams: {}\nservers: []\nservers: []\n"),
        "gateway.yaml:3:1: servers: duplicate key (first at line 2)"
    );
}

/// Found by the `config_yaml` fuzz target (fuzz/regressions/config_yaml/): serde_yaml
/// gives this error no position, and it printed as file-level.
#[test]
fn a_second_yaml_document_is_located_where_it_starts() {
    let text = format!("{MINIMAL}---\nservers: []\n");
    let line = text.lines().count() - 1;
    assert_eq!(
        error(&text),
        format!(
            "gateway.yaml:{line}:1: invalid YAML: deserializing from YAML containing more than one document is not supported"
        )
    );
    assert_eq!(
        error("a: 1\n...\n%YAML 1.2\n---\nb: 2\n"),
        "gateway.yaml:4:1: invalid YAML: deserializing from YAML containing more than one document is not supported"
    );
    // libyaml starts a second document at a scalar after the first one's root
    // collection; yaml-rust2 (the position index) stops reading there.
    assert_eq!(
        error("  - a: 1\nb\n"),
        "gateway.yaml:2:1: invalid YAML: deserializing from YAML containing more than one document is not supported"
    );
}

#[test]
fn unknown_keys_are_located_and_suggest_the_nearest_key() {
    let yaml = MINIMAL.replace(
        "client_auth: { ca: certs/ca.crt }",
        "client_auth: { ca: certs/ca.crt, verfy_depth: 2 }",
    );
    assert_eq!(
        error(&yaml),
        "gateway.yaml:4:38: servers[0].client_auth.verfy_depth: unknown key; expected one of verify, ca, trusted_ca, crl, verify_depth, on_failure (did you mean verify_depth?)"
    );
    assert_eq!(
        error(&format!("{MINIMAL}logs: {{}}\n")),
        "gateway.yaml:10:1: logs: unknown key; expected one of admin, log, servers, upstreams, shutdown_grace, keepalive_timeout, watch, pid_file, client_header_timeout, client_body_timeout, large_client_header_buffers, max_headers, max_connections, http2_max_concurrent_streams, underscores_in_headers, paths (did you mean log?)"
    );
}

#[test]
fn wrong_types_name_what_was_expected_and_found() {
    let yaml = MINIMAL.replace(
        "client_auth: { ca: certs/ca.crt }",
        "client_auth:\n      ca: certs/ca.crt\n      verify_depth: x",
    );
    assert_eq!(
        error(&yaml),
        "gateway.yaml:6:7: servers[0].client_auth.verify_depth: expected an integer; found \"x\""
    );
    let yaml = MINIMAL.replace(
        "client_auth: { ca: certs/ca.crt }",
        "client_auth: { ca: certs/ca.crt, verify_depth: -1 }",
    );
    assert_eq!(
        error(&yaml),
        "gateway.yaml:4:38: servers[0].client_auth.verify_depth: expected an integer from 0 to 4294967295; found -1"
    );
    let yaml = MINIMAL.replace(
        "upstream: app",
        "upstream: app\n        require_client_cert: yes",
    );
    assert_eq!(
        error(&yaml),
        "gateway.yaml:8:9: servers[0].routes[0].require_client_cert: expected true or false; found \"yes\""
    );
}

#[test]
fn missing_required_keys_are_reported_at_their_own_path() {
    let yaml = MINIMAL.replace(
        "tls: { cert: certs/server.crt, key: certs/server.key }",
        "tls: { key: certs/server.key }",
    );
    assert_eq!(
        error(&yaml),
        "gateway.yaml:3:5: servers[0].tls.cert: missing required key"
    );
    let yaml = MINIMAL.replace("        upstream: app\n", "");
    assert_eq!(
        error(&yaml),
        "gateway.yaml:6:9: servers[0].routes[0].upstream: missing required key"
    );
}

#[test]
fn bad_enum_values_list_the_choices() {
    let yaml = MINIMAL.replace(
        "client_auth: { ca: certs/ca.crt }",
        "client_auth:\n      verify: yes\n      ca: certs/ca.crt",
    );
    assert_eq!(
        error(&yaml),
        "gateway.yaml:5:7: servers[0].client_auth.verify: expected one of on, optional, optional_no_ca, off; found \"yes\""
    );
    let yaml = MINIMAL.replace(
        "upstreams:\n  app: { servers: [\"127.0.0.1:5000\"] }",
        "upstreams:\n  app: { servers: [\"127.0.0.1:5000\"], lb: round-robin }",
    );
    assert_eq!(
        error(&yaml),
        "gateway.yaml:9:39: upstreams.app.lb: expected one of round_robin, random, consistent_hash; found \"round-robin\" (did you mean round_robin?)"
    );
}

#[test]
fn verify_accepts_yaml_1_1_booleans() {
    let on = parse(&MINIMAL.replace("{ ca: certs/ca.crt }", "{ verify: true, ca: certs/ca.crt }"));
    assert_eq!(on.servers[0].client_auth.verify, VerifyMode::On);
    let off = parse(&MINIMAL.replace("{ ca: certs/ca.crt }", "{ verify: false }"));
    assert_eq!(off.servers[0].client_auth.verify, VerifyMode::Off);
    let no_ca = parse(&MINIMAL.replace("{ ca: certs/ca.crt }", "{ verify: optional_no_ca }"));
    assert_eq!(
        no_ca.servers[0].client_auth.verify,
        VerifyMode::OptionalNoCa
    );
    assert_eq!(no_ca.servers[0].client_auth.ca, None);
}

#[test]
fn verify_on_or_optional_needs_a_ca() {
    let yaml = MINIMAL.replace("    client_auth: { ca: certs/ca.crt }\n", "");
    assert_eq!(
        error(&yaml),
        "gateway.yaml:2:5: servers[0].client_auth: verify: on needs ca or trusted_ca to check client certificates against (or set verify: off to not ask for one)"
    );
    let yaml = MINIMAL.replace("{ ca: certs/ca.crt }", "{ verify: optional }");
    assert_eq!(
        error(&yaml),
        "gateway.yaml:4:5: servers[0].client_auth: verify: optional needs ca or trusted_ca to check client certificates against (or set verify: off to not ask for one)"
    );
    let config = parse(&MINIMAL.replace(
        "{ ca: certs/ca.crt }",
        "{ trusted_ca: [a.pem, b.pem], crl: c.crl }",
    ));
    let auth = &config.servers[0].client_auth;
    assert_eq!(
        auth.trusted_ca,
        vec![
            PathBuf::from("/etc/certgate/a.pem"),
            PathBuf::from("/etc/certgate/b.pem")
        ]
    );
    assert_eq!(auth.crl, vec![PathBuf::from("/etc/certgate/c.crl")]);
}

#[test]
fn old_tls_versions_are_refused() {
    let yaml = MINIMAL.replace(
        "key: certs/server.key }",
        "key: certs/server.key, protocols: [TLSv1.1, TLSv1.3] }",
    );
    assert_eq!(
        error(&yaml),
        "gateway.yaml:3:71: servers[0].tls.protocols[0]: TLSv1.1 is not supported (insecure, RFC 8996); use TLSv1.2 and/or TLSv1.3"
    );
    let config = parse(&MINIMAL.replace(
        "key: certs/server.key }",
        "key: certs/server.key, protocols: TLSv1.3, alpn: [http/1.1] }",
    ));
    assert_eq!(config.servers[0].tls.protocols, vec![TlsProtocol::Tls13]);
    assert_eq!(config.servers[0].tls.alpn, vec![Alpn::Http11]);
    let yaml = MINIMAL.replace(
        "key: certs/server.key }",
        "key: certs/server.key, alpn: [h3] }",
    );
    assert_eq!(error(&yaml), "gateway.yaml:3:66: servers[0].tls.alpn[0]: expected one of h2, http/1.1; found \"h3\" (did you mean h2?)");
}

#[test]
fn session_ticket_keys_are_file_paths() {
    assert!(parse(MINIMAL).servers[0].tls.session_ticket_keys.is_empty());
    let config = parse(&MINIMAL.replace(
        "key: certs/server.key }",
        "key: certs/server.key, session_ticket_keys: [tickets/new.key, /run/secrets/old.key] }",
    ));
    assert_eq!(
        config.servers[0].tls.session_ticket_keys,
        vec![
            PathBuf::from("/etc/certgate/tickets/new.key"),
            PathBuf::from("/run/secrets/old.key")
        ]
    );
    assert!(config.warnings().is_empty());
    // A single file needs no list.
    let config = parse(&MINIMAL.replace(
        "key: certs/server.key }",
        "key: certs/server.key, session_ticket_keys: t.key }",
    ));
    assert_eq!(
        config.servers[0].tls.session_ticket_keys,
        vec![PathBuf::from("/etc/certgate/t.key")]
    );
    assert_eq!(
        error(&MINIMAL.replace(
            "key: certs/server.key }",
            "key: certs/server.key, session_ticket_keys: [a.key, \"\"] }",
        )),
        "gateway.yaml:3:88: servers[0].tls.session_ticket_keys[1]: expected a file path; found an empty string"
    );
    let config = parse(&MINIMAL.replace(
        "key: certs/server.key }",
        "key: certs/server.key, session_resumption: false, session_ticket_keys: [t.key] }",
    ));
    let warnings: Vec<String> = config.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        vec!["/etc/certgate/gateway.yaml:3:86: servers[0].tls.session_ticket_keys: ignored with session_resumption: false"]
    );
}

#[test]
fn errors_from_all_sections_are_collected_in_file_order() {
    let yaml = "\
log: { level: loud }
servers:
  - listen: nowhere
    tls: { cert: a, key: b, bogus: 1 }
    client_auth: { ca: ca.crt, verify_depth: deep }
    routes:
      - match: { path: api }
        upstream: missing
upstreams:
  app: { servers: [\"localhost\"] }
";
    assert_eq!(
        errors(yaml),
        vec![
            "gateway.yaml:1:8: log.level: expected one of error, warn, info, debug, trace; found \"loud\"",
            "gateway.yaml:3:5: servers[0].listen[0]: expected an IP address and port like 0.0.0.0:8443, [::]:8443 or 127.0.0.1:8443 (host names are not resolved); found \"nowhere\"",
            "gateway.yaml:4:29: servers[0].tls.bogus: unknown key; expected one of cert, key, protocols, alpn, session_resumption, session_ticket_keys",
            "gateway.yaml:5:32: servers[0].client_auth.verify_depth: expected an integer; found \"deep\"",
            "gateway.yaml:7:18: servers[0].routes[0].match.path: must start with /; found \"api\"",
            "gateway.yaml:8:9: servers[0].routes[0].upstream: unknown upstream \"missing\"; defined: app",
            "gateway.yaml:10:20: upstreams.app.servers[0]: expected host:port, optionally followed by weight=N; found \"localhost\"",
        ]
    );
}

#[test]
fn a_dropped_key_causes_no_follow_on_errors() {
    // `routes` is dropped for its bad item; "at least one route is required" would mislead.
    let yaml = MINIMAL.replace("upstream: app", "upstream: [app]");
    assert_eq!(
        error(&yaml),
        "gateway.yaml:7:9: servers[0].routes[0].upstream: expected a string; found a list"
    );
    // An invalid verify mode must not also claim a CA is missing.
    let yaml = MINIMAL.replace("{ ca: certs/ca.crt }", "{ verify: sometimes }");
    assert_eq!(
        error(&yaml),
        "gateway.yaml:4:20: servers[0].client_auth.verify: expected one of on, optional, optional_no_ca, off; found \"sometimes\""
    );
}

#[test]
fn a_misspelt_key_is_reported_as_the_cause_not_by_its_consequences() {
    // `client_auht`: the missing client_auth would mean `verify: on` without a CA.
    let yaml = MINIMAL.replace("client_auth: { ca:", "client_auht: { ca:");
    assert_eq!(
        error(&yaml),
        "gateway.yaml:4:5: servers[0].client_auht: unknown key; expected one of name, listen, server_names, tls, client_auth, identity, routes (did you mean client_auth?)"
    );
    // A required key: not also "tls: missing required key".
    let yaml = MINIMAL.replace("    tls: {", "    tsl: {");
    assert_eq!(
        error(&yaml),
        "gateway.yaml:3:5: servers[0].tsl: unknown key; expected one of name, listen, server_names, tls, client_auth, identity, routes (did you mean tls?)"
    );
    // At the top level: not also "upstreams: missing required key".
    let yaml = MINIMAL.replace("upstreams:", "upstream:");
    let all = errors(&yaml);
    assert!(
        all[0].starts_with("gateway.yaml:8:1: upstream: unknown key;")
            && all[0].ends_with("(did you mean upstreams?)"),
        "{all:#?}"
    );
    assert!(
        !all.iter().any(|e| e.contains("missing required key")),
        "{all:#?}"
    );
    // When the meant key is written too, its own errors are real and still reported.
    let yaml = MINIMAL.replace(
        "client_auth: { ca: certs/ca.crt }",
        "client_auth: { verify: sometimes }\n    client_auht: {}",
    );
    assert_eq!(errors(&yaml).len(), 2, "{:#?}", errors(&yaml));
}

#[test]
fn routes_are_required() {
    let yaml = MINIMAL.replace(
        "    routes:\n      - match: { path_prefix: / }\n        upstream: app\n",
        "",
    );
    assert_eq!(
        errors(&yaml),
        vec!["gateway.yaml:2:5: servers[0].routes: at least one route is required".to_string()]
    );
}

#[test]
fn unknown_upstreams_list_the_defined_ones() {
    let yaml = "\
servers:
  - listen: 127.0.0.1:8443
    tls: { cert: c, key: k }
    client_auth: { verify: off }
    routes:
      - match: { path_prefix: / }
        upstream: app
      - match: { path_prefix: /x }
        upstream: x
upstreams:
  grpc: { servers: [\"127.0.0.1:50051\"], protocol: grpc }
  app: { servers: [\"127.0.0.1:5000\"] }
";
    assert_eq!(error(yaml), "gateway.yaml:9:9: servers[0].routes[1].upstream: unknown upstream \"x\"; defined: app, grpc");
}

#[test]
fn body_sizes_use_nginx_syntax() {
    let size = |value: &str| {
        parse(&MINIMAL.replace(
            "upstream: app",
            &format!("upstream: app\n        max_body_size: {value}"),
        ))
        .servers[0]
            .routes[0]
            .max_body_size
    };
    assert_eq!(size("10m"), Some(10 << 20));
    assert_eq!(size("512k"), Some(512 << 10));
    assert_eq!(size("1g"), Some(1 << 30));
    assert_eq!(size("4096"), Some(4096));
    assert_eq!(size("0"), None, "0 = unlimited, as nginx");
    let yaml = MINIMAL.replace(
        "upstream: app",
        "upstream: app\n        max_body_size: 10mb",
    );
    assert_eq!(
        error(&yaml),
        "gateway.yaml:8:9: servers[0].routes[0].max_body_size: expected a size like 1048576, 512k, 10m or 1g; found \"10mb\""
    );
}

#[test]
fn timeouts_use_nginx_syntax() {
    let yaml = MINIMAL.replace(
        "upstream: app",
        "upstream: app\n        timeouts: { connect: 500ms, read: 2m, send: 30 }",
    );
    let timeouts = parse(&yaml).servers[0].routes[0].timeouts;
    assert_eq!(
        timeouts,
        Timeouts {
            connect: Duration::from_millis(500),
            read: Duration::from_secs(120),
            send: Duration::from_secs(30)
        }
    );
    let yaml = MINIMAL.replace(
        "upstream: app",
        "upstream: app\n        timeouts: { connect: 5 sec, read: 0s }",
    );
    assert_eq!(
        errors(&yaml),
        vec![
            "gateway.yaml:8:21: servers[0].routes[0].timeouts.connect: expected a time like 500ms, 5s, 1m, 1h or 1m30s; found \"5 sec\"",
            "gateway.yaml:8:37: servers[0].routes[0].timeouts.read: must be greater than 0",
        ]
    );
}

#[test]
fn route_matchers_are_checked() {
    let with_match = |m: &str| MINIMAL.replace("{ path_prefix: / }", m);
    assert_eq!(
        error(&with_match("{}")),
        "gateway.yaml:6:9: servers[0].routes[0].match: at least one of path, path_prefix, path_regex, grpc_service, host is required"
    );
    assert_eq!(
        error(&with_match("{ path_regex: \"^/(a\" }")),
        "gateway.yaml:6:18: servers[0].routes[0].match.path_regex: invalid regular expression: unclosed group"
    );
    assert_eq!(
        error(&with_match("{ grpc_service: /helloworld.Greeter/ }")),
        "gateway.yaml:6:18: servers[0].routes[0].match.grpc_service: expected a gRPC service name like package.Service (no slashes); found \"/helloworld.Greeter/\""
    );
    let config = parse(&with_match(
        "{ grpc_service: helloworld.Greeter, host: API.Example.org, path_regex: \"^/v[0-9]+/\" }",
    ));
    let matcher = &config.servers[0].routes[0].matcher;
    assert_eq!(matcher.grpc_service.as_deref(), Some("helloworld.Greeter"));
    assert_eq!(matcher.host.as_deref(), Some("api.example.org"));
    assert_eq!(matcher.path_regex.as_deref(), Some("^/v[0-9]+/"));
}

#[test]
fn upstream_servers_use_nginx_server_syntax() {
    let with_servers = |s: &str| MINIMAL.replace("[\"127.0.0.1:5000\"]", s);
    let config = parse(&with_servers(
        "[\"10.0.0.1:80 weight=3\", \"[::1]:8080\", \"backend.internal:5000\"]",
    ));
    assert_eq!(
        config.upstreams["app"].servers,
        vec![
            UpstreamServer {
                address: "10.0.0.1:80".into(),
                weight: 3
            },
            UpstreamServer {
                address: "[::1]:8080".into(),
                weight: 1
            },
            UpstreamServer {
                address: "backend.internal:5000".into(),
                weight: 1
            },
        ]
    );
    assert_eq!(
        error(&with_servers("[\"127.0.0.1:5000 max_fails=3\"]")),
        "gateway.yaml:9:20: upstreams.app.servers[0]: unknown server parameter \"max_fails=3\"; only weight=N is supported"
    );
    assert_eq!(
        error(&with_servers("[\"127.0.0.1:5000 weight=0\"]")),
        "gateway.yaml:9:20: upstreams.app.servers[0]: weight must be an integer from 1 to 4294967295; found \"weight=0\""
    );
    assert_eq!(
        error(&with_servers("[\"::1:5000\"]")),
        "gateway.yaml:9:20: upstreams.app.servers[0]: IPv6 addresses need brackets, as [::1]:5000; found \"::1:5000\""
    );
    assert_eq!(
        error(&with_servers("[]")),
        "gateway.yaml:9:10: upstreams.app.servers: at least one server is required"
    );
}

#[test]
fn upstream_tls_only_with_tls_protocols() {
    let with_upstream = |u: &str| MINIMAL.replace("{ servers: [\"127.0.0.1:5000\"] }", u);
    assert_eq!(
        error(&with_upstream("{ servers: [\"127.0.0.1:5000\"], tls: { verify: false } }")),
        "gateway.yaml:9:39: upstreams.app.tls: tls is only used with protocol https or grpcs (this upstream is http)"
    );
    let config = parse(&with_upstream(
        "{ servers: [\"127.0.0.1:5000\"], protocol: https }",
    ));
    assert_eq!(config.upstreams["app"].tls, Some(UpstreamTls::default()));
    assert!(config.upstreams["app"].tls.as_ref().unwrap().verify);
    assert_eq!(
        error(&with_upstream(
            "{ servers: [\"127.0.0.1:5000\"], protocol: grpcs, tls: { cert: c.crt } }"
        )),
        "gateway.yaml:9:56: upstreams.app.tls.key: missing: cert is set, so key is required"
    );
    let yaml = with_upstream(
        "\n    servers: [\"127.0.0.1:5000\"]\n    protocol: grpcs\n    tls: { sni: Backend.Internal, cert: c.crt, key: c.key, verify_depth: 2 }\n    health_check: { type: http }",
    );
    let parsed = parse(&yaml);
    // verify_depth is enforced on upstream connections: no warning.
    let warnings: Vec<String> = parsed.warnings().iter().map(ToString::to_string).collect();
    assert!(warnings.is_empty(), "{warnings:?}");
    let app = &parsed.upstreams["app"];
    assert_eq!(
        app.tls,
        Some(UpstreamTls {
            sni: Some("backend.internal".into()),
            verify: true,
            trusted_ca: None,
            verify_depth: 2,
            cert: Some(PathBuf::from("/etc/certgate/c.crt")),
            key: Some(PathBuf::from("/etc/certgate/c.key")),
        })
    );
    assert_eq!(
        app.health_check,
        Some(HealthCheck::Http {
            path: "/".into(),
            interval: Duration::from_secs(5)
        })
    );
}

#[test]
fn servers_sharing_an_address_need_distinct_names() {
    let two = |a: &str, b: &str| {
        format!(
            "\
servers:
  - name: one
    listen: 0.0.0.0:8443
{a}    tls: {{ cert: c, key: k }}
    client_auth: {{ verify: off }}
    routes: [{{ match: {{ path_prefix: / }}, upstream: app }}]
  - name: two
    listen: [\"127.0.0.1:9000\", \"0.0.0.0:8443\"]
{b}    tls: {{ cert: c, key: k }}
    client_auth: {{ verify: off }}
    routes: [{{ match: {{ path_prefix: / }}, upstream: app }}]
upstreams:
  app: {{ servers: [\"127.0.0.1:5000\"] }}
"
        )
    };
    assert_eq!(
        error(&two("", "")),
        "gateway.yaml:8:32: servers[1].listen[1]: 0.0.0.0:8443 already has a default server, servers[0] (one); give one of them server_names"
    );
    assert_eq!(
        error(&two("    server_names: [a.example, Shared.Example]\n", "    server_names: [shared.example]\n")),
        "gateway.yaml:10:20: servers[1].server_names[0]: \"shared.example\" on 0.0.0.0:8443 is already served by servers[0] (one)"
    );
    // One default server plus one named server on an address is how SNI vhosts work.
    let config = parse(&two("", "    server_names: [\"*.example.org\"]\n"));
    assert_eq!(config.servers[1].server_names, vec!["*.example.org"]);
    // Names must be unique: they label metrics.
    let yaml = two("", "    server_names: [b.example]\n").replace("name: two", "name: one");
    assert_eq!(
        error(&yaml),
        "gateway.yaml:7:5: servers[1].name: duplicate server name \"one\" (also servers[0])"
    );
}

#[test]
fn listen_accepts_nginx_forms() {
    let listen = |l: &str| {
        parse(&MINIMAL.replace("listen: 127.0.0.1:8443", &format!("listen: {l}"))).servers[0]
            .listen
            .clone()
    };
    let addrs = |list: &[&str]| {
        list.iter()
            .map(|a| a.parse::<SocketAddr>().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(listen("8443"), addrs(&["0.0.0.0:8443"]));
    assert_eq!(listen("\"*:8443\""), addrs(&["0.0.0.0:8443"]));
    assert_eq!(
        listen("[\"[::]:8443\", \"0.0.0.0:8443\"]"),
        addrs(&["[::]:8443", "0.0.0.0:8443"])
    );
    assert_eq!(
        error(&MINIMAL.replace(
            "listen: 127.0.0.1:8443",
            "listen: [\"127.0.0.1:8443\", \"127.0.0.1:8443\"]"
        )),
        "gateway.yaml:2:32: servers[0].listen[1]: 127.0.0.1:8443 is listed twice"
    );
}

#[test]
fn identity_presets_and_headers() {
    let with_identity =
        |i: &str| MINIMAL.replace("    routes:", &format!("    identity:\n{i}    routes:"));
    let config = parse(&with_identity(
        "      preset: [xfcc, rfc9440, xfcc]\n      set:\n        X-Z: \"$ssl_client_s_dn\"\n        X-A: 42\n",
    ));
    let identity = &config.servers[0].identity;
    assert_eq!(identity.presets, vec![Preset::Xfcc, Preset::Rfc9440]);
    assert_eq!(
        identity.set,
        vec![
            ("X-Z".into(), "$ssl_client_s_dn".into()),
            ("X-A".into(), "42".into())
        ]
    );
    assert_eq!(
        parse(&with_identity("      preset: none\n")).servers[0]
            .identity
            .presets,
        vec![Preset::None]
    );
    assert_eq!(
        parse(&with_identity("      preset: []\n")).servers[0]
            .identity
            .presets,
        vec![Preset::None]
    );
    assert_eq!(
        error(&with_identity("      preset: [nginx, ngnix]\n")),
        "gateway.yaml:6:23: servers[0].identity.preset[1]: expected one of nginx, xfcc, rfc9440, none; found \"ngnix\" (did you mean nginx?)"
    );
    assert_eq!(
        error(&with_identity("      preset: [nginx, none]\n")),
        "gateway.yaml:6:7: servers[0].identity.preset: none cannot be combined with other presets"
    );
    assert_eq!(
        errors(&with_identity("      set:\n        \"X Bad\": a\n        Content-Length: \"1\"\n        X-Ok: a\n        x-ok: b\n")),
        vec![
            "gateway.yaml:7:9: servers[0].identity.set.X Bad: \"X Bad\" is not a valid header name",
            "gateway.yaml:8:9: servers[0].identity.set.Content-Length: Content-Length cannot be set: it describes the connection or the message framing",
            "gateway.yaml:10:9: servers[0].identity.set.x-ok: x-ok is set twice (header names are case-insensitive)",
        ]
    );
    let yaml = MINIMAL.replace(
        "upstream: app",
        "upstream: app\n        headers: { X-Evil: \"a\\r\\nHost: b\" }",
    );
    assert_eq!(
        error(&yaml),
        "gateway.yaml:8:20: servers[0].routes[0].headers.X-Evil: header values cannot contain line breaks or control characters"
    );
}

#[test]
fn allow_rules() {
    let with_allow = |a: &str| {
        MINIMAL.replace(
            "upstream: app",
            &format!("upstream: app\n        allow:\n{a}"),
        )
    };
    let config = parse(&with_allow(
        "          - cn: solo\n          - san_dns: [\"*.SVC.example.org\"]\n          - spki_sha256: [\"AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99\"]\n",
    ));
    assert_eq!(
        config.servers[0].routes[0].allow,
        vec![
            AllowRule::Cn(vec!["solo".into()]),
            AllowRule::SanDns(vec!["*.svc.example.org".into()]),
            AllowRule::SpkiSha256(vec![
                "aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899".into()
            ]),
        ]
    );
    assert_eq!(
        errors(&with_allow("          - cn: [a]\n            ou: [b]\n          - common_name: [a]\n          - subject: [a, b]\n")),
        vec![
            "gateway.yaml:9:13: servers[0].routes[0].allow[0]: each item holds exactly one rule, found cn, ou; write one item per rule (any rule that matches allows)",
            "gateway.yaml:11:13: servers[0].routes[0].allow[1].common_name: unknown rule; expected one of cn, ou, subject, issuer, subject_regex, issuer_regex, san_uri, san_dns, fingerprint_sha256, fingerprint_sha1, serial, spki_sha256, verified",
            "gateway.yaml:12:13: servers[0].routes[0].allow[2].subject: expected one subject DN such as \"CN=my-client,O=Example\"; use one item per subject",
        ]
    );
    assert_eq!(
        error(&MINIMAL.replace("upstream: app", "upstream: app\n        allow: []")),
        "gateway.yaml:8:9: servers[0].routes[0].allow: an empty list would allow nobody; remove allow to accept any verified certificate"
    );
    let yaml =
        with_allow("          - cn: [a]\n").replace("{ ca: certs/ca.crt }", "{ verify: off }");
    assert_eq!(
        error(&yaml),
        "gateway.yaml:8:9: servers[0].routes[0].allow: allow rules need a client certificate, but servers[0].client_auth.verify is off"
    );
}

#[test]
fn nginx_style_rules_regexes_serials_sha1_and_verified() {
    let with = |key: &str, items: &str| {
        MINIMAL.replace(
            "upstream: app",
            &format!("upstream: app\n        {key}:\n{items}"),
        )
    };
    let config = parse(&with(
        "allow",
        "          - subject_regex: [\"CN=admin\", \"(?i)ou=ops\"]\n          - issuer_regex: \"^CN=Example CA,\"\n          - issuer: \"CN=Example CA,O=Example\"\n          - fingerprint_sha1: [\"AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD\"]\n          - serial: [\"0a:1b\", \"-01\", \"8F01\"]\n          - verified: true\n",
    ));
    let route = &config.servers[0].routes[0];
    assert_eq!(
        route.allow,
        vec![
            AllowRule::SubjectRegex(vec!["CN=admin".into(), "(?i)ou=ops".into()]),
            AllowRule::IssuerRegex(vec!["^CN=Example CA,".into()]),
            AllowRule::Issuer("CN=Example CA,O=Example".into()),
            AllowRule::FingerprintSha1(vec!["aabbccddeeff00112233445566778899aabbccdd".into()]),
            AllowRule::Serial(vec!["0A1B".into(), "-01".into(), "8F01".into()]),
            AllowRule::Verified,
        ]
    );
    assert!(route.deny.is_empty());
    assert!(!route.deny_all, "deny_all defaults to false");

    let config = parse(&with(
        "deny",
        "          - subject_regex: \"CN=mallory\"\n          - serial: \"0A\"\n",
    ));
    let route = &config.servers[0].routes[0];
    assert!(route.allow.is_empty());
    assert_eq!(
        route.deny,
        vec![
            AllowRule::SubjectRegex(vec!["CN=mallory".into()]),
            AllowRule::Serial(vec!["0A".into()]),
        ]
    );

    let config = parse(&MINIMAL.replace("upstream: app", "upstream: app\n        deny_all: true"));
    assert!(config.servers[0].routes[0].deny_all);
    // deny_all needs no certificate: it refuses everything, also under verify: off.
    let off = MINIMAL
        .replace("upstream: app", "upstream: app\n        deny_all: true")
        .replace("{ ca: certs/ca.crt }", "{ verify: off }");
    assert!(parse(&off).servers[0].routes[0].deny_all);
}

#[test]
fn nginx_style_rule_errors_name_the_value() {
    let with = |key: &str, items: &str| {
        MINIMAL.replace(
            "upstream: app",
            &format!("upstream: app\n        {key}:\n{items}"),
        )
    };
    assert_eq!(
        errors(&with(
            "allow",
            "          - subject_regex: [\"CN=(a\"]\n          - issuer_regex: [ok, \"(?<=x)y\"]\n          - fingerprint_sha1: [abc]\n          - serial: [\"A\", \"0G\"]\n          - verified: false\n          - verified: [true, true]\n          - cn: [1]\n          - issuer: [a, b]\n",
        )),
        vec![
            "gateway.yaml:9:29: servers[0].routes[0].allow[0].subject_regex[0]: invalid regular expression: unclosed group",
            "gateway.yaml:10:32: servers[0].routes[0].allow[1].issuer_regex[1]: invalid regular expression: look-around, including look-ahead and look-behind, is not supported",
            "gateway.yaml:11:32: servers[0].routes[0].allow[2].fingerprint_sha1[0]: expected a SHA-1 digest: 40 hex digits, colons allowed; found \"abc\"",
            "gateway.yaml:12:22: servers[0].routes[0].allow[3].serial[0]: expected a serial number as $ssl_client_serial prints it: hex digits in pairs such as 0A1B (colons allowed, - before a negative one); found \"A\"",
            "gateway.yaml:12:27: servers[0].routes[0].allow[3].serial[1]: expected a serial number as $ssl_client_serial prints it: hex digits in pairs such as 0A1B (colons allowed, - before a negative one); found \"0G\"",
            "gateway.yaml:13:13: servers[0].routes[0].allow[4].verified: expected true (any verified certificate); found false",
            "gateway.yaml:14:13: servers[0].routes[0].allow[5].verified: expected true (any verified certificate)",
            "gateway.yaml:15:18: servers[0].routes[0].allow[6].cn[0]: expected a string; found 1",
            "gateway.yaml:16:13: servers[0].routes[0].allow[7].issuer: expected one issuer DN such as \"CN=my-client,O=Example\"; use one item per issuer",
        ]
    );
    assert_eq!(
        error(&with("deny", "          - verified: true\n")),
        "gateway.yaml:9:13: servers[0].routes[0].deny[0].verified: deny cannot refuse every verified certificate; use deny_all: true to close the route"
    );
    assert_eq!(
        error(&MINIMAL.replace("upstream: app", "upstream: app\n        deny: []")),
        "gateway.yaml:8:9: servers[0].routes[0].deny: an empty list denies nobody; remove deny, or write rules"
    );
    let yaml =
        with("deny", "          - cn: [a]\n").replace("{ ca: certs/ca.crt }", "{ verify: off }");
    assert_eq!(
        error(&yaml),
        "gateway.yaml:8:9: servers[0].routes[0].deny: deny rules need a client certificate, but servers[0].client_auth.verify is off"
    );
    assert_eq!(
        error(&MINIMAL.replace("upstream: app", "upstream: app\n        deny_all: yes please")),
        "gateway.yaml:8:9: servers[0].routes[0].deny_all: expected true or false; found \"yes please\""
    );
}

#[test]
fn empty_or_misshapen_files() {
    assert_eq!(
        errors(""),
        vec![
            "gateway.yaml:1:1: upstreams: missing required key",
            "gateway.yaml:1:1: servers: missing required key",
        ]
    );
    assert_eq!(
        error("- a\n- b\n"),
        "gateway.yaml:1:1: expected a mapping with servers and upstreams at the top level; found a list"
    );
    assert_eq!(
        errors("servers: []\nupstreams: {}\n"),
        vec![
            "gateway.yaml:1:1: servers: at least one server is required",
            "gateway.yaml:2:1: upstreams: at least one upstream is required",
        ]
    );
}

#[test]
fn log_and_admin() {
    let config = parse(&format!("admin:\n  listen: 127.0.0.1:9901\nlog: {{ level: debug, access: logs/access.log, format: json }}\n{MINIMAL}"));
    assert_eq!(
        config.admin,
        Some(AdminConfig {
            listen: "127.0.0.1:9901".parse().unwrap()
        })
    );
    assert_eq!(
        config.log,
        LogConfig {
            level: "debug".into(),
            access: AccessLog::File(PathBuf::from("/etc/certgate/logs/access.log")),
            format: LogFormat::Json,
            stderr_format: StderrFormat::Text,
        }
    );
    assert_eq!(
        parse(&format!("log: {{ access: off }}\n{MINIMAL}"))
            .log
            .access,
        AccessLog::Off
    );
    assert_eq!(
        parse(&format!("log: {{ access: false }}\n{MINIMAL}"))
            .log
            .access,
        AccessLog::Off
    );
    assert_eq!(
        error(&format!("admin: {{}}\n{MINIMAL}")),
        "gateway.yaml:1:1: admin.listen: missing required key"
    );
}

#[test]
fn stderr_format_is_text_or_json() {
    assert_eq!(parse(MINIMAL).log.stderr_format, StderrFormat::Text);
    assert_eq!(
        parse(&format!("log: {{ stderr_format: json }}\n{MINIMAL}"))
            .log
            .stderr_format,
        StderrFormat::Json
    );
    assert_eq!(
        parse(&format!("log: {{ stderr_format: text }}\n{MINIMAL}"))
            .log
            .stderr_format,
        StderrFormat::Text
    );
    assert_eq!(
        error(&format!("log:\n  stderr_format: xml\n{MINIMAL}")),
        "gateway.yaml:2:3: log.stderr_format: expected one of text, json; found \"xml\""
    );
}

#[test]
fn yaml_merge_keys_share_blocks() {
    let yaml = "\
servers:
  - listen: 127.0.0.1:8443
    tls: &tls { cert: c, key: k }
    client_auth: &auth { ca: ca.crt, verify_depth: 2 }
    routes: [{ match: { path_prefix: / }, upstream: app }]
  - listen: 127.0.0.1:8444
    tls: *tls
    client_auth: { <<: *auth, on_failure: handshake }
    routes: [{ match: { path_prefix: / }, upstream: app }]
upstreams:
  app: { servers: [\"127.0.0.1:5000\"] }
";
    let config = parse(yaml);
    assert_eq!(config.servers[1].tls, config.servers[0].tls);
    assert_eq!(config.servers[1].client_auth.verify_depth, 2);
    assert_eq!(
        config.servers[1].client_auth.on_failure,
        OnFailure::Handshake
    );
    assert_eq!(config.servers[1].name, "server1");
}

#[test]
fn locate_and_error_at_serve_later_stages() {
    let config = parse(MINIMAL);
    assert_eq!(
        config.locate("servers[0].tls.cert"),
        Location {
            file: PathBuf::from("/etc/certgate/gateway.yaml"),
            line: 3,
            column: 12
        }
    );
    // Keys left at their defaults fall back to the nearest written parent, then 1:1.
    assert_eq!(
        (
            config.locate("servers[0].tls.protocols").line,
            config.locate("servers[0].tls.protocols").column
        ),
        (3, 5)
    );
    assert_eq!(config.locate("admin.listen").line, 1);
    assert_eq!(config.locate("admin.listen").column, 1);
    assert_eq!(
        config.error_at("servers[0].client_auth.ca", "cannot open /etc/certgate/certs/ca.crt: No such file or directory").to_string(),
        "/etc/certgate/gateway.yaml:4:20: servers[0].client_auth.ca: cannot open /etc/certgate/certs/ca.crt: No such file or directory"
    );
}

#[test]
fn warnings_point_at_likely_mistakes() {
    let yaml = format!("{MINIMAL}  spare: {{ servers: [\"127.0.0.1:5001\"] }}\n")
        .replace("{ ca: certs/ca.crt }", "{ verify: off, ca: certs/ca.crt }");
    let config = parse(&yaml);
    let warnings: Vec<String> = config.warnings().iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        vec![
            "/etc/certgate/gateway.yaml:4:5: servers[0].client_auth: ca, trusted_ca and crl are ignored with verify: off",
            "/etc/certgate/gateway.yaml:10:3: upstreams.spare: not used by any route",
        ]
    );
}

#[test]
fn keepalive_timeout_defaults_to_sixty_seconds_and_must_be_positive() {
    assert_eq!(parse(MINIMAL).keepalive_timeout, Duration::from_secs(60));
    let config = parse(&format!("keepalive_timeout: 75s\n{MINIMAL}"));
    assert_eq!(config.keepalive_timeout, Duration::from_secs(75));
    assert_eq!(
        error(&format!("keepalive_timeout: 0\n{MINIMAL}")),
        "gateway.yaml:1:1: keepalive_timeout: must be greater than 0"
    );
}

#[test]
fn shutdown_grace_defaults_to_ten_seconds_and_takes_nginx_time_syntax() {
    assert_eq!(parse(MINIMAL).shutdown_grace, Duration::from_secs(10));
    let config = parse(&format!("shutdown_grace: 1m30s\n{MINIMAL}"));
    assert_eq!(config.shutdown_grace, Duration::from_secs(90));
    let message = error(&format!("shutdown_grace: soon\n{MINIMAL}"));
    assert!(
        message.starts_with("gateway.yaml:1:1: shutdown_grace: expected a time"),
        "{message}"
    );
}

#[test]
fn pid_file_defaults_to_none_and_follows_the_config_file() {
    assert_eq!(parse(MINIMAL).pid_file, None);
    let config = parse(&format!("pid_file: run/certgate.pid\n{MINIMAL}"));
    assert_eq!(
        config.pid_file,
        Some(PathBuf::from("/etc/certgate/run/certgate.pid"))
    );
    let config = parse(&format!("pid_file: /run/certgate/certgate.pid\n{MINIMAL}"));
    assert_eq!(
        config.pid_file,
        Some(PathBuf::from("/run/certgate/certgate.pid"))
    );
    assert_eq!(
        error(&format!("pid_file: [a]\n{MINIMAL}")),
        "gateway.yaml:1:1: pid_file: expected a string; found a list"
    );
}

#[test]
fn watch_defaults_to_off_and_takes_a_boolean() {
    assert!(!parse(MINIMAL).watch);
    assert!(parse(&format!("watch: true\n{MINIMAL}")).watch);
    assert!(!parse(&format!("watch: false\n{MINIMAL}")).watch);
    assert!(!parse(&format!("watch:\n{MINIMAL}")).watch);
    assert_eq!(
        error(&format!("{MINIMAL}watch: yes\n")),
        "gateway.yaml:10:1: watch: expected true or false; found \"yes\""
    );
}

#[test]
fn client_limits_default_to_nginx_values() {
    let limits = parse(MINIMAL).client_limits;
    assert_eq!(limits, ClientLimits::default());
    assert_eq!(limits.client_header_timeout, Duration::from_secs(60));
    assert_eq!(limits.client_body_timeout, Duration::from_secs(60));
    assert_eq!(
        (limits.header_buffers, limits.header_buffer_size),
        (4, 8192)
    );
    assert_eq!(limits.max_header_bytes(), 32768);
    assert_eq!(limits.max_headers, 100);
    assert_eq!(limits.http2_max_concurrent_streams, 128);
    assert!(!limits.underscores_in_headers);
}

#[test]
fn client_limits_take_nginx_syntax() {
    let config = parse(&format!(
        "client_header_timeout: 10s\nclient_body_timeout: 1m\nlarge_client_header_buffers: 8 16k\nmax_headers: 64\nmax_connections: 1000\nhttp2_max_concurrent_streams: 32\nunderscores_in_headers: true\n{MINIMAL}"
    ));
    let limits = config.client_limits;
    assert_eq!(limits.client_header_timeout, Duration::from_secs(10));
    assert_eq!(limits.client_body_timeout, Duration::from_secs(60));
    assert_eq!(
        (limits.header_buffers, limits.header_buffer_size),
        (8, 16384)
    );
    assert_eq!(limits.max_headers, 64);
    assert_eq!(limits.max_connections, 1000);
    assert_eq!(limits.http2_max_concurrent_streams, 32);
    assert!(limits.underscores_in_headers);
}

#[test]
fn bad_client_limits_name_the_key_and_line() {
    for (line, message) in [
        (
            "large_client_header_buffers: 8k",
            "gateway.yaml:1:1: large_client_header_buffers: expected a number and a size like \"4 8k\"; found \"8k\"",
        ),
        (
            "large_client_header_buffers: 4 100",
            "gateway.yaml:1:1: large_client_header_buffers: the buffer size must be 1k to 1m; found 100",
        ),
        (
            "large_client_header_buffers: 0 8k",
            "gateway.yaml:1:1: large_client_header_buffers: the number of buffers must be 1 to 64; found 0",
        ),
        ("max_headers: 0", "gateway.yaml:1:1: max_headers: must be 1 to 10000; found 0"),
        (
            "max_connections: lots",
            "gateway.yaml:1:1: max_connections: expected a whole number; found \"lots\"",
        ),
        (
            "client_header_timeout: 0",
            "gateway.yaml:1:1: client_header_timeout: must be greater than 0",
        ),
    ] {
        assert_eq!(error(&format!("{line}\n{MINIMAL}")), message, "{line}");
    }
    let message = error(&format!("underscores_in_headers: sometimes\n{MINIMAL}"));
    assert!(
        message.starts_with("gateway.yaml:1:1: underscores_in_headers:"),
        "{message}"
    );
}

#[test]
fn upstream_path_replaces_a_prefix_or_path_and_must_be_normal() {
    let with = |matcher: &str, value: &str| {
        MINIMAL.replace(
            "      - match: { path_prefix: / }\n        upstream: app\n",
            &format!("      - match: {{ {matcher} }}\n        upstream: app\n        upstream_path: {value}\n"),
        )
    };
    let config = parse(&with("path_prefix: /api/", "/v2/"));
    assert_eq!(
        config.servers[0].routes[0].upstream_path.as_deref(),
        Some("/v2/")
    );
    assert_eq!(parse(MINIMAL).servers[0].routes[0].upstream_path, None);
    parse(&with("path: /login", "/auth/login"));
    for (matcher, value, message) in [
        (
            "path_regex: ^/api/",
            "/v2/",
            "servers[0].routes[0].upstream_path: replaces the matched path_prefix or path; this route's match has neither",
        ),
        (
            "path_prefix: /api/",
            "v2/",
            "servers[0].routes[0].upstream_path: expected a path starting with / (the path does not start with /); found \"v2/\"",
        ),
        (
            "path_prefix: /api/",
            "/v2/../v1/",
            "servers[0].routes[0].upstream_path: expected a normal path such as \"/v1/\"; found \"/v2/../v1/\"",
        ),
    ] {
        let message_found = error(&with(matcher, value));
        assert!(message_found.ends_with(message), "{message_found}");
    }
}

#[test]
fn paths_encoded_slashes_default_reject_keep_and_errors() {
    use certgate_path::EncodedSlashes;
    assert_eq!(parse(MINIMAL).paths.encoded_slashes, EncodedSlashes::Reject);
    let config = parse(&format!("paths: {{ encoded_slashes: keep }}\n{MINIMAL}"));
    assert_eq!(config.paths.encoded_slashes, EncodedSlashes::Keep);
    assert_eq!(
        error(&format!("paths: {{ encoded_slashes: decode }}\n{MINIMAL}")),
        "gateway.yaml:1:10: paths.encoded_slashes: expected one of reject, keep; found \"decode\""
    );
    let message = error(&format!("paths: {{ merge_slashes: off }}\n{MINIMAL}"));
    assert!(
        message.starts_with("gateway.yaml:1:10: paths.merge_slashes: unknown"),
        "{message}"
    );
}

#[test]
fn signed_urls_defaults_lists_and_bind() {
    let config = parse(&MINIMAL.replace(
        "        upstream: app\n",
        "        upstream: app\n        signed_urls: { key_file: keys/url.key }\n",
    ));
    assert_eq!(
        config.servers[0].routes[0].signed_urls,
        Some(SignedUrlsConfig {
            key_files: vec![PathBuf::from("/etc/certgate/keys/url.key")],
            max_ttl: Duration::from_secs(300),
            bind: SignedUrlBind::None,
        })
    );
    assert_eq!(parse(MINIMAL).servers[0].routes[0].signed_urls, None);
    let config = parse(&MINIMAL.replace(
        "        upstream: app\n",
        "        upstream: app\n        signed_urls: { key_file: [new.key, /k/old.key], max_ttl: 2h, bind: client_ip }\n",
    ));
    let signed = config.servers[0].routes[0].signed_urls.clone().unwrap();
    assert_eq!(
        signed.key_files,
        vec![
            PathBuf::from("/etc/certgate/new.key"),
            PathBuf::from("/k/old.key")
        ]
    );
    assert_eq!(signed.max_ttl, Duration::from_secs(7200));
    assert_eq!(signed.bind, SignedUrlBind::ClientIp);
}

#[test]
fn signed_urls_errors_say_what_to_set() {
    let with = |signed: &str, client_auth: &str| {
        MINIMAL
            .replace(
                "        upstream: app\n",
                &format!("        upstream: app\n        signed_urls: {signed}\n"),
            )
            .replace("client_auth: { ca: certs/ca.crt }", client_auth)
    };
    let ok_auth = "client_auth: { ca: certs/ca.crt }";
    assert_eq!(
        error(&with("{ key_file: k, max_ttl: 25h }", ok_auth)),
        "gateway.yaml:8:37: servers[0].routes[0].signed_urls.max_ttl: must be at most 24h: a signed URL is a bearer token until it expires"
    );
    assert!(error(&with("{ key_file: k, bind: ip }", ok_auth))
        .ends_with("signed_urls.bind: expected one of none, client_ip; found \"ip\""));
    assert!(error(&with("{ key_file: [] }", ok_auth))
        .ends_with("signed_urls.key_file: at least one key file is required"));
    assert!(error(&with("{ key_file: [a, a] }", ok_auth))
        .ends_with("signed_urls.key_file[1]: a is listed twice"));
    assert!(error(&with("{ max_ttl: 5m }", ok_auth))
        .ends_with("signed_urls.key_file: missing required key"));
    let handshake = error(&with(
        "{ key_file: k }",
        "client_auth: { ca: certs/ca.crt, on_failure: handshake }",
    ));
    assert!(
        handshake.contains(
            "servers[0].routes[0].signed_urls: a signed URL is loaded without a client certificate"
        ) && handshake.contains("set on_failure: http"),
        "{handshake}"
    );
    let off = error(&with("{ key_file: k }", "client_auth: { verify: off }"));
    assert!(
        off.contains("servers[0].client_auth.verify is off; use on or optional"),
        "{off}"
    );
}
