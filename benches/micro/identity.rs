//! Per-connection identity work: parse the client's chain, compute every variable, and
//! prepare the header values copied into each request (done once per TLS connection).

use std::hint::black_box;
use std::sync::Arc;

use certgate_identity::{
    ClientCert, HeaderPlan, Identity, Preset, TlsInfo, Variable, VerifyResult,
};
use certgate_pki::issue::KeyAlgorithm;
use criterion::{criterion_group, criterion_main, Criterion};

fn identity(c: &mut Criterion) {
    let fixture = certgate_benches::fixture(KeyAlgorithm::EcdsaP256);
    let chain = &fixture.client_chain;
    let tls = TlsInfo {
        protocol: "TLSv1.3".into(),
        cipher: "TLS_AES_128_GCM_SHA256".into(),
        server_name: Some("localhost".into()),
        remote_addr: [127, 0, 0, 1].into(),
        remote_port: 40000,
    };
    let plan = HeaderPlan::new(
        &[Preset::Nginx],
        &[("X-Client-CN".into(), "$ssl_client_s_dn_cn".into())],
    )
    .expect("plan");
    let now = 1_800_000_000;

    c.bench_function("identity/parse_chain", |b| {
        b.iter(|| ClientCert::from_chain(black_box(chain)).expect("chain parses"))
    });
    let cert = Arc::new(ClientCert::from_chain(chain).expect("chain parses"));
    let id = Identity {
        verify: VerifyResult::Success,
        cert: Some(cert),
        tls: tls.clone(),
    };
    c.bench_function("identity/render_every_variable", |b| {
        b.iter(|| {
            let mut total = 0;
            for v in Variable::ALL {
                total += id.var(*v, now).len();
            }
            black_box(total)
        })
    });
    c.bench_function("identity/prepare_nginx_headers", |b| {
        b.iter(|| plan.prepare(black_box(&id), now))
    });
    c.bench_function("identity/per_connection_total", |b| {
        b.iter(|| {
            let cert = Arc::new(ClientCert::from_chain(black_box(chain)).expect("chain parses"));
            let id = Identity {
                verify: VerifyResult::Success,
                cert: Some(cert),
                tls: tls.clone(),
            };
            plan.prepare(&id, now)
        })
    });
    // A signed URL's request: the HMAC over the token message (its size is dominated by
    // the certificate it carries), then, when the connection has not seen this URL's
    // certificate yet, `identity/per_connection_total` again.
    let keys = certgate_pki::UrlKeys::new(vec![vec![7u8; 32]]).expect("key");
    let mut message = b"certgate signed url v1 media path /videos/a.mp4 1800000000".to_vec();
    message.extend_from_slice(&chain[0]);
    let (kid, tag) = keys.sign(&message);
    let (kid, tag) = (kid.to_string(), tag.as_ref().to_vec());
    c.bench_function("identity/signed_url_hmac_verify", |b| {
        b.iter(|| keys.verify(black_box(&kid), black_box(&message), black_box(&tag)))
    });
}

criterion_group!(benches, identity);
criterion_main!(benches);
