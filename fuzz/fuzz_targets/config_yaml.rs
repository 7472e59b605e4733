//! Fuzz target `config_yaml`: the checks are [`certgate_fuzz::config_yaml`] (fuzz/src/lib.rs), shared with
//! the stable `cargo test` that replays fuzz/corpus/config_yaml and fuzz/regressions/config_yaml.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certgate_fuzz::config_yaml(data));
