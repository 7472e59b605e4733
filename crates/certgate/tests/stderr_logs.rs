//! The gateway's own log on stderr, as a log collector reads it from a file: plain text
//! without terminal colour codes (stderr is not a terminal here), or with
//! `log.stderr_format: json` one JSON object per line, reloads and their failures included.

mod common;

use std::process::Command;

use common::*;

const VERIFY_ON: &str = "      verify: on\n      ca: {dir}/ca.crt\n";

fn config(pki: &Pki, upstream: std::net::SocketAddr, log: &str) -> String {
    let dir = pki.dir.path().display().to_string();
    format!(
        "{log}{}",
        base_config(pki, upstream, &VERIFY_ON.replace("{dir}", &dir), "")
    )
}

/// Rewrites the config file in place and signals the gateway (SIGHUP), without the
/// `certgate reload` pre-check, so a broken file reaches the running gateway.
fn rewrite_and_hangup(pki: &Pki, gw: &Gateway, yaml: &str) {
    pki.write(
        "gateway.yaml",
        &yaml.replace("{listen}", &gw.addr.to_string()),
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gw.child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
}

async fn one_request(pki: &Pki, gw: &Gateway, alice: &Issued) {
    let client = client(pki, gw, Some((&[alice], alice)), false);
    let response = client.get(gw.url("/")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn text_logs_to_a_file_have_no_colour_codes() {
    let pki = Pki::new();
    let alice = client_cert("alice", &pki.ca);
    let (upstream, _seen) = start_upstream();
    let yaml = config(&pki, upstream, "");
    let gw = start_gateway(&pki, &yaml);
    wait_for_log(&gw, "certgate started");
    one_request(&pki, &gw, &alice).await;
    rewrite_and_hangup(&pki, &gw, &yaml);
    wait_for_log(&gw, "configuration reloaded");

    let log = gw.log();
    assert!(
        !log.contains("\x1b["),
        "colour codes in a redirected stderr:\n{log}"
    );
    let started = log
        .lines()
        .find(|l| l.contains("certgate started"))
        .unwrap();
    assert!(started.contains(" INFO "), "{started}");
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let pki = Pki::new();
    let alice = client_cert("alice", &pki.ca);
    let (upstream, _seen) = start_upstream();
    let yaml = config(&pki, upstream, "log:\n  stderr_format: json\n");
    let gw = start_gateway(&pki, &yaml);
    wait_for_log(&gw, "certgate started");
    one_request(&pki, &gw, &alice).await;

    // A reload cannot switch the format: it says so, and the log stays JSON.
    rewrite_and_hangup(&pki, &gw, &config(&pki, upstream, ""));
    wait_for_log(&gw, "configuration reloaded");
    // A multi-line error (the located config errors) is still one line of JSON.
    rewrite_and_hangup(
        &pki,
        &gw,
        &config(
            &pki,
            upstream,
            "log:\n  stderr_format: xml\n  level: loud\n",
        ),
    );
    wait_for_log(&gw, "reload failed");
    one_request(&pki, &gw, &alice).await;

    let log = gw.log();
    assert!(!log.contains("\x1b["), "{log}");
    let mut messages = Vec::new();
    for line in log.lines() {
        let event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON object ({e}): {line:?}\n{log}"));
        let level = event["level"].as_str().unwrap_or_default();
        assert!(
            ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"].contains(&level),
            "{line}"
        );
        assert!(event["timestamp"].is_string(), "{line}");
        let message = event["fields"]["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no fields.message: {line}"));
        messages.push((level.to_string(), message.to_string()));
    }
    let find =
        |level: &str, text: &str| messages.iter().any(|(l, m)| l == level && m.contains(text));
    assert!(find("INFO", "certgate started"), "{log}");
    assert!(
        find(
            "WARN",
            "log.stderr_format changed; the new value applies when certgate is restarted"
        ),
        "{log}"
    );
    assert!(
        find(
            "ERROR",
            "log.stderr_format: expected one of text, json; found \"xml\""
        ),
        "{log}"
    );
}

#[test]
fn check_reports_a_bad_stderr_format_with_its_location() {
    let pki = Pki::new();
    let yaml = config(
        &pki,
        "127.0.0.1:1".parse().unwrap(),
        "log:\n  stderr_format: xml\n",
    )
    .replace("{listen}", "127.0.0.1:18998");
    let path = pki.write("gateway.yaml", &yaml);
    let out = Command::new(bin())
        .args(["-c", path.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "gateway.yaml:2:3: log.stderr_format: expected one of text, json; found \"xml\""
        ),
        "{stderr}"
    );
}
