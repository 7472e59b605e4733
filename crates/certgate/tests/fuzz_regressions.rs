//! Replays the fuzz targets' inputs on the stable toolchain, without the fuzzer: every
//! committed seed (`fuzz/corpus/<target>/`) and every input a fuzzer once crashed on
//! (`fuzz/regressions/<target>/`) through the same checks the targets run
//! (`certgate_fuzz::<target>`, fuzz/src/lib.rs). A fixed finding that comes back fails here
//! in a plain `cargo test`. See docs/fuzzing.md.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted; none when the directory does not exist.
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.expect("read_dir entry").path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

/// Runs `check` on every seed and regression input of `target`; returns how many ran.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let seeds = inputs("corpus", target);
    assert!(!seeds.is_empty(), "no seed corpus for {target}");
    let regressions = inputs("regressions", target);
    for path in seeds.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("read fuzz input");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target} fails on {} (reproduce: cd fuzz && cargo fuzz run {target} {})",
            path.display(),
            path.display()
        );
    }
    seeds.len() + regressions.len()
}

#[test]
fn config_yaml_inputs() {
    replay("config_yaml", certgate_fuzz::config_yaml);
}

#[test]
fn identity_cert_inputs() {
    replay("identity_cert", certgate_fuzz::identity_cert);
}

#[test]
fn identity_template_inputs() {
    replay("identity_template", certgate_fuzz::identity_template);
}

#[test]
fn pki_pem_inputs() {
    replay("pki_pem", certgate_fuzz::pki_pem);
}

#[test]
fn pki_crl_inputs() {
    replay("pki_crl", certgate_fuzz::pki_crl);
}

#[test]
fn nginx_import_inputs() {
    replay("nginx_import", certgate_fuzz::nginx_import);
}

/// The seeds reach the code behind the parsers, not only their error paths: the checks
/// that run on accepted input (DN round trips, header rendering, verification) run on
/// them. `crl_only.pem` is the one seed of `pki_pem` meant to be refused; `fragment_*`
/// seeds of `config_yaml` are snippets from the docs, not whole files.
#[test]
fn seeds_are_accepted_by_the_code_under_test() {
    let file = Path::new("seed");
    for path in inputs("corpus", "config_yaml") {
        let fragment = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("fragment_"));
        if fragment {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("seed");
        if let Err(e) = certgate_config::Config::parse(&text, file) {
            panic!("{}: {e}", path.display());
        }
    }
    for path in inputs("corpus", "identity_cert") {
        let der = std::fs::read(&path).expect("seed");
        if let Err(e) = certgate_identity::ClientCert::from_chain(&[der]) {
            panic!("{}: {e}", path.display());
        }
    }
    for path in inputs("corpus", "pki_pem") {
        let bytes = std::fs::read(&path).expect("seed");
        let loaded = certgate_pki::parse_certs(file, &bytes);
        let refused = path.ends_with("crl_only.pem");
        assert_eq!(loaded.is_err(), refused, "{}: {loaded:?}", path.display());
    }
    for path in inputs("corpus", "pki_crl") {
        let bytes = std::fs::read(&path).expect("seed");
        if let Err(e) = certgate_pki::parse_crls(file, &bytes) {
            panic!("{}: {e}", path.display());
        }
    }
}

#[test]
fn path_normalize_inputs() {
    replay("path_normalize", certgate_fuzz::path_normalize);
}
