//! What a newcomer trips over (issue 23), with the real binary: config errors that name the
//! cause first, `certgate reload` that reports what the running gateway did with the new
//! configuration, pid files that are not shared between instances and go away on a clean
//! exit, one start line that says what runs, and reload/watch log events on one line.

mod common;

use std::process::Command;

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
