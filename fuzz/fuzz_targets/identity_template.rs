//! Fuzz target `identity_template`: the checks are [`certgate_fuzz::identity_template`] (fuzz/src/lib.rs), shared with
//! the stable `cargo test` that replays fuzz/corpus/identity_template and fuzz/regressions/identity_template.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certgate_fuzz::identity_template(data));
