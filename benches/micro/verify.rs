//! Chain verification, run on every handshake (full or resumed): a client chain of
//! leaf + intermediate against one root, with `verify_depth: 2`, ECDSA P-256 and RSA-2048.
//! `full` is the complete OpenSSL-style verification; `remembered` is a chain the
//! verifier has already accepted (a returning client).

use std::hint::black_box;

use certgate_pki::issue::KeyAlgorithm;
use certgate_pki::ChainVerifier;
use criterion::{criterion_group, criterion_main, Criterion};
use rustls_pki_types::UnixTime;

fn verify(c: &mut Criterion) {
    for (name, algorithm) in [
        ("verify/chain_depth2_ecdsa_p256", KeyAlgorithm::EcdsaP256),
        ("verify/chain_depth2_rsa2048", KeyAlgorithm::Rsa(2048)),
    ] {
        let fixture = certgate_benches::fixture(algorithm);
        let verifier = ChainVerifier::new(vec![fixture.root.clone()], Vec::new(), Vec::new(), 2)
            .expect("verifier");
        let now = UnixTime::now();
        verifier
            .verify(&fixture.client_chain, now)
            .expect("the fixture chain verifies");
        c.bench_function(name, |b| {
            b.iter(|| {
                verifier
                    .verify(black_box(&fixture.client_chain), now)
                    .is_ok()
            })
        });
    }
}

criterion_group!(benches, verify);
criterion_main!(benches);
