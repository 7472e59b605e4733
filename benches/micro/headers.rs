//! Per-request work: turning the client's request into the upstream request (strip
//! spoofable headers, copy the connection's prepared identity headers, forwarding headers).

use std::hint::black_box;
use std::sync::Arc;

use certgate_identity::{ClientCert, Identity, TlsInfo, VerifyResult};
use certgate_pki::issue::KeyAlgorithm;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use pingora::http::RequestHeader;

fn request(spoofed: bool) -> RequestHeader {
    let mut req = RequestHeader::build("GET", b"/api/v1/orders?limit=10", None).expect("request");
    req.insert_header("host", "localhost:8443").expect("header");
    req.insert_header("user-agent", "curl/7.88.1")
        .expect("header");
    req.insert_header("accept", "*/*").expect("header");
    req.insert_header("accept-encoding", "gzip")
        .expect("header");
    if spoofed {
        req.insert_header("x-ssl-client-s-dn", "CN=admin")
            .expect("header");
        req.insert_header("x-forwarded-for", "10.0.0.1")
            .expect("header");
    }
    req
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
    let remote = Some("127.0.0.1:40000".parse().expect("addr"));

    for (name, spoofed) in [
        ("headers/forward_plain_request", false),
        ("headers/forward_spoofed_request", true),
    ] {
        c.bench_function(name, |b| {
            b.iter_batched_ref(
                || request(spoofed),
                |req| {
                    certgate_proxy::forward::apply(
                        req, server, route, &identity, &prepared, remote, now,
                    )
                    .expect("headers apply");
                    black_box(req.headers.len())
                },
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group!(benches, headers);
criterion_main!(benches);
