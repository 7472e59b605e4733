//! Per-request work: turning the client's request into the upstream request (strip
//! spoofable headers, copy the connection's prepared identity headers, forwarding headers).

use std::hint::black_box;
use std::sync::Arc;

use certgate_identity::{ClientCert, Identity, TlsInfo, VerifyResult};
use certgate_pki::issue::KeyAlgorithm;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderValue};

fn request(spoofed: bool) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("localhost:8443"));
    headers.insert("user-agent", HeaderValue::from_static("curl/7.88.1"));
    headers.insert("accept", HeaderValue::from_static("*/*"));
    headers.insert("accept-encoding", HeaderValue::from_static("gzip"));
    if spoofed {
        headers.insert("x-ssl-client-s-dn", HeaderValue::from_static("CN=admin"));
        headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
    }
    headers
}

fn headers(c: &mut Criterion) {
    let fixture = certgate_benches::fixture(KeyAlgorithm::EcdsaP256);
    let compiled = fixture.compiled();
    let server = &compiled.servers[0];
    let route = &server.routes[0];
    let cert = Arc::new(ClientCert::from_chain(&fixture.client_chain).expect("chain parses"));
    let identity = Identity {
        verify: VerifyResult::Success,
        cert: Some(cert),
        tls: TlsInfo {
            protocol: "TLSv1.3".into(),
            cipher: "TLS_AES_128_GCM_SHA256".into(),
            server_name: Some("localhost".into()),
            remote_addr: [127, 0, 0, 1].into(),
            remote_port: 40000,
        },
    };
    let now = 1_800_000_000;
    let prepared = server.header_plan.prepare(&identity, now);
    let remote = http::HeaderValue::from_static("127.0.0.1");

    for (name, spoofed) in [
        ("headers/forward_plain_request", false),
        ("headers/forward_spoofed_request", true),
    ] {
        c.bench_function(name, |b| {
            b.iter_batched_ref(
                || request(spoofed),
                |headers| {
                    certgate_proxy::forward::strip_hop_by_hop(headers, false, false);
                    certgate_proxy::forward::apply(
                        headers,
                        server,
                        route,
                        &identity,
                        &prepared,
                        Some(&remote),
                        now,
                    );
                    black_box(headers.len())
                },
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(benches, headers);
criterion_main!(benches);
