//! `certgate import-nginx` end to end: the real binary on files in a temporary
//! directory: includes with globs, exit codes 0 / 2 / 1, stdout or `-o`, and the output
//! passing `certgate check` against a PKI made by `certgate certs init`.

mod common;

use common::{certgate_in as certgate, output_text as text};

use std::fs;
use std::path::Path;
use std::process::Output;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// nginx.conf in `dir/nginx/` with the server block in an included file, certificates
/// under `dir/nginx/ssl/` made by `certgate certs init`.
fn setup(dir: &Path, location_extra: &str) {
    let nginx = dir.join("nginx");
    fs::create_dir_all(nginx.join("sites-enabled")).unwrap();
    let init = certgate(dir, &["certs", "init", "--dir", "nginx/ssl"]);
    assert!(init.status.success(), "{}", text(&init));
    fs::write(
        nginx.join("nginx.conf"),
        "events {}\nhttp {\n    include sites-enabled/*.conf;\n}\n",
    )
    .unwrap();
    fs::write(
        nginx.join("sites-enabled/api.conf"),
        format!(
            "server {{\n    listen 127.0.0.1:8443 ssl http2;\n    ssl_certificate ssl/server.crt;\n    ssl_certificate_key ssl/server.key;\n    ssl_client_certificate ssl/ca.crt;\n    ssl_verify_client on;\n    location / {{\n        proxy_pass http://127.0.0.1:5000;\n        proxy_set_header X-SSL-Client-S-DN $ssl_client_s_dn;\n{location_extra}    }}\n}}\n"
        ),
    )
    .unwrap();
    // Not matched by the glob: must not be read.
    fs::write(nginx.join("sites-enabled/broken.conf.disabled"), "server {").unwrap();
}

#[test]
fn complete_conversion_exits_0_and_passes_check() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir, "");
    fs::create_dir_all(dir.join("certgate")).unwrap();
    // Run from elsewhere: includes and ssl_* paths are nginx's (relative to nginx.conf's
    // directory), the output's relative to the output file.
    let out = certgate(
        dir,
        &[
            "import-nginx",
            "nginx/nginx.conf",
            "-o",
            "certgate/gateway.yaml",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        out.stdout.is_empty(),
        "the YAML goes to the file: {}",
        text(&out)
    );
    assert!(
        stderr(&out).contains("every directive was carried over"),
        "{}",
        text(&out)
    );
    let yaml = fs::read_to_string(dir.join("certgate/gateway.yaml")).unwrap();
    assert!(yaml.contains("cert: ../nginx/ssl/server.crt  # ssl_certificate ssl/server.crt (nginx/sites-enabled/api.conf:3)"), "{yaml}");

    let check = certgate(dir, &["-c", "certgate/gateway.yaml", "check"]);
    assert!(check.status.success(), "{}\n{yaml}", text(&check));
    assert!(String::from_utf8_lossy(&check.stdout).contains("test is successful"));
}

#[test]
fn stdout_without_output_file() {
    let tmp = tempfile::tempdir().unwrap();
    setup(tmp.path(), "");
    let nginx = tmp.path().join("nginx");
    let out = certgate(&nginx, &["import-nginx", "nginx.conf"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let yaml = String::from_utf8_lossy(&out.stdout);
    // Relative to the current directory, which is nginx.conf's here.
    assert!(yaml.contains("cert: ssl/server.crt"), "{yaml}");
    assert!(
        yaml.contains("X-SSL-Client-S-DN: \"$ssl_client_s_dn\""),
        "{yaml}"
    );
}

#[test]
fn a_sites_enabled_file_with_conf_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir, "");
    // nginx reads sites-enabled/api.conf from nginx.conf: its paths are relative to nginx/.
    let out = certgate(
        dir,
        &[
            "import-nginx",
            "nginx/sites-enabled/api.conf",
            "--conf-dir",
            "nginx",
            "-o",
            "gateway.yaml",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let yaml = fs::read_to_string(dir.join("gateway.yaml")).unwrap();
    assert!(yaml.contains("cert: nginx/ssl/server.crt"), "{yaml}");
    let check = certgate(dir, &["-c", "gateway.yaml", "check"]);
    assert!(check.status.success(), "{}", text(&check));
}

#[test]
fn incomplete_conversion_exits_2_and_lists_each_directive() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(
        dir,
        "        rewrite ^/old/(.*)$ /new/$1 break;\n        add_header X-Frame-Options DENY;\n",
    );
    let out = certgate(
        dir,
        &["import-nginx", "nginx/nginx.conf", "-o", "gateway.yaml"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("nginx/sites-enabled/api.conf:10: rewrite: URL rewriting is not supported"),
        "{err}"
    );
    assert!(
        err.contains(
            "nginx/sites-enabled/api.conf:11: add_header: response headers cannot be added"
        ),
        "{err}"
    );
    assert!(err.contains("INCOMPLETE: 2 directive(s)"), "{err}");
    let yaml = fs::read_to_string(dir.join("gateway.yaml")).unwrap();
    assert!(
        yaml.contains("# NOT carried over (2, also printed on stderr):"),
        "{yaml}"
    );
    let check = certgate(dir, &["-c", "gateway.yaml", "check"]);
    assert!(check.status.success(), "{}", text(&check));
}

#[test]
fn errors_exit_1_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();

    fs::write(
        dir.join("bad.conf"),
        "http {\n  server {\n    listen 443 ssl\n  }\n}\n",
    )
    .unwrap();
    let out = certgate(dir, &["import-nginx", "bad.conf", "-o", "out.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("bad.conf:4:3: unexpected \"}\""),
        "{}",
        text(&out)
    );
    assert!(!dir.join("out.yaml").exists());

    fs::write(
        dir.join("plain.conf"),
        "server { listen 80; location / { proxy_pass http://127.0.0.1:5000; } }\n",
    )
    .unwrap();
    let out = certgate(dir, &["import-nginx", "plain.conf", "-o", "out.yaml"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("plain.conf:1: listen: plain HTTP listener"),
        "{err}"
    );
    assert!(err.contains("no server block with a TLS listener"), "{err}");
    assert!(!dir.join("out.yaml").exists());

    fs::write(dir.join("cycle.conf"), "include cycle.conf;\n").unwrap();
    let out = certgate(dir, &["import-nginx", "cycle.conf"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr(&out).contains("include cycle"), "{}", text(&out));

    let out = certgate(dir, &["import-nginx", "missing.conf"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("cannot read missing.conf"),
        "{}",
        text(&out)
    );
}

#[test]
fn converted_access_checks_exit_0_and_pass_check() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(
        dir,
        "        if ($ssl_client_s_dn !~ \"CN=admin\") { return 403; }\n        if ($ssl_client_fingerprint = \"0123456789abcdef0123456789abcdef01234567\") { return 403; }\n",
    );
    let out = certgate(
        dir,
        &["import-nginx", "nginx/nginx.conf", "-o", "gateway.yaml"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let yaml = fs::read_to_string(dir.join("gateway.yaml")).unwrap();
    assert!(
        yaml.contains("- subject_regex: [\"CN=admin\"]  # nginx/sites-enabled/api.conf:10"),
        "{yaml}"
    );
    assert!(
        yaml.contains("- fingerprint_sha1: [0123456789abcdef0123456789abcdef01234567]"),
        "{yaml}"
    );
    let check = certgate(dir, &["-c", "gateway.yaml", "check"]);
    assert!(check.status.success(), "{}\n{yaml}", text(&check));
}

#[test]
fn unconvertible_access_check_exits_2_and_the_route_denies_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(
        dir,
        "        if ($ssl_client_s_dn !~ \"CN=admin\") { return 403; }\n        if ($request_method = DELETE) { return 405; }\n",
    );
    let out = certgate(
        dir,
        &["import-nginx", "nginx/nginx.conf", "-o", "gateway.yaml"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("nginx/sites-enabled/api.conf:11: if: access check not converted: the route(s) it covers refuse every request (deny_all: true): return 405"),
        "{err}"
    );
    assert!(
        err.contains("1 access check(s) above could not be carried over exactly"),
        "{err}"
    );
    let yaml = fs::read_to_string(dir.join("gateway.yaml")).unwrap();
    assert!(
        yaml.contains(
            "#   nginx/sites-enabled/api.conf:11: if ($request_method = DELETE) { return 405; }"
        ),
        "{yaml}"
    );
    assert!(yaml.contains("deny_all: true"), "{yaml}");
    // The closed configuration is still one certgate runs.
    let check = certgate(dir, &["-c", "gateway.yaml", "check"]);
    assert!(check.status.success(), "{}\n{yaml}", text(&check));
}
