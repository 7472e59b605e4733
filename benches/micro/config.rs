//! Configuration load: parse and validate `gateway.yaml` (pure), and compile it (read
//! and check every certificate, key and CA file) as startup and every reload do.

use std::hint::black_box;

use certgate_config::Config;
use certgate_pki::issue::KeyAlgorithm;
use criterion::{criterion_group, criterion_main, Criterion};

fn config(c: &mut Criterion) {
    let fixture = certgate_benches::fixture(KeyAlgorithm::EcdsaP256);
    c.bench_function("config/parse_and_validate", |b| {
        b.iter(|| {
            Config::parse(black_box(&fixture.config_text), &fixture.config_path).expect("parses")
        })
    });
    let config = fixture.config();
    c.bench_function("config/compile_with_files", |b| {
        b.iter(|| certgate_proxy::compile::compile(black_box(&config)).is_ok())
    });
}

criterion_group!(benches, config);
criterion_main!(benches);
