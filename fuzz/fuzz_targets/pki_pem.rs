//! Fuzz target `pki_pem`: the checks are [`certgate_fuzz::pki_pem`] (fuzz/src/lib.rs), shared with
//! the stable `cargo test` that replays fuzz/corpus/pki_pem and fuzz/regressions/pki_pem.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certgate_fuzz::pki_pem(data));
