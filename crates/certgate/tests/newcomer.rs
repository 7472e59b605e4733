//! What a newcomer trips over (issue 23), with the real binary: config errors that name the
//! cause first, `certgate reload` that reports what the running gateway did with the new
//! configuration, pid files that are not shared between instances and go away on a clean
//! exit, one start line that says what runs, and reload/watch log events on one line.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// `certgate -c {config} {args…}`.
fn certgate(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_misspelt_key_is_the_first_error_not_its_consequence() {
    let pki = Pki::new();
    let dir = pki.dir.path().display().to_string();
    let yaml = base_config(
        &pki,
        "127.0.0.1:1".parse().unwrap(),
        &format!("      verify: on\n      ca: {dir}/ca.crt\n"),
        "",
    )
    .replace("{listen}", "127.0.0.1:18999")
    .replace("    client_auth:\n", "    client_auht:\n");
    let config = pki.write("gateway.yaml", &yaml);
    let out = certgate(&config, &["check"]);
    assert_eq!(out.status.code(), Some(1));
    let text = stderr(&out);
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.contains("servers[0].client_auht: unknown key")
            && first.contains("(did you mean client_auth?)"),
        "{text}"
    );
    assert!(!text.contains("needs ca"), "{text}");
}

fn wait_for_log(gw: &Gateway, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !gw.log().contains(what) {
        assert!(
            Instant::now() < deadline,
            "no {what:?} in the log:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A gateway config with client certificates verified against the test CA.
fn verifying_config(pki: &Pki, upstream: std::net::SocketAddr) -> String {
    let dir = pki.dir.path().display().to_string();
    base_config(
        pki,
        upstream,
        &format!("      verify: on\n      ca: {dir}/ca.crt\n"),
        "",
    )
}

/// `YYYY-MM-DDTHH:MM:SS…Z LEVEL …`: tracing's text format, one event per line.
fn is_event_line(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let timestamp = words.next().unwrap_or_default();
    let level = words.next().unwrap_or_default();
    timestamp.len() > 20
        && timestamp.as_bytes()[4] == b'-'
        && timestamp.contains('T')
        && timestamp.ends_with('Z')
        && ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&level)
}

#[test]
fn a_refused_reload_is_logged_as_one_line_with_its_locations() {
    let pki = Pki::new();
    let (upstream, _seen) = start_upstream();
    let yaml = verifying_config(&pki, upstream);
    let gw = start_gateway(&pki, &yaml);
    // Two errors: the event still is one line, both locations in it.
    let broken = yaml
        .replace("{listen}", &gw.addr.to_string())
        .replace("upstream: app\n", "upstream: app\n        bogus: 1\n")
        .replace("verify: on", "verify: sometimes");
    pki.write("gateway.yaml", &broken);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gw.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_for_log(&gw, "reload failed");
    let log = gw.log();
    for line in log.lines() {
        assert!(
            is_event_line(line),
            "not a log event of its own: {line:?}\n{log}"
        );
    }
    let failed = log
        .lines()
        .find(|l| l.contains("reload failed"))
        .unwrap_or_default();
    assert!(failed.contains(" ERROR "), "{failed}");
    assert!(
        failed.contains("gateway.yaml:")
            && failed.contains("bogus")
            && failed.contains("sometimes"),
        "{failed}"
    );
}

#[test]
fn watch_names_only_the_files_whose_contents_changed() {
    let pki = Pki::new();
    let (upstream, _seen) = start_upstream();
    let yaml = verifying_config(&pki, upstream);
    let gw = start_gateway_with_args(&pki, &yaml, &["--watch"]);
    wait_for_log(&gw, "watching");
    // gateway.yaml now names one more file, which itself did not change.
    let extra = ca("Extra CA");
    let extra_file = pki.write("extra-ca.crt", &extra.cert_pem());
    let dir = pki.dir.path().display().to_string();
    let edited = yaml.replace("{listen}", &gw.addr.to_string()).replace(
        &format!("      ca: {dir}/ca.crt\n"),
        &format!(
            "      ca: {dir}/ca.crt\n      trusted_ca: [{}]\n",
            extra_file.display()
        ),
    );
    let tmp = pki.write("gateway.yaml.tmp", &edited);
    std::fs::rename(tmp, pki.path("gateway.yaml")).unwrap();
    wait_for_log(&gw, "configuration reloaded");
    let log = gw.log();
    let changed = log
        .lines()
        .find(|l| l.contains("configuration changed on disk ("))
        .unwrap_or_default();
    assert!(
        changed.contains(&format!("({dir}/gateway.yaml)")),
        "{changed}\n{log}"
    );
}
