//! Fuzz target `path_normalize`: the checks are [`certgate_fuzz::path_normalize`] (fuzz/src/lib.rs), shared with
//! the stable `cargo test` that replays fuzz/corpus/path_normalize and fuzz/regressions/path_normalize.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certgate_fuzz::path_normalize(data));
