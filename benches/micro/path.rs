//! Per-request work: the path normalization every request goes through before routing
//! (certgate-path). An already-normal path, the case of nearly every request, must cost a
//! scan and no allocation; the rewriting cases are here for scale.

use std::hint::black_box;

use certgate_path::{normalize, Options};
use criterion::{criterion_group, criterion_main, Criterion};

fn path(c: &mut Criterion) {
    let options = Options::default();
    for (name, path) in [
        ("path/normal_root", "/"),
        ("path/normal_api", "/api/v1/orders/12345/items"),
        ("path/normal_grpc", "/helloworld.Greeter/SayHello"),
        ("path/normal_escaped", "/videos/caf%C3%A9%20au%20lait.mp4"),
        ("path/rewrite_dots", "/public/../api/v1/./orders//12345"),
        ("path/rewrite_escapes", "/%61pi/v1/%7euser/%c3%a4"),
    ] {
        c.bench_function(name, |b| b.iter(|| normalize(black_box(path), options)));
    }
}

criterion_group!(benches, path);
criterion_main!(benches);
