//! Fuzz target `identity_cert`: the checks are [`certgate_fuzz::identity_cert`] (fuzz/src/lib.rs), shared with
//! the stable `cargo test` that replays fuzz/corpus/identity_cert and fuzz/regressions/identity_cert.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certgate_fuzz::identity_cert(data));
