//! Conversion tests: the fixtures under tests/e2e/nginx_fixtures (the seeds' set-ups,
//! which the e2e suite also runs under nginx and certgate), and one case per mapping rule
//! and per kind of directive that is not carried over. Every output that claims to be
//! usable is parsed and validated by certgate's own configuration crate.

use std::path::{Path, PathBuf};

use certgate_config::{Alpn, Config, Preset, UpstreamProtocol, VerifyMode};

use crate::{convert, load, parse, Conversion, NoIncludes, Options, Unsupported};

const FLASK: &str = include_str!("../../../tests/e2e/nginx_fixtures/flask_mtls.conf");
const OPTIONAL: &str = include_str!("../../../tests/e2e/nginx_fixtures/optional.conf");
const GRPC: &str = include_str!("../../../tests/e2e/nginx_fixtures/grpc_mtls.conf");
const VIDEO: &str = include_str!("../../../tests/e2e/nginx_fixtures/video.conf");
const GRPC_SEED_CLIENT: &str =
    include_str!("../../../tests/e2e/nginx_fixtures/grpc_seed_client.conf");

fn fill(text: &str) -> String {
    text.replace("@LISTEN@", "127.0.0.1:8443")
        .replace("@BACKEND@", "127.0.0.1:5000")
        .replace("@MEDIA@", "127.0.0.1:5001")
        .replace("@GRPCS@", "127.0.0.1:50051")
}

fn options() -> Options {
    Options {
        source: "nginx.conf".to_string(),
        conf_dir: PathBuf::from("/etc/nginx"),
        out_dir: PathBuf::from("/etc/certgate"),
    }
}

fn run(text: &str) -> Conversion {
    let ast = load("nginx.conf", text, &mut NoIncludes).expect("parses");
    convert(&ast, &options()).expect("converts")
}

/// The output is a valid gateway.yaml (certgate's own parser and validation).
#[track_caller]
fn config(c: &Conversion) -> Config {
    match Config::parse(&c.yaml, Path::new("/etc/certgate/gateway.yaml")) {
        Ok(config) => config,
        Err(e) => panic!("invalid gateway.yaml: {e}\n{}", c.yaml),
    }
}

fn listed(c: &Conversion) -> Vec<String> {
    c.unsupported.iter().map(Unsupported::to_string).collect()
}

#[track_caller]
fn assert_listed(c: &Conversion, line: usize, directive: &str, why_part: &str) {
    assert!(
        c.unsupported
            .iter()
            .any(|u| u.line == line && u.directive == directive && u.why.contains(why_part)),
        "expected nginx.conf:{line}: {directive}: …{why_part}… in {:#?}",
        listed(c)
    );
}

#[test]
fn flask_seed_converts_completely() {
    let c = run(&fill(FLASK));
    assert!(c.is_complete(), "{:#?}", listed(&c));
    let cfg = config(&c);
    let s = &cfg.servers[0];
    assert_eq!(s.listen[0].to_string(), "127.0.0.1:8443");
    // The only server of its address is nginx's default server: it answers any name.
    assert!(s.server_names.is_empty());
    assert!(c.yaml.contains("nginx: server_name www.lotusching.top"));
    assert_eq!(s.tls.cert, Path::new("/etc/certgate/../nginx/ssl/ssl.crt"));
    assert_eq!(
        s.tls.alpn,
        vec![Alpn::Http11],
        "no http2 on the nginx listener"
    );
    assert_eq!(s.client_auth.verify, VerifyMode::On);
    assert_eq!(
        s.client_auth.ca.as_deref(),
        Some(Path::new("/etc/certgate/../nginx/ssl/ca.crt"))
    );
    assert_eq!(s.client_auth.verify_depth, 2);
    assert_eq!(s.identity.presets, vec![Preset::None]);
    assert_eq!(
        s.identity.set,
        vec![
            (
                "X-SSL-Client-S-DN".to_string(),
                "$ssl_client_s_dn".to_string()
            ),
            (
                "X-SSL-Client-I-DN".to_string(),
                "$ssl_client_i_dn".to_string()
            ),
            (
                "X-SSL-Client-Verify".to_string(),
                "$ssl_client_verify".to_string()
            ),
            (
                "X-SSL-Client-Serial".to_string(),
                "serial=$ssl_client_serial".to_string()
            ),
        ]
    );
    assert_eq!(s.routes.len(), 1);
    assert_eq!(s.routes[0].matcher.path_prefix.as_deref(), Some("/"));
    let up = &cfg.upstreams[&s.routes[0].upstream];
    assert_eq!(up.servers[0].address, "127.0.0.1:5000");
    assert_eq!(up.protocol, UpstreamProtocol::Http);
}

#[test]
fn optional_fixture_uses_the_nginx_preset_and_inherits_server_headers() {
    let c = run(&fill(OPTIONAL));
    assert!(c.is_complete(), "{:#?}", listed(&c));
    let cfg = config(&c);
    assert_eq!(cfg.keepalive_timeout.as_secs(), 65);
    let s = &cfg.servers[0];
    assert_eq!(s.client_auth.verify, VerifyMode::Optional);
    assert_eq!(s.client_auth.verify_depth, 1);
    assert_eq!(s.identity.presets, vec![Preset::Nginx]);
    assert!(s.identity.set.is_empty());
    assert_eq!(s.tls.alpn, vec![Alpn::H2, Alpn::Http11]);
    // The longer prefix first: certgate takes the first match, nginx the longest.
    assert_eq!(s.routes[0].matcher.path_prefix.as_deref(), Some("/api/"));
    assert_eq!(s.routes[0].max_body_size, Some(2 << 20));
    assert_eq!(s.routes[0].timeouts.connect.as_secs(), 5);
    assert_eq!(s.routes[0].timeouts.read.as_secs(), 30);
    assert_eq!(s.routes[1].matcher.path_prefix.as_deref(), Some("/"));
    assert_eq!(s.routes[1].max_body_size, Some(1 << 20));
    // Both locations use the same upstream block: one upstream.
    assert_eq!(cfg.upstreams.len(), 1);
    let flask = &cfg.upstreams["flask"];
    assert_eq!(flask.servers[0].weight, 3);
    assert_eq!(flask.keepalive, 8);
}

#[test]
fn grpc_fixture_maps_both_sides() {
    let c = run(&fill(GRPC));
    assert!(c.is_complete(), "{:#?}", listed(&c));
    let cfg = config(&c);
    let s = &cfg.servers[0];
    assert_eq!(
        s.client_auth.ca.as_deref(),
        Some(Path::new("/etc/certgate/../nginx/ca/client-ca.crt"))
    );
    // ssl_trusted_certificate names the same file: not repeated.
    assert!(s.client_auth.trusted_ca.is_empty());
    // grpc_pass uses grpc_set_header; the proxy_set_header lines do not apply.
    assert_eq!(
        s.identity.set,
        vec![
            (
                "x-ptp-session-id".to_string(),
                "00000000000000010000000000000001".to_string()
            ),
            (
                "X-SSL-Client-S-DN".to_string(),
                "$ssl_client_s_dn".to_string()
            ),
            (
                "X-SSL-Client-Verify".to_string(),
                "$ssl_client_verify".to_string()
            ),
        ]
    );
    let up = &cfg.upstreams[&s.routes[0].upstream];
    assert_eq!(up.protocol, UpstreamProtocol::Grpcs);
    let tls = up.tls.as_ref().unwrap();
    assert!(tls.verify);
    assert_eq!(tls.sni.as_deref(), Some("localhost"));
    assert_eq!(tls.verify_depth, 2);
    assert_eq!(
        tls.cert.as_deref(),
        Some(Path::new("/etc/certgate/../nginx/ca/client.crt"))
    );
    assert_eq!(
        tls.trusted_ca.as_deref(),
        Some(Path::new("/etc/certgate/../nginx/ca/server-ca.crt"))
    );
}

#[test]
fn video_fixture_regex_location_and_range_headers() {
    let c = run(&fill(VIDEO));
    assert!(c.is_complete(), "{:#?}", listed(&c));
    let cfg = config(&c);
    let s = &cfg.servers[0];
    assert_eq!(
        s.routes[0].matcher.path_regex.as_deref(),
        Some("(?i)\\.(mp4|webm)$")
    );
    assert_eq!(
        s.routes[0].max_body_size, None,
        "client_max_body_size 0: unlimited"
    );
    assert_eq!(s.routes[0].timeouts.read.as_secs(), 3600);
    assert_eq!(s.routes[1].matcher.path_prefix.as_deref(), Some("/"));
    // Range/If-Range from $http_* pass through anyway; the identity header is shared.
    assert_eq!(
        s.identity.set,
        vec![(
            "X-SSL-Client-S-DN".to_string(),
            "$ssl_client_s_dn".to_string()
        )]
    );
    assert!(s.routes.iter().all(|r| r.headers.is_empty()));
}

#[test]
fn seed_grpc_client_side_has_nothing_to_convert() {
    let ast = load("client.conf", GRPC_SEED_CLIENT, &mut NoIncludes).unwrap();
    let err = convert(&ast, &options()).unwrap_err();
    assert!(
        err.to_string()
            .contains("no server block with a TLS listener"),
        "{err}"
    );
    let why: Vec<String> = err.unsupported.iter().map(|u| u.to_string()).collect();
    assert!(
        why.contains(
            &"client.conf:4: listen: plain HTTP listener: certgate only terminates TLS".to_string()
        ),
        "{why:#?}"
    );
}

const SERVER_HEAD: &str = "server {\n listen 443 ssl;\n ssl_certificate s.crt;\n ssl_certificate_key s.key;\n ssl_client_certificate ca.crt;\n ssl_verify_client on;\n";

#[test]
fn every_unsupported_category_is_listed_with_its_line() {
    let text = format!(
        "{SERVER_HEAD}\
 listen 80;\n\
 listen 8443 ssl proxy_protocol;\n\
 server_name ~^(?<sub>.+)\\.example\\.org$;\n\
 ssl_protocols TLSv1 TLSv1.1 TLSv1.2;\n\
 ssl_ciphers HIGH:!aNULL;\n\
 ssl_stapling on;\n\
 add_header X-Frame-Options DENY;\n\
 error_page 404 /404.html;\n\
 location / {{\n\
   proxy_pass http://app;\n\
   if ($ssl_client_verify != SUCCESS) {{ return 403; }}\n\
   rewrite ^/a$ /b;\n\
   auth_basic \"closed\";\n\
   proxy_set_header X-User $http_authorization;\n\
   proxy_set_header Host backend.internal;\n\
   proxy_set_header Accept-Encoding \"\";\n\
   location /nested/ {{ proxy_pass http://app; }}\n\
   frobnicate on;\n\
 }}\n\
 location /static/ {{ root /srv/www; }}\n\
 location /alias/ {{ alias /srv/a/; }}\n\
 location = /health {{ return 200 ok; }}\n\
 location @fallback {{ proxy_pass http://app; }}\n\
 location /v1/ {{ proxy_pass http://app/v2/; }}\n\
 location ~ ^/(?!private) {{ proxy_pass http://app; }}\n\
}}\n\
map $ssl_client_s_dn $user {{ default x; }}\n\
upstream app {{ server 10.0.0.1:80 max_fails=3; server 10.0.0.2:80 backup; least_conn; }}\n\
stream {{ server {{ listen 9000; }} }}\n"
    );
    let c = run(&text);
    let expect = [
        (7, "listen", "plain HTTP listener"),
        (8, "listen", "PROXY protocol"),
        (9, "server_name", "regular-expression server names"),
        (10, "ssl_protocols", "TLSv1, TLSv1.1 not offered"),
        (11, "ssl_ciphers", "cipher suites"),
        (12, "ssl_stapling", "OCSP"),
        (13, "add_header", "response headers"),
        (14, "error_page", "error pages"),
        (18, "rewrite", "rewriting"),
        (
            19,
            "auth_basic",
            "refuse every request (deny_all: true): HTTP authentication",
        ),
        (
            20,
            "proxy_set_header",
            "unknown variable \"$http_authorization\"",
        ),
        (21, "proxy_set_header", "Host header unchanged"),
        (22, "proxy_set_header", "removing a header"),
        (23, "location", "nested locations"),
        (24, "frobnicate", "no certgate equivalent"),
        (26, "root", "does not serve files"),
        (26, "location", "no proxy_pass or grpc_pass"),
        (27, "alias", "does not serve files"),
        (27, "location", "no proxy_pass or grpc_pass"),
        (28, "return", "fixed responses"),
        (28, "location", "no proxy_pass or grpc_pass"),
        (29, "location", "named locations"),
        (31, "location", "look-around"),
        (33, "map", "variables defined"),
        (34, "server", "passive failure counting"),
        (34, "server", "backup servers"),
        (34, "least_conn", "round_robin"),
        (35, "stream", "only HTTP servers"),
    ];
    for (line, directive, why) in expect {
        assert_listed(&c, line, directive, why);
    }
    assert_eq!(c.unsupported.len(), expect.len(), "{:#?}", listed(&c));
    // What remains is still a valid configuration, and says what it left out.
    let cfg = config(&c);
    assert_eq!(
        cfg.servers[0].listen.len(),
        1,
        "only the TLS listener without proxy_protocol problems"
    );
    assert!(c
        .yaml
        .contains("# NOT carried over (28, also printed on stderr):"));
    // `location /v1/ { proxy_pass http://app/v2/; }`: the URI part replaces the prefix.
    assert_eq!(
        route(&cfg, "/v1/").upstream_path.as_deref(),
        Some("/v2/"),
        "{}",
        c.yaml
    );
    assert!(c
        .yaml
        .contains("#   nginx.conf:18: rewrite: URL rewriting is not supported"));
    assert_eq!(
        cfg.upstreams["app"].servers.len(),
        1,
        "the backup server is left out"
    );
    // `if ($ssl_client_verify != SUCCESS)` under `verify: on` never refuses: nothing to
    // carry over. auth_basic cannot be: the location refuses everything instead.
    let root = cfg.servers[0]
        .routes
        .iter()
        .find(|r| r.matcher.path_prefix.as_deref() == Some("/"))
        .unwrap();
    assert!(root.deny_all);
    assert_eq!(c.access_denied.len(), 1, "{:#?}", c.access_denied);
}

#[test]
fn location_order_gives_nginx_selection_under_first_match() {
    let text = format!(
        "{SERVER_HEAD}\
 location / {{ proxy_pass http://a; }}\n\
 location /img/ {{ proxy_pass http://b; }}\n\
 location ~ \\.png$ {{ proxy_pass http://c; }}\n\
 location ^~ /static/ {{ proxy_pass http://d; }}\n\
 location /static/deep/ {{ proxy_pass http://e; }}\n\
 location = /exact {{ proxy_pass http://f; }}\n\
 location ~* ^/CASE {{ proxy_pass http://g; }}\n\
}}\n"
    );
    let c = run(&text);
    assert!(c.is_complete(), "{:#?}", listed(&c));
    let cfg = config(&c);
    let routes: Vec<String> = cfg.servers[0]
        .routes
        .iter()
        .map(|r| {
            let m = &r.matcher;
            format!(
                "{}{}{}{} -> {}",
                m.path
                    .as_deref()
                    .map(|p| format!("={p}"))
                    .unwrap_or_default(),
                m.path_prefix.as_deref().unwrap_or(""),
                if m.path_prefix.is_some() && m.path_regex.is_some() {
                    " & "
                } else {
                    ""
                },
                m.path_regex
                    .as_deref()
                    .map(|r| format!("~{r}"))
                    .unwrap_or_default(),
                r.upstream
            )
        })
        .collect();
    assert_eq!(
        routes,
        [
            "=/exact -> f_80",
            // /static/deep/ is longer than ^~ /static/ and not ^~ itself: the regexes
            // still apply under it, then it.
            "/static/deep/ & ~\\.png$ -> c_80",
            "/static/deep/ & ~(?i)^/CASE -> g_80",
            "/static/deep/ -> e_80",
            "/static/ -> d_80",
            "~\\.png$ -> c_80",
            "~(?i)^/CASE -> g_80",
            "/img/ -> b_80",
            "/ -> a_80",
        ]
    );
}

#[test]
fn set_header_inheritance_follows_nginx() {
    // A location with its own proxy_set_header does not inherit the server's.
    let text = format!(
        "{SERVER_HEAD}\
 proxy_set_header X-SSL-Client-S-DN $ssl_client_s_dn;\n\
 location / {{ proxy_pass http://app; }}\n\
 location /own/ {{ proxy_pass http://app; proxy_set_header X-Client-CN $ssl_client_s_dn_cn; }}\n\
}}\n"
    );
    let c = run(&text);
    let cfg = config(&c);
    let s = &cfg.servers[0];
    assert!(
        s.identity.set.is_empty(),
        "no header is common to both routes"
    );
    assert_eq!(s.identity.presets, vec![Preset::None]);
    let own = s
        .routes
        .iter()
        .find(|r| r.matcher.path_prefix.as_deref() == Some("/own/"))
        .unwrap();
    assert_eq!(
        own.headers,
        vec![("X-Client-CN".to_string(), "$ssl_client_s_dn_cn".to_string())]
    );
    let root = s
        .routes
        .iter()
        .find(|r| r.matcher.path_prefix.as_deref() == Some("/"))
        .unwrap();
    assert_eq!(
        root.headers,
        vec![(
            "X-SSL-Client-S-DN".to_string(),
            "$ssl_client_s_dn".to_string()
        )]
    );
}

#[test]
fn https_upstreams_and_their_tls_settings() {
    let text = format!(
        "http {{\n\
 proxy_ssl_trusted_certificate /etc/ssl/up-ca.pem;\n\
 {SERVER_HEAD}\
 location /a/ {{ proxy_pass https://api.internal:8443; }}\n\
 location /b/ {{ proxy_pass https://api.internal:8443; proxy_ssl_verify on; proxy_ssl_certificate c.crt; proxy_ssl_certificate_key c.key; proxy_ssl_name api.internal; proxy_ssl_server_name on; }}\n\
 location /c/ {{ proxy_pass http://api.internal:8443; }}\n\
}}\n}}\n"
    );
    let c = run(&text);
    assert!(c.is_complete(), "{:#?}", listed(&c));
    let cfg = config(&c);
    let r = &cfg.servers[0].routes;
    let (a, b, plain) = (
        &cfg.upstreams[&r[0].upstream],
        &cfg.upstreams[&r[1].upstream],
        &cfg.upstreams[&r[2].upstream],
    );
    assert_eq!(r[0].upstream, "api.internal_8443");
    assert_eq!(r[1].upstream, "api.internal_8443-2");
    assert_eq!(r[2].upstream, "api.internal_8443-3");
    // nginx does not verify upstream certificates unless told: written as is, commented.
    let a_tls = a.tls.as_ref().unwrap();
    assert!(!a_tls.verify);
    assert_eq!(
        a_tls.trusted_ca.as_deref(),
        Some(Path::new("/etc/ssl/up-ca.pem")),
        "inherited from http"
    );
    assert!(c.yaml.contains("the upstream certificate is NOT checked"));
    let b_tls = b.tls.as_ref().unwrap();
    assert!(b_tls.verify);
    assert_eq!(b_tls.sni.as_deref(), Some("api.internal"));
    assert_eq!(
        b_tls.key.as_deref(),
        Some(Path::new("/etc/certgate/../nginx/c.key"))
    );
    assert_eq!(plain.protocol, UpstreamProtocol::Http);
    assert!(plain.tls.is_none());
}

#[test]
fn tls_details() {
    let text = "server {\n listen 127.0.0.1:443 ssl default_server;\n listen [::]:443 ssl;\n http2 on;\n server_name api.example.org .example.net;\n ssl_certificate /etc/ssl/s.crt;\n ssl_certificate_key /etc/ssl/s.key;\n ssl_verify_client optional_no_ca;\n ssl_trusted_certificate more.crt;\n ssl_crl crl.pem;\n ssl_session_tickets off;\n ssl_session_ticket_key t1.key;\n location / { proxy_pass http://127.0.0.1:5000; }\n}\nserver {\n listen 127.0.0.1:443 ssl;\n server_name other.example.org;\n ssl_certificate /etc/ssl/o.crt;\n ssl_certificate_key /etc/ssl/o.key;\n location / { proxy_pass http://127.0.0.1:5000; }\n}\n";
    let c = run(text);
    let cfg = config(&c);
    let (first, second) = (&cfg.servers[0], &cfg.servers[1]);
    assert_eq!(first.tls.alpn, vec![Alpn::H2, Alpn::Http11]);
    assert!(
        first.server_names.is_empty(),
        "nginx's default server on both its addresses"
    );
    assert_eq!(second.server_names, vec!["other.example.org"]);
    assert_eq!(
        second.client_auth.verify,
        VerifyMode::Off,
        "nginx's default"
    );
    assert_eq!(first.client_auth.verify, VerifyMode::OptionalNoCa);
    assert_eq!(
        first.client_auth.trusted_ca,
        vec![PathBuf::from("/etc/certgate/../nginx/more.crt")]
    );
    assert_eq!(first.client_auth.crl.len(), 1);
    assert!(!first.tls.session_resumption);
    assert_eq!(first.tls.session_ticket_keys.len(), 1);
    assert_eq!(cfg.upstreams.len(), 1, "the same target is one upstream");
    assert!(c.is_complete(), "{:#?}", listed(&c));
    assert!(c
        .yaml
        .contains("nginx: server_name api.example.org example.net *.example.net"));
}

#[test]
fn ssl_on_makes_every_listener_tls() {
    // Seed 004 as written: `ssl on;` with `listen 80` and `listen 443 ssl`.
    let text = "server {\n ssl on;\n listen 80;\n listen 443 ssl;\n ssl_certificate s.crt;\n ssl_certificate_key s.key;\n location / { proxy_pass http://127.0.0.1:5000; }\n}\n";
    let c = run(text);
    assert!(c.is_complete(), "{:#?}", listed(&c));
    let listen: Vec<String> = config(&c).servers[0]
        .listen
        .iter()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(listen, ["0.0.0.0:80", "0.0.0.0:443"]);
    assert!(
        c.yaml
            .contains("listen 80 (nginx.conf:3); TLS because of `ssl on`"),
        "{}",
        c.yaml
    );
}

#[test]
fn relative_paths_follow_the_output_file() {
    let text = "server { listen 443 ssl; ssl_certificate ssl/s.crt; ssl_certificate_key /abs/s.key; location / { proxy_pass http://127.0.0.1:1; } }";
    let ast = parse("n.conf", text).unwrap();
    let same = Options {
        source: "n.conf".into(),
        conf_dir: PathBuf::from("/etc/nginx"),
        out_dir: PathBuf::from("/etc/nginx"),
    };
    let c = convert(&ast, &same).unwrap();
    assert!(c.yaml.contains("cert: ssl/s.crt"), "{}", c.yaml);
    assert!(c.yaml.contains("key: /abs/s.key"), "{}", c.yaml);
    let below = Options {
        out_dir: PathBuf::from("/etc/nginx/certgate"),
        ..same
    };
    let c = convert(&ast, &below).unwrap();
    assert!(c.yaml.contains("cert: ../ssl/s.crt"), "{}", c.yaml);
}

#[test]
fn yaml_is_stable_and_commented() {
    let c = run(&fill(FLASK));
    assert!(c
        .yaml
        .starts_with("# gateway.yaml written by `certgate import-nginx nginx.conf`."));
    assert!(c.yaml.contains("Every directive was carried over."));
    assert!(c
        .yaml
        .contains("verify: \"on\"  # ssl_verify_client on (nginx.conf:"));
    assert!(
        c.yaml.contains("# location / (nginx.conf:26)"),
        "{}",
        c.yaml
    );
    assert_eq!(run(&fill(FLASK)).yaml, c.yaml, "deterministic");
}

#[test]
fn unsupported_are_listed_in_reading_order() {
    struct Files;
    impl crate::IncludeSource for Files {
        fn resolve(&mut self, _: &str, _: &str) -> Result<Vec<crate::IncludedFile>, String> {
            Ok(vec![crate::IncludedFile {
                name: "a-included.conf".into(),
                text: "gzip on;\n\nrewrite ^ /;".into(),
            }])
        }
    }
    let text = format!("{SERVER_HEAD} ssl_ciphers HIGH;\n include x;\n location / {{ proxy_pass http://a; }}\n}}\n");
    let ast = load("z-main.conf", &text, &mut Files).unwrap();
    let c = convert(&ast, &options()).unwrap();
    assert_eq!(
        c.unsupported
            .iter()
            .map(|u| format!("{}:{}", u.file, u.line))
            .collect::<Vec<_>>(),
        ["z-main.conf:7", "a-included.conf:1", "a-included.conf:3"]
    );
}

/// Random text built from nginx's special characters and directive names: parsing and
/// converting must never panic (a fuzzer will go further; this keeps the basics honest).
#[test]
fn arbitrary_input_never_panics() {
    const PIECES: &[&str] = &[
        "server",
        "location",
        "listen",
        "443",
        "ssl",
        "http2",
        "proxy_pass",
        "grpc_pass",
        "http://a",
        "grpcs://[::1]:1/",
        "upstream",
        "a",
        "ssl_certificate",
        "x.crt",
        "ssl_certificate_key",
        "ssl_verify_client",
        "on",
        "optional",
        "proxy_set_header",
        "X-A",
        "$ssl_client_s_dn",
        "${",
        "}",
        "{",
        ";",
        " ",
        "\n",
        "\"",
        "'",
        "\\",
        "#",
        "=",
        "~",
        "~*",
        "^~",
        "/",
        "(?<",
        "include",
        "http",
        "if",
        "(",
        ")",
        "é",
        "server_name",
        "_",
        ".x",
        "*.",
        "weight=",
        "keepalive",
        "-1",
        "ssl_verify_depth",
        "99999999999",
        "client_max_body_size",
        "10m",
        "proxy_read_timeout",
        "1m30s",
        "ssl_protocols",
        "TLSv1.3",
        "default_server",
        "localhost:",
        "unix:",
        "@n",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut converted = 0;
    for _ in 0..2000 {
        let len = (next() % 80) as usize;
        let mut text = String::new();
        for _ in 0..len {
            text.push_str(PIECES[(next() % PIECES.len() as u64) as usize]);
            if next() % 3 == 0 {
                text.push(' ');
            }
        }
        if let Ok(ast) = parse("f", &text) {
            if let Ok(c) = convert(&ast, &options()) {
                // Whatever was written is YAML certgate can at least read.
                let _ = Config::parse(&c.yaml, Path::new("/etc/certgate/gateway.yaml"));
            }
        }
        // Well-formed directives of random words inside a server exercise the mapping.
        let mut body = String::new();
        for _ in 0..(next() % 8) {
            let words = 1 + next() % 4;
            for _ in 0..words {
                let piece = PIECES[(next() % PIECES.len() as u64) as usize];
                if !piece.contains(['{', '}', ';', '"', '\'', '\\', '#', '\n', ' ']) {
                    body.push_str(piece);
                    body.push(' ');
                }
            }
            body.push_str(";\n");
        }
        let body = body.replace(" ;", ";").replace("\n;", "\n");
        let body: String = body
            .lines()
            .filter(|l| *l != ";")
            .collect::<Vec<_>>()
            .join("\n");
        let wrapped = if next() % 2 == 0 {
            format!("{SERVER_HEAD} location / {{ proxy_pass http://a; {body} }}\n}}\n")
        } else {
            format!("{SERVER_HEAD} {body}\n location /x {{ proxy_pass http://a; }}\n}}\n")
        };
        if let Ok(ast) = parse("f", &wrapped) {
            if let Ok(c) = convert(&ast, &options()) {
                converted += 1;
                // The mapping only writes what certgate accepts.
                if let Err(e) = Config::parse(&c.yaml, Path::new("/etc/certgate/gateway.yaml")) {
                    panic!("{e}\n--- nginx\n{wrapped}\n--- yaml\n{}", c.yaml);
                }
            }
        }
    }
    assert!(
        converted > 300,
        "only {converted} inputs reached the mapping"
    );
}

#[test]
fn a_nameless_server_behind_another_default_is_listed() {
    let server = |names: &str, line_marker: &str| {
        format!("server {{ # {line_marker}\n listen 443 ssl; {names}\n ssl_certificate s.crt; ssl_certificate_key s.key;\n location / {{ proxy_pass http://a; }}\n}}\n")
    };
    let text =
        server("server_name a.example.org;", "first, nginx's default") + &server("", "nameless");
    let c = run(&text);
    let cfg = config(&c);
    assert_eq!(cfg.servers.len(), 1);
    assert!(
        cfg.servers[0].server_names.is_empty(),
        "the default answers any name"
    );
    assert_listed(&c, 6, "server", "not the default server");
}

// ---------------------------------------------------------------------------
// Access checks: converted exactly, or the route refuses everything
// ---------------------------------------------------------------------------

use certgate_config::{AllowRule, RouteConfig};

/// One server under `ssl_verify_client verify`; `server` goes on line 7, `locations`
/// from line 8 on.
fn mtls(verify: &str, server: &str, locations: &str) -> String {
    format!(
        "server {{\n listen 443 ssl;\n ssl_certificate s.crt;\n ssl_certificate_key s.key;\n ssl_client_certificate ca.crt;\n ssl_verify_client {verify};\n{server}\n{locations}\n}}\n"
    )
}

#[track_caller]
fn route<'c>(cfg: &'c Config, prefix: &str) -> &'c RouteConfig {
    cfg.servers[0]
        .routes
        .iter()
        .find(|r| {
            r.matcher.path_prefix.as_deref() == Some(prefix)
                || r.matcher.path.as_deref() == Some(prefix)
        })
        .unwrap_or_else(|| panic!("no route for {prefix}"))
}

/// Converts one location at `/a` (plus an open `/`) and returns the conversion and `/a`.
fn one(verify: &str, server: &str, checks: &str) -> (Conversion, RouteConfig) {
    let c = run(&mtls(
        verify,
        server,
        &format!(" location /a {{\n{checks}\n proxy_pass http://app;\n }}\n location / {{ proxy_pass http://app; }}"),
    ));
    let cfg = config(&c);
    let r = route(&cfg, "/a").clone();
    (c, r)
}

#[track_caller]
fn assert_converted(c: &Conversion) {
    assert!(c.is_complete(), "{:#?}\n{}", listed(c), c.yaml);
    assert!(c.access_denied.is_empty());
}

#[track_caller]
fn assert_closed(c: &Conversion, r: &RouteConfig, why_part: &str) {
    assert!(r.deny_all, "expected deny_all:\n{}", c.yaml);
    assert!(
        c.access_denied.iter().any(|u| u.why.contains(why_part)),
        "expected an access check listed with …{why_part}…: {:#?}",
        c.access_denied
    );
    assert!(c
        .yaml
        .contains("deny_all: true  # import-nginx: unconverted access check"));
    assert!(
        c.access_denied
            .iter()
            .all(|u| c.yaml.contains(&format!("#   {}:{}: ", u.file, u.line))),
        "the route's comment names each check's file:line\n{}",
        c.yaml
    );
}

#[test]
fn verify_check_under_optional_admits_verified_certificates_only() {
    // 403: certgate's `verified` allow rule answers 403 too (require_client_cert would say 400).
    let (c, r) = one(
        "optional",
        "",
        " if ($ssl_client_verify != SUCCESS) { return 403; }",
    );
    assert_converted(&c);
    assert_eq!(r.allow, vec![AllowRule::Verified]);
    assert!(!r.require_client_cert && !r.deny_all);
    // 400: under optional a failed certificate is already 400 in both; no certificate
    // is require_client_cert's 400.
    let (c, r) = one(
        "optional",
        "",
        " if ($ssl_client_verify != SUCCESS) { return 400; }",
    );
    assert_converted(&c);
    assert!(r.require_client_cert);
    assert!(r.allow.is_empty());
    // The regex spelling of the same check.
    let (c, r) = one(
        "optional",
        "",
        " if ($ssl_client_verify !~ ^SUCCESS$) { return 403; }",
    );
    assert_converted(&c);
    assert_eq!(r.allow, vec![AllowRule::Verified]);
    // `= NONE` only refuses a missing certificate: require_client_cert (400, noted).
    let (c, r) = one(
        "optional_no_ca",
        "",
        " if ($ssl_client_verify = NONE) { return 403; }",
    );
    assert_converted(&c);
    assert!(r.require_client_cert && r.allow.is_empty());
    assert!(c
        .yaml
        .contains("nginx answers 403 without a certificate, certgate 400"));
}

#[test]
fn verify_check_at_server_level_covers_every_route() {
    let c = run(&mtls(
        "optional",
        " if ($ssl_client_verify != SUCCESS) { return 403; }",
        " location /a { proxy_pass http://app; }\n location / { proxy_pass http://app; }",
    ));
    assert_converted(&c);
    let cfg = config(&c);
    for r in &cfg.servers[0].routes {
        assert_eq!(r.allow, vec![AllowRule::Verified]);
    }
    assert!(c
        .yaml
        .contains("if ($ssl_client_verify != SUCCESS) { return 403; } (nginx.conf:7)"));
}

#[test]
fn verify_check_under_optional_no_ca_also_refuses_failed_certificates() {
    // $ssl_client_verify is FAILED:… for a certificate that does not verify: the route
    // must refuse it too, which require_client_cert alone would not.
    let (c, r) = one(
        "optional_no_ca",
        "",
        " if ($ssl_client_verify != SUCCESS) { return 403; }",
    );
    assert_converted(&c);
    assert_eq!(r.allow, vec![AllowRule::Verified]);
    let (c, r) = one(
        "optional_no_ca",
        "",
        " if ($ssl_client_verify != SUCCESS) { return 400; }",
    );
    assert_converted(&c);
    assert!(r.require_client_cert);
    assert_eq!(r.allow, vec![AllowRule::Verified]);
    assert!(c
        .yaml
        .contains("an unverified certificate gets 403 from certgate, 400 from nginx"));
}

#[test]
fn verify_check_under_on_never_refuses() {
    let (c, r) = one(
        "on",
        "",
        " if ($ssl_client_verify != SUCCESS) { return 403; }",
    );
    assert_converted(&c);
    assert!(r.allow.is_empty() && !r.require_client_cert && !r.deny_all);
    assert!(c.yaml.contains("never refuses under ssl_verify_client on"));
}

#[test]
fn subject_and_issuer_checks_become_allow_and_deny_rules() {
    let cases: &[(&str, &str, Vec<AllowRule>, Vec<AllowRule>)] = &[
        (
            "$ssl_client_s_dn !~ \"CN=admin\"",
            "on",
            vec![AllowRule::SubjectRegex(vec!["CN=admin".into()])],
            vec![],
        ),
        (
            "$ssl_client_s_dn !~* \"cn=admin\"",
            "optional",
            vec![AllowRule::SubjectRegex(vec!["(?i)cn=admin".into()])],
            vec![],
        ),
        (
            "$ssl_client_s_dn ~ \"CN=mallory\"",
            "on",
            vec![],
            vec![AllowRule::SubjectRegex(vec!["CN=mallory".into()])],
        ),
        (
            "$ssl_client_s_dn ~* \"cn=mallory\"",
            "on",
            vec![],
            vec![AllowRule::SubjectRegex(vec!["(?i)cn=mallory".into()])],
        ),
        (
            "$ssl_client_s_dn != \"CN=admin,O=Example\"",
            "optional",
            vec![AllowRule::Subject("CN=admin,O=Example".into())],
            vec![],
        ),
        (
            "$ssl_client_s_dn = \"CN=mallory,O=Example\"",
            "on",
            vec![],
            vec![AllowRule::Subject("CN=mallory,O=Example".into())],
        ),
        (
            "$ssl_client_i_dn !~ \"^CN=Example Root CA\"",
            "on",
            vec![AllowRule::IssuerRegex(vec!["^CN=Example Root CA".into()])],
            vec![],
        ),
        (
            "$ssl_client_i_dn != \"CN=Example Root CA\"",
            "optional",
            vec![AllowRule::Issuer("CN=Example Root CA".into())],
            vec![],
        ),
        (
            "$ssl_client_i_dn ~ \"CN=Old CA\"",
            "on",
            vec![],
            vec![AllowRule::IssuerRegex(vec!["CN=Old CA".into()])],
        ),
        (
            "$ssl_client_fingerprint != \"0123456789abcdef0123456789abcdef01234567\"",
            "on",
            vec![AllowRule::FingerprintSha1(vec![
                "0123456789abcdef0123456789abcdef01234567".into(),
            ])],
            vec![],
        ),
        (
            "$ssl_client_fingerprint = \"0123456789abcdef0123456789abcdef01234567\"",
            "on",
            vec![],
            vec![AllowRule::FingerprintSha1(vec![
                "0123456789abcdef0123456789abcdef01234567".into(),
            ])],
        ),
        (
            "$ssl_client_serial != \"0A1B\"",
            "optional",
            vec![AllowRule::Serial(vec!["0A1B".into()])],
            vec![],
        ),
        (
            "$ssl_client_serial = 0A1B",
            "on",
            vec![],
            vec![AllowRule::Serial(vec!["0A1B".into()])],
        ),
    ];
    for (cond, verify, allow, deny) in cases {
        let (c, r) = one(verify, "", &format!(" if ({cond}) {{ return 403; }}"));
        assert_converted(&c);
        assert_eq!(&r.allow, allow, "{cond}\n{}", c.yaml);
        assert_eq!(&r.deny, deny, "{cond}\n{}", c.yaml);
        assert!(!r.deny_all);
    }
}

#[test]
fn a_field_check_returning_400_is_converted_with_a_note() {
    let (c, r) = one(
        "on",
        "",
        " if ($ssl_client_s_dn !~ CN=admin) { return 400; }",
    );
    assert_converted(&c);
    assert_eq!(
        r.allow,
        vec![AllowRule::SubjectRegex(vec!["CN=admin".into()])]
    );
    assert!(c
        .yaml
        .contains("nginx answers 400 where certgate's allow answers 403"));
}

#[test]
fn field_values_nginx_never_prints_fail_closed() {
    for (cond, why) in [
        // nginx compares case-sensitively: an upper-case fingerprint never matches, so
        // `!=` refuses everyone; certgate's normalised rule would admit the certificate.
        (
            "$ssl_client_fingerprint != \"0123456789ABCDEF0123456789ABCDEF01234567\"",
            "lower-case hex",
        ),
        ("$ssl_client_fingerprint != \"01:23\"", "lower-case hex"),
        ("$ssl_client_serial != \"0a1b\"", "upper-case hex"),
        ("$ssl_client_serial ~ \"^0A\"", "compare with = or !="),
        ("$ssl_client_s_dn != \"\"", "empty value"),
        ("$ssl_client_s_dn != \"CN=$host\"", "variables"),
        ("$ssl_client_s_dn !~ \"\\<admin\\>\"", "read it differently"),
        ("$ssl_client_s_dn !~ \"CN=(a)\\1\"", "escape \\1"),
        ("$ssl_client_s_dn !~ \"(?=CN=a)\"", "(?…) group"),
        ("$ssl_client_v_remain = 0", "only $ssl_client_verify"),
        ("$ssl_client_verify = SUCCESS", "only != SUCCESS and = NONE"),
        (
            "$ssl_client_verify !~* success",
            "only != SUCCESS and = NONE",
        ),
        ("$ssl_client_s_dn", "tests for a certificate"),
    ] {
        let (c, r) = one("on", "", &format!(" if ({cond}) {{ return 403; }}"));
        assert_closed(&c, &r, why);
        assert!(r.allow.is_empty() && r.deny.is_empty());
    }
}

#[test]
fn other_answers_and_bodies_fail_closed() {
    for (check, why) in [
        (
            "if ($ssl_client_verify != SUCCESS) { return 401; }",
            "return 401",
        ),
        (
            "if ($ssl_client_verify != SUCCESS) { return 495; }",
            "return 495",
        ),
        (
            "if ($ssl_client_verify != SUCCESS) { return 496; }",
            "return 496",
        ),
        (
            "if ($ssl_client_verify != SUCCESS) { return 302 https://login.example.org/; }",
            "exactly `return 403;`",
        ),
        (
            "if ($ssl_client_verify != SUCCESS) { rewrite ^ https://login.example.org/ redirect; }",
            "exactly `return 403;`",
        ),
        (
            "if ($ssl_client_s_dn !~ CN=admin) { add_header X-Why no; return 403; }",
            "exactly `return 403;`",
        ),
        // Any if that answers 4xx is an access check, whatever it tests.
        ("if ($request_method = POST) { return 405; }", "return 405"),
        (
            "if ($request_method = POST) { return 403; }",
            "not a client-certificate variable",
        ),
        (
            "if ($remote_addr != 10.0.0.1) { return 403; }",
            "not a client-certificate variable",
        ),
        ("if ($http_x_token = \"\") { return 401; }", "return 401"),
        ("return 404;", "return 404"),
    ] {
        let (c, r) = one("optional", "", &format!(" {check}"));
        assert_closed(&c, &r, why);
    }
}

#[test]
fn ifs_that_only_set_or_answer_2xx_stay_unsupported_not_closed() {
    for check in [
        "if ($request_method = OPTIONS) { return 204; }",
        "if ($http_x_debug) { set $debug 1; }",
        "if ($ssl_client_s_dn ~ \"CN=(?<who>[^,]+)\") { set $user $who; }",
    ] {
        let (c, r) = one("on", "", &format!(" {check}"));
        assert!(!r.deny_all, "{check}\n{}", c.yaml);
        assert!(c.access_denied.is_empty());
        assert_listed(&c, 9, "if", "conditional configuration is not supported");
    }
}

#[test]
fn several_checks_must_all_hold() {
    // verify + allow-list: allow rules only match verified certificates.
    let (c, r) = one(
        "optional_no_ca",
        "",
        " if ($ssl_client_verify != SUCCESS) { return 403; }\n if ($ssl_client_s_dn !~ CN=admin) { return 403; }",
    );
    assert_converted(&c);
    assert_eq!(
        r.allow,
        vec![AllowRule::SubjectRegex(vec!["CN=admin".into()])]
    );
    // allow and deny together.
    let (c, r) = one(
        "on",
        "",
        " if ($ssl_client_s_dn !~ O=Example) { return 403; }\n if ($ssl_client_s_dn ~ CN=mallory) { return 403; }",
    );
    assert_converted(&c);
    assert_eq!(
        r.allow,
        vec![AllowRule::SubjectRegex(vec!["O=Example".into()])]
    );
    assert_eq!(
        r.deny,
        vec![AllowRule::SubjectRegex(vec!["CN=mallory".into()])]
    );
    // Two different allow-lists: nginx wants both, certgate's allow is any-of.
    let (c, r) = one(
        "on",
        "",
        " if ($ssl_client_s_dn !~ O=Example) { return 403; }\n if ($ssl_client_i_dn !~ CN=Root) { return 403; }",
    );
    assert_closed(&c, &r, "a second allow-list");
    // A server-level allow-list and a location-level one are also both required.
    let (c, r) = one(
        "on",
        " if ($ssl_client_s_dn !~ O=Example) { return 403; }",
        " if ($ssl_client_s_dn !~ CN=admin) { return 403; }",
    );
    assert_closed(&c, &r, "a second allow-list");
    let root = route(&config(&c), "/").clone();
    assert_eq!(
        root.allow,
        vec![AllowRule::SubjectRegex(vec!["O=Example".into()])]
    );
}

#[test]
fn without_a_verify_check_only_exact_combinations_convert() {
    // optional_no_ca: nginx also admits an unverified certificate whose subject matches.
    let (c, r) = one(
        "optional_no_ca",
        "",
        " if ($ssl_client_s_dn !~ CN=admin) { return 403; }",
    );
    assert_closed(&c, &r, "optional_no_ca");
    // optional: a deny-list alone lets callers without a certificate through in nginx;
    // certgate's deny admits verified certificates only.
    let (c, r) = one(
        "optional",
        "",
        " if ($ssl_client_s_dn ~ CN=mallory) { return 403; }",
    );
    assert_closed(&c, &r, "deny rules admit verified certificates only");
    let (c, r) = one(
        "optional",
        "",
        " if ($ssl_client_verify != SUCCESS) { return 403; }\n if ($ssl_client_s_dn ~ CN=mallory) { return 403; }",
    );
    assert_converted(&c);
    assert_eq!(
        r.deny,
        vec![AllowRule::SubjectRegex(vec!["CN=mallory".into()])]
    );
    // A pattern that matches the empty value lets certificate-less callers past nginx.
    let (c, r) = one(
        "optional",
        "",
        " if ($ssl_client_s_dn !~ \"^$|CN=admin\") { return 403; }",
    );
    assert_closed(&c, &r, "matches the empty value");
    // …which cannot happen under `on`.
    let (c, r) = one(
        "on",
        "",
        " if ($ssl_client_s_dn !~ \"^$|CN=admin\") { return 403; }",
    );
    assert_converted(&c);
    assert_eq!(r.allow.len(), 1);
    // verify off: no certificate, every $ssl_client_* check refuses everyone.
    let text = mtls(
        "off",
        "",
        " location /a { if ($ssl_client_verify != SUCCESS) { return 403; } proxy_pass http://app; }",
    )
    .replace(" ssl_client_certificate ca.crt;\n", "");
    let c = run(&text);
    let cfg = config(&c);
    assert_closed(&c, route(&cfg, "/a"), "ssl_verify_client is off");
}

#[test]
fn maps_that_are_plain_allow_or_deny_lists_convert() {
    let map = "map $ssl_client_s_dn $ok {\n default 0;\n \"~CN=alice\" 1;\n \"~*cn=bob\" 1;\n \"CN=carol,O=Example\" 1;\n}\n";
    for cond in ["$ok = 0", "$ok != 1"] {
        let text = map.to_string()
            + &mtls(
                "on",
                "",
                &format!(" location /a {{ if ({cond}) {{ return 403; }} proxy_pass http://app; }}"),
            );
        let c = run(&text);
        assert_converted(&c);
        let cfg = config(&c);
        assert_eq!(
            route(&cfg, "/a").allow,
            vec![
                AllowRule::SubjectRegex(vec!["CN=alice".into()]),
                AllowRule::SubjectRegex(vec!["(?i)cn=bob".into()]),
                // map compares plain strings ignoring case.
                AllowRule::SubjectRegex(vec!["(?i)^CN=carol,O=Example$".into()]),
            ],
            "{cond}"
        );
    }
    // A deny-list map read with a plain test.
    let text = "map $ssl_client_serial $blocked { default 0; 0A1B 1; }\n".to_string()
        + &mtls(
            "on",
            "",
            " location /a { if ($blocked) { return 403; } proxy_pass http://app; }",
        );
    let c = run(&text);
    assert_converted(&c);
    assert_eq!(
        route(&config(&c), "/a").deny,
        vec![AllowRule::Serial(vec!["0A1B".into()])]
    );
}

#[test]
fn other_maps_fail_closed_and_are_listed() {
    for (map, why) in [
        // An entry gives the default's answer: order matters, not a plain list.
        (
            "map $ssl_client_s_dn $ok { default 0; ~CN=mallory 0; ~CN= 1; }",
            "same answer as the default",
        ),
        (
            "map $ssl_client_s_dn $ok { hostnames; default 0; ~CN=a 1; }",
            "hostnames",
        ),
        (
            "map $ssl_client_s_dn $ok { default 0; ~CN=a $ssl_client_s_dn; }",
            "variables",
        ),
        (
            "map $http_x_user $ok { default 0; alice 1; }",
            "source $http_x_user",
        ),
        (
            "map $ssl_client_fingerprint $ok { default 0; ~^ab 1; }",
            "compare with = or !=",
        ),
    ] {
        let text = format!("{map}\n")
            + &mtls(
                "on",
                "",
                " location /a { if ($ok = 0) { return 403; } proxy_pass http://app; }",
            );
        let c = run(&text);
        let cfg = config(&c);
        assert_closed(&c, route(&cfg, "/a"), why);
        assert_listed(&c, 1, "map", "variables defined in the configuration");
    }
}

#[test]
fn access_phase_modules() {
    // deny all / return 403 refuse everything: deny_all, exact, not listed.
    for check in ["deny all;", "return 403;"] {
        let (c, r) = one("on", "", &format!(" {check}"));
        assert_converted(&c);
        assert!(r.deny_all, "{check}");
        assert!(c.yaml.contains("nginx refuses every request here"));
    }
    // allow all first: everyone gets in.
    let (c, r) = one("on", "", " allow all;");
    assert_converted(&c);
    assert!(!r.deny_all);
    let (c, r) = one("on", "", " auth_basic off;");
    assert_converted(&c);
    assert!(!r.deny_all);
    for (check, why) in [
        ("allow 10.0.0.0/8;\n deny all;", "address allow/deny"),
        ("auth_basic \"closed\";", "HTTP authentication"),
        ("auth_request /auth;", "HTTP authentication"),
        ("limit_except GET { deny all; }", "limit_except"),
    ] {
        let (c, r) = one("on", "", &format!(" {check}"));
        assert_closed(&c, &r, why);
    }
    // Inherited from the http level: every route.
    let text = format!(
        "http {{\n deny 192.0.2.1;\n{}}}\n",
        mtls(
            "on",
            "",
            " location /a { proxy_pass http://app; }\n location / { proxy_pass http://app; }"
        )
    );
    let c = run(&text);
    let cfg = config(&c);
    assert!(
        cfg.servers[0].routes.iter().all(|r| r.deny_all),
        "{}",
        c.yaml
    );
    assert_listed(&c, 2, "deny", "address allow/deny");
}

#[test]
fn a_server_level_check_that_cannot_convert_closes_every_route() {
    let c = run(&mtls(
        "on",
        " if ($request_method !~ ^(GET|HEAD)$) { return 405; }",
        " location /a { proxy_pass http://app; }\n location / { proxy_pass http://app; }",
    ));
    let cfg = config(&c);
    assert_eq!(cfg.servers[0].routes.len(), 2);
    for r in &cfg.servers[0].routes {
        assert_closed(&c, r, "return 405");
    }
    assert_eq!(c.access_denied.len(), 1, "listed once, for its line");
    assert_eq!(c.access_denied[0].line, 7);
}

#[test]
fn refusing_locations_do_not_fall_through_to_another_route() {
    let c = run(&mtls(
        "on",
        "",
        " location /admin { return 403; }\n location /private { allow 10.0.0.0/8; deny all; root /srv; }\n location /v1/ { if ($ssl_client_s_dn !~ CN=admin) { return 403; } proxy_pass http://app/v2/; }\n location /v3/ { if ($ssl_client_s_dn !~ CN=admin) { return 403; } proxy_pass http://app/v2/../x/; }\n location = /health { return 200 ok; }\n location / { proxy_pass http://app; }",
    ));
    let cfg = config(&c);
    // nginx answers 403 to all of /admin: an exact conversion.
    let admin = route(&cfg, "/admin");
    assert!(admin.deny_all);
    assert!(
        !c.unsupported.iter().any(|u| u.line == 8),
        "{:#?}",
        listed(&c)
    );
    // Not proxied, but with its own access rules: closed, listed.
    assert_closed(&c, route(&cfg, "/private"), "not proxied");
    // A URI part replaces the location (upstream_path), and the check comes along.
    let v1 = route(&cfg, "/v1/");
    assert!(!v1.deny_all);
    assert_eq!(v1.upstream_path.as_deref(), Some("/v2/"));
    assert_eq!(v1.allow.len(), 1, "{}", c.yaml);
    // A location that cannot be converted (a URI part that is no plain path) keeps its
    // check by closing.
    assert_closed(&c, route(&cfg, "/v3/"), "not proxied");
    // A fixed 200 answer is not an access check: left out as before.
    assert!(cfg.servers[0]
        .routes
        .iter()
        .all(|r| r.matcher.path.as_deref() != Some("/health")));
    assert_listed(&c, 12, "return", "fixed responses");
    // The closed routes borrow an upstream; identity headers are unaffected.
    assert_eq!(cfg.upstreams.len(), 1);
}

#[test]
fn access_comments_name_the_nginx_lines() {
    let (c, _) = one(
        "optional",
        "",
        " if ($ssl_client_s_dn !~ \"CN=admin\") { return 403; }\n if ($http_x = 1) { return 403; }",
    );
    assert!(
        c.yaml
            .contains("#   nginx.conf:10: if ($http_x = 1) { return 403; }: a check on $http_x"),
        "{}",
        c.yaml
    );
    assert!(
        c.yaml.contains("- subject_regex: [\"CN=admin\"]"),
        "{}",
        c.yaml
    );
}

#[test]
fn access_fixtures_convert_as_the_e2e_suite_expects() {
    let fill_access = |t: &str| {
        fill(t)
            .replace("@FINGERPRINT@", "0123456789abcdef0123456789abcdef01234567")
            .replace("@SERIAL@", "0A1B")
    };
    let c = run(&fill_access(include_str!(
        "../../../tests/e2e/nginx_fixtures/access_checks.conf"
    )));
    assert_converted(&c);
    let cfg = config(&c);
    assert_eq!(route(&cfg, "/verify/").allow, vec![AllowRule::Verified]);
    assert!(route(&cfg, "/verify400/").require_client_cert);
    assert_eq!(
        route(&cfg, "/map/").allow,
        vec![
            AllowRule::SubjectRegex(vec!["CN=alice,".into()]),
            AllowRule::SubjectRegex(vec!["(?i)cn=nobody-else".into()]),
        ]
    );
    assert!(route(&cfg, "/closed/").deny_all);
    assert!(route(&cfg, "/").allow.is_empty());

    let c = run(&fill_access(include_str!(
        "../../../tests/e2e/nginx_fixtures/access_unconvertible.conf"
    )));
    assert_eq!(c.access_denied.len(), 2, "{:#?}", c.access_denied);
    let cfg = config(&c);
    assert!(route(&cfg, "/legacy/").deny_all && route(&cfg, "/login/").deny_all);
    assert!(!route(&cfg, "/").deny_all);
}

#[test]
fn a_dropped_server_leaves_no_access_check_claimed_by_a_route() {
    // The second server has no proxied location: it is not written at all, so its check
    // is listed but no route claims it.
    let text = mtls("on", "", " location / { proxy_pass http://app; }")
        + "server {\n listen 8443 ssl;\n ssl_certificate s.crt;\n ssl_certificate_key s.key;\n location /x { if ($request_method = POST) { return 405; } root /srv; }\n}\n";
    let c = run(&text);
    assert!(c.access_denied.is_empty(), "{:#?}", c.access_denied);
    assert!(c
        .unsupported
        .iter()
        .any(|u| u.why.starts_with(crate::ACCESS_DENIED)));
}

/// Fuzz finding (fuzz/regressions/nginx_import/verify-without-ca.conf): a server asking for client
/// certificates with nothing to check them against was written without the check, and the
/// output did not load. nginx refuses such a server; so does the conversion.
#[test]
fn verify_without_a_ca_leaves_the_server_out() {
    for verify in ["on", "optional"] {
        let text = mtls(verify, "", " location / { proxy_pass http://app; }")
            .replace(" ssl_client_certificate ca.crt;\n", "");
        let ast = load("nginx.conf", &text, &mut NoIncludes).expect("parses");
        let nothing = convert(&ast, &options()).expect_err("nothing left to convert");
        assert!(
            nothing.unsupported.iter().any(|u| u
                .why
                .contains("server block not converted: needs ssl_client_certificate")),
            "{:#?}",
            nothing.unsupported
        );
    }
}

/// Fuzz finding (fuzz/regressions/nginx_import/upstream-cert-without-key.conf): an upstream
/// client certificate without its key was written, and certgate refused the output.
#[test]
fn an_upstream_client_certificate_without_its_key_is_listed_not_written() {
    let c = run(&mtls(
        "on",
        "",
        " location / { grpc_pass grpcs://127.0.0.1:8080; grpc_ssl_certificate c.crt; }",
    ));
    let cfg = config(&c);
    let upstream = cfg.upstreams.values().next().expect("one upstream");
    assert!(
        upstream
            .tls
            .as_ref()
            .is_none_or(|t| t.cert.is_none() && t.key.is_none()),
        "{}",
        c.yaml
    );
    assert_listed(
        &c,
        8,
        "grpc_ssl_certificate",
        "without grpc_ssl_certificate_key",
    );
}

/// Fuzz finding (fuzz/regressions/nginx_import/zero-timeout.conf): `proxy_read_timeout 0h`
/// was written as `read: 0h`, which certgate refuses.
#[test]
fn a_zero_timeout_is_listed_not_written() {
    let c = run(&mtls(
        "on",
        "",
        " location / { proxy_pass http://app; proxy_read_timeout 0h; proxy_send_timeout 0; }",
    ));
    let cfg = config(&c);
    assert_eq!(
        cfg.servers[0].routes[0].timeouts.read,
        std::time::Duration::from_secs(60)
    );
    assert_listed(&c, 8, "proxy_read_timeout", "zero timeout");
    assert_listed(&c, 8, "proxy_send_timeout", "zero timeout");
}

/// Fuzz finding (fuzz/regressions/nginx_import/conflicting-server-name.conf): two servers
/// naming the same host on one address were both written, which certgate refuses; nginx
/// warns and keeps the first.
#[test]
fn a_conflicting_server_name_is_listed_and_the_first_server_keeps_it() {
    let server = |name: &str, up: &str| {
        format!(
            "server {{\n listen 443 ssl;\n server_name {name};\n ssl_certificate s.crt;\n ssl_certificate_key s.key;\n ssl_client_certificate ca.crt;\n ssl_verify_client on;\n location / {{ proxy_pass http://{up}; }}\n}}\n"
        )
    };
    let text = format!(
        "{}{}{}",
        server("default.test", "d"),
        server("api.test", "one"),
        server("api.test other.test", "two")
    );
    let c = run(&text);
    let cfg = config(&c);
    let named: Vec<Vec<String>> = cfg.servers.iter().map(|s| s.server_names.clone()).collect();
    assert!(named.contains(&vec!["api.test".to_string()]), "{named:?}");
    assert!(named.contains(&vec!["other.test".to_string()]), "{named:?}");
    assert_listed(
        &c,
        19,
        "server_name",
        "conflicting server name \"api.test\"",
    );
}

/// Fuzz finding (fuzz/regressions/nginx_import/protocol-listed-twice.conf): a protocol
/// named twice in `ssl_protocols` was written twice, which certgate refuses.
#[test]
fn a_protocol_named_twice_is_written_once() {
    let c = run(&mtls(
        "on",
        " ssl_protocols TLSv1.2 TLSv1.2 TLSv1.3;",
        " location / { proxy_pass http://app; }",
    ));
    let cfg = config(&c);
    assert_eq!(cfg.servers[0].tls.protocols.len(), 2, "{}", c.yaml);
}

/// Fuzz finding (fuzz/regressions/nginx_import/keepalive-timeout-not-a-time.conf):
/// `keepalive_timeout h` was written as it stood, which certgate refuses; 0 too.
#[test]
fn a_keepalive_timeout_certgate_cannot_take_is_listed_not_written() {
    for value in ["h", "0", "0s"] {
        let c = run(&mtls(
            "on",
            &format!(" keepalive_timeout {value};"),
            " location / { proxy_pass http://app; }",
        ));
        let cfg = config(&c);
        assert_eq!(
            cfg.keepalive_timeout,
            std::time::Duration::from_secs(60),
            "{value}"
        );
        assert_listed(&c, 7, "keepalive_timeout", "");
    }
}

/// Fuzz finding (fuzz/regressions/nginx_import/server-name-twice.conf): a name given twice
/// in one server was written twice, which certgate refuses.
#[test]
fn a_server_name_given_twice_is_written_once() {
    // A default server first, so the second keeps its names.
    let text = format!(
        "{}{}",
        mtls(
            "on",
            " server_name default.test;",
            " location / { proxy_pass http://app; }"
        ),
        mtls(
            "on",
            " server_name api.test API.test api.test;",
            " location / { proxy_pass http://app; }"
        )
    );
    let c = run(&text);
    let cfg = config(&c);
    let names: Vec<Vec<String>> = cfg.servers.iter().map(|s| s.server_names.clone()).collect();
    assert!(
        names.contains(&vec!["api.test".to_string()]),
        "{names:?}\n{}",
        c.yaml
    );
}
