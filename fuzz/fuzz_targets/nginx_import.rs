//! Fuzz target `nginx_import`: the checks are [`certgate_fuzz::nginx_import`] (fuzz/src/lib.rs), shared with
//! the stable `cargo test` that replays fuzz/corpus/nginx_import and fuzz/regressions/nginx_import.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certgate_fuzz::nginx_import(data));
