//! Fuzz target `pki_crl`: the checks are [`certgate_fuzz::pki_crl`] (fuzz/src/lib.rs), shared with
//! the stable `cargo test` that replays fuzz/corpus/pki_crl and fuzz/regressions/pki_crl.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certgate_fuzz::pki_crl(data));
