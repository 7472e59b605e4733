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
    wait_for_log(&gw, "certgate started");
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

fn signal(gw: &Gateway, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(gw.child.id() as i32), signal).unwrap();
}

/// Waits (at most 15 s) for the gateway to exit; its exit code.
fn exit_code(gw: &mut Gateway) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "still running:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn reload_exits_1_with_the_gateways_reason_when_it_keeps_the_old_config() {
    let pki = Pki::new();
    let (upstream, _seen) = start_upstream();
    let yaml = format!(
        "pid_file: certgate.pid\n{}",
        verifying_config(&pki, upstream)
    );
    let gw = spawn_gateway(&pki, &yaml, &["run"]);
    let config = pki.path("gateway.yaml");

    // Valid and accepted: exit 0, and says so.
    let out = certgate(&config, &["reload"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("process {} reloaded", gw.child.id())),
        "{stdout}"
    );

    // Valid as a file, refused by the running gateway (a new listen address).
    let moved = yaml.replace("{listen}", &format!("127.0.0.1:{}", free_port()));
    pki.write("gateway.yaml", &moved);
    let out = certgate(&config, &["reload"]);
    let text = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "process {} refused the new configuration",
            gw.child.id()
        )) && text.contains("listen addresses changed")
            && text.contains("restart certgate"),
        "{text}"
    );
}

#[test]
fn gateways_without_a_pid_file_setting_write_none_and_share_none() {
    let shared_default = std::env::temp_dir().join("certgate.pid");
    let before = std::fs::metadata(&shared_default)
        .and_then(|m| m.modified())
        .ok();
    let (upstream, _seen) = start_upstream();
    // Two gateways, each with its own config and `pid_file:` beside it; a third with none.
    let (pki_a, pki_b, pki_c) = (Pki::new(), Pki::new(), Pki::new());
    let with_pid_file = |pki: &Pki| {
        format!(
            "pid_file: certgate.pid\n{}",
            verifying_config(pki, upstream)
        )
    };
    let a = spawn_gateway(&pki_a, &with_pid_file(&pki_a), &["run"]);
    let b = spawn_gateway(&pki_b, &with_pid_file(&pki_b), &["run"]);
    let c = spawn_gateway(&pki_c, &verifying_config(&pki_c, upstream), &["run"]);
    let pid_in = |pki: &Pki| {
        std::fs::read_to_string(pki.path("certgate.pid"))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(pid_in(&pki_a), a.child.id().to_string());
    assert_eq!(pid_in(&pki_b), b.child.id().to_string());
    let after = std::fs::metadata(&shared_default)
        .and_then(|m| m.modified())
        .ok();
    assert_eq!(before, after, "{} was written", shared_default.display());

    // `reload -c` finds its own gateway from the same setting.
    let out = certgate(&pki_b.path("gateway.yaml"), &["reload"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    wait_for_log(&b, "configuration reloaded");
    assert!(!a.log().contains("configuration reloaded"), "{}", a.log());

    // Without a setting there is nothing to find the process by, and it says so.
    let out = certgate(&pki_c.path("gateway.yaml"), &["reload"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no pid file to find the running gateway by"),
        "{}",
        stderr(&out)
    );
    assert!(!c.log().contains("configuration reloaded"), "{}", c.log());
}

#[test]
fn the_pid_file_is_removed_on_sigterm_and_sigint_and_a_stale_one_is_named() {
    let pki = Pki::new();
    let (upstream, _seen) = start_upstream();
    let yaml = verifying_config(&pki, upstream);
    let pid_file = pki.path("run.pid");
    let pid_arg = pid_file.display().to_string();
    for stop in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
    ] {
        let mut gw = spawn_gateway(&pki, &yaml, &["run", "--pid-file", &pid_arg]);
        assert_eq!(
            std::fs::read_to_string(&pid_file).unwrap().trim(),
            gw.child.id().to_string()
        );
        signal(&gw, stop);
        assert_eq!(exit_code(&mut gw), Some(0), "{stop}:\n{}", gw.log());
        assert!(!pid_file.exists(), "{stop} left the pid file");
        assert!(
            !pki.path("run.pid.reload").exists(),
            "{stop} left the status file"
        );
    }

    // A pid file left by a process that is gone (killed, crashed).
    let mut gw = spawn_gateway(&pki, &yaml, &["run", "--pid-file", &pid_arg]);
    let pid = gw.child.id();
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
    let out = certgate(
        &pki.path("gateway.yaml"),
        &["reload", "--pid-file", &pid_arg],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("stale pid file {pid_arg}: no process {pid}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn start_up_is_one_line_of_certgates_own_and_shutdown_one_with_the_real_grace() {
    let pki = Pki::new();
    let (upstream, _seen) = start_upstream();
    let admin = free_port();
    let yaml = format!(
        "shutdown_grace: 3s\nadmin: {{ listen: 127.0.0.1:{admin} }}\n{}",
        verifying_config(&pki, upstream)
    );
    let mut gw = spawn_gateway(&pki, &yaml, &["run"]);
    wait_for_log(&gw, "certgate started");
    signal(&gw, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(exit_code(&mut gw), Some(0));
    let log = gw.log();
    let started: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("certgate started"))
        .collect();
    assert_eq!(started.len(), 1, "{log}");
    let line = started[0];
    let config = std::fs::canonicalize(pki.path("gateway.yaml")).unwrap();
    for part in [
        " INFO ".to_string(),
        format!("version {}", env!("CARGO_PKG_VERSION")),
        format!("config {}", config.display()),
        format!("listening on {} (api)", gw.addr),
        format!("upstreams app ({upstream})"),
        format!("admin on 127.0.0.1:{admin}"),
    ] {
        assert!(line.contains(&part), "no {part:?} in {line}");
    }
    // pingora's narration of its own start and stop is debug.
    assert!(!log.contains("pingora_core"), "{log}");
    let grace: Vec<&str> = log.lines().filter(|l| l.contains("up to")).collect();
    assert_eq!(grace.len(), 1, "{log}");
    assert!(grace[0].contains("3s"), "{log}");
}
