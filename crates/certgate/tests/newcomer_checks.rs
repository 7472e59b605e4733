//! What a newcomer trips over (issue 23), with the real binary in temporary directories:
//! a first configuration after `certs init`, `check` refusing certificates that cannot
//! work where they are configured, and `--help`/`-c`/`--force` that mean the same thing on
//! every command.

mod common;

use common::{certgate_in as certgate, output_text as text};

use std::fs;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_certgate");

#[track_caller]
fn ok(out: Output) -> Output {
    assert!(out.status.success(), "expected success\n{}", text(&out));
    out
}

/// Exit 1, `message` on stderr, no panic.
#[track_caller]
fn fails(out: Output, message: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1\n{}",
        text(&out)
    );
    assert!(!err.contains("panicked"), "{}", text(&out));
    assert!(err.contains(message), "want {message:?}\n{}", text(&out));
    err
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A directory with `certs init`'s PKI in certs/ (and the gateway.yaml it writes).
fn initialised() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    ok(certgate(tmp.path(), &["certs", "init"]));
    tmp
}

/// A one-server configuration around the given `tls` and `client_auth` lines.
fn config(dir: &Path, extra_server: &str, tls: &str, client_auth: &str) -> String {
    let yaml = format!(
        "servers:\n  - listen: [\"127.0.0.1:0\"]\n{extra_server}    tls: {tls}\n    client_auth: {client_auth}\n    routes: [{{ match: {{ path_prefix: / }}, upstream: app }}]\nupstreams:\n  app: {{ servers: [\"127.0.0.1:1\"] }}\n"
    );
    fs::write(dir.join("gw.yaml"), yaml).unwrap();
    "gw.yaml".into()
}

const SERVER_TLS: &str = "{ cert: certs/server.crt, key: certs/server.key }";
const CLIENT_AUTH: &str = "{ verify: on, ca: certs/ca.crt }";

// (4) ---------------------------------------------------------------------------------

#[test]
fn init_leaves_a_configuration_that_run_can_use() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // No configuration yet: the error says where one comes from.
    for command in [&["check"][..], &["run"][..], &[][..]] {
        let err = fails(certgate(dir, command), "cannot read the configuration file");
        assert!(err.contains("certgate certs init"), "{err}");
        assert!(err.contains("certgate demo"), "{err}");
    }

    let out = ok(certgate(dir, &["certs", "init"]));
    assert!(
        stdout(&out).contains("wrote gateway.yaml"),
        "{}",
        text(&out)
    );
    let yaml = fs::read_to_string(dir.join("gateway.yaml")).unwrap();
    assert!(yaml.contains("certs/server.crt"), "{yaml}");
    // README's `certgate reload` and `kill -USR1 $(cat certgate.pid)` find the process.
    assert!(yaml.contains("\npid_file: certgate.pid"), "{yaml}");
    let check = ok(certgate(dir, &["check"]));
    assert!(
        stdout(&check).contains("test is successful"),
        "{}",
        text(&check)
    );

    // An existing configuration is the user's: never replaced, not even with --force.
    fs::write(dir.join("gateway.yaml"), "# mine\n").unwrap();
    let out = ok(certgate(dir, &["certs", "init", "--force"]));
    assert!(
        stdout(&out).contains("gateway.yaml exists"),
        "{}",
        text(&out)
    );
    assert_eq!(
        fs::read_to_string(dir.join("gateway.yaml")).unwrap(),
        "# mine\n"
    );

    // A PKI elsewhere: the configuration goes beside it, and names it from there.
    let other = tempfile::tempdir().unwrap();
    ok(certgate(other.path(), &["certs", "init", "--dir", "pki"]));
    ok(certgate(other.path(), &["check"]));
    let out = ok(certgate(
        other.path(),
        &["certs", "init", "--dir", "etc/certgate/certs"],
    ));
    assert!(
        stdout(&out).contains("certgate run -c etc/certgate/gateway.yaml"),
        "{}",
        text(&out)
    );
    let yaml = fs::read_to_string(other.path().join("etc/certgate/gateway.yaml")).unwrap();
    assert!(yaml.contains("cert: \"certs/server.crt\""), "{yaml}");
    ok(certgate(
        other.path(),
        &["-c", "etc/certgate/gateway.yaml", "check"],
    ));
    // Checked from anywhere: its paths are relative to its own directory.
    ok(certgate(
        &other.path().join("pki"),
        &["check", "-c", "../etc/certgate/gateway.yaml"],
    ));
}

// (5) ---------------------------------------------------------------------------------

#[test]
fn check_refuses_a_client_certificate_as_the_server_certificate() {
    let tmp = initialised();
    let dir = tmp.path();
    let gw = config(
        dir,
        "",
        "{ cert: certs/client.crt, key: certs/client.key }",
        CLIENT_AUTH,
    );
    let err = fails(certgate(dir, &["check", "-c", &gw]), "servers[0].tls.cert");
    assert!(
        err.contains("gw.yaml:3:") && err.contains("does not include serverAuth"),
        "{err}"
    );
    assert!(!err.contains("test is successful"), "{err}");
}

#[test]
fn check_wants_a_subject_alt_name_for_the_server_names() {
    let tmp = initialised();
    let dir = tmp.path();
    // None of the names: an error naming the file and the key path.
    let gw = config(
        dir,
        "    server_names: [api.example.org]\n",
        SERVER_TLS,
        CLIENT_AUTH,
    );
    let err = fails(certgate(dir, &["check", "-c", &gw]), "servers[0].tls.cert");
    assert!(
        err.contains("not valid for any of server_names (api.example.org)")
            && err.contains("DNS:localhost"),
        "{err}"
    );
    // Some of them: a warning on the names not covered, and success.
    let gw = config(
        dir,
        "    server_names: [localhost, api.example.org]\n",
        SERVER_TLS,
        CLIENT_AUTH,
    );
    let out = ok(certgate(dir, &["check", "-c", &gw]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[warn]")
            && err.contains("servers[0].server_names: api.example.org not covered"),
        "{}",
        text(&out)
    );
    // Without server_names nothing is compared (the default server answers any name).
    let gw = config(dir, "", SERVER_TLS, CLIENT_AUTH);
    ok(certgate(dir, &["check", "-c", &gw]));
}

#[test]
fn check_refuses_a_leaf_certificate_as_a_client_ca() {
    let tmp = initialised();
    let dir = tmp.path();
    let gw = config(dir, "", SERVER_TLS, "{ verify: on, ca: certs/client.crt }");
    let err = fails(
        certgate(dir, &["check", "-c", &gw]),
        "servers[0].client_auth.ca: certs/client.crt",
    );
    assert!(err.contains("is not a CA certificate"), "{err}");
    let gw = config(
        dir,
        "",
        SERVER_TLS,
        "{ verify: on, ca: certs/ca.crt, trusted_ca: [certs/ca.crt, certs/server.crt] }",
    );
    let err = fails(
        certgate(dir, &["check", "-c", &gw]),
        "servers[0].client_auth.trusted_ca[1]: certs/server.crt",
    );
    assert!(!err.contains("trusted_ca[0]"), "{err}");
}

#[test]
fn run_refuses_what_check_refuses() {
    let tmp = initialised();
    let dir = tmp.path();
    let gw = config(
        dir,
        "",
        "{ cert: certs/client.crt, key: certs/client.key }",
        "{ verify: on, ca: certs/client.crt }",
    );
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .args(["run", "-c", &gw, "--pid-file", "gw.pid"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("certgate run started with a client certificate as tls.cert");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("servers[0].tls.cert") && err.contains("servers[0].client_auth.ca"),
        "{err}"
    );
}

// (10) --------------------------------------------------------------------------------

fn help(args: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let mut all = args.to_vec();
    all.push("--help");
    stdout(&ok(certgate(tmp.path(), &all)))
}

#[test]
fn config_option_only_where_a_configuration_is_read() {
    assert!(help(&[]).contains("url-key"), "{}", help(&[]));
    for command in [
        &["demo"][..],
        &["import-nginx"],
        &["certs"],
        &["certs", "init"],
        &["certs", "issue"],
        &["certs", "p12"],
        &["certs", "verify"],
        &["certs", "url-key"],
    ] {
        let text = help(command);
        assert!(!text.contains("--config"), "{command:?}:\n{text}");
    }
    for command in [&["run"][..], &["check"], &["reload"], &["certs", "inspect"]] {
        let text = help(command);
        assert!(text.contains("-c, --config <FILE>"), "{command:?}:\n{text}");
    }

    let tmp = initialised();
    let dir = tmp.path();
    fs::rename(dir.join("gateway.yaml"), dir.join("gw.yaml")).unwrap();
    // Before or after the command, as SPEC.md has it.
    ok(certgate(dir, &["-c", "gw.yaml", "check"]));
    ok(certgate(dir, &["check", "-c", "gw.yaml"]));
    ok(certgate(dir, &["check", "--config", "gw.yaml"]));
    fails(
        certgate(dir, &["-c", "other.yaml", "check", "-c", "gw.yaml"]),
        "given twice",
    );
    // Not silently ignored where nothing reads it.
    fails(
        certgate(dir, &["-c", "gw.yaml", "demo"]),
        "`demo` reads no configuration file",
    );
    fails(
        certgate(
            dir,
            &["-c", "gw.yaml", "certs", "issue", "client", "--cn", "x"],
        ),
        "`certs issue` reads no configuration file",
    );
    assert!(!dir.join("certs/x.crt").exists());
}

#[test]
fn import_nginx_refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    fs::write(
        dir.join("nginx.conf"),
        "events {}\nhttp {\n  server {\n    listen 8443 ssl;\n    ssl_certificate s.crt;\n    ssl_certificate_key s.key;\n    location / { proxy_pass http://127.0.0.1:5000; }\n  }\n}\n",
    )
    .unwrap();
    fs::write(dir.join("gateway.yaml"), "# hand-written\n").unwrap();
    fails(
        certgate(dir, &["import-nginx", "nginx.conf", "-o", "gateway.yaml"]),
        "gateway.yaml already exists; nothing written (use --force to replace it)",
    );
    assert_eq!(
        fs::read_to_string(dir.join("gateway.yaml")).unwrap(),
        "# hand-written\n"
    );
    let out = certgate(
        dir,
        &[
            "import-nginx",
            "nginx.conf",
            "-o",
            "gateway.yaml",
            "--force",
        ],
    );
    assert!(matches!(out.status.code(), Some(0 | 2)), "{}", text(&out));
    let yaml = fs::read_to_string(dir.join("gateway.yaml")).unwrap();
    assert!(yaml.contains("servers:"), "{yaml}");
    // A new file needs no --force.
    let out = certgate(dir, &["import-nginx", "nginx.conf", "-o", "new.yaml"]);
    assert!(matches!(out.status.code(), Some(0 | 2)), "{}", text(&out));
}
