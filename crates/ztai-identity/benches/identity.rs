//! Cost of authenticating an API key (the hot path's first stage).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use ztai_core::PrincipalKind;
use ztai_identity::{ApiKeyRegistry, KeyEntry, generate_key};

fn bench(c: &mut Criterion) {
    let mut registry = ApiKeyRegistry::new();
    let mut keys = Vec::new();
    for i in 0..10_000 {
        let k = generate_key();
        registry.insert(
            k.key_id.clone(),
            KeyEntry {
                secret_hash: k.secret_hash,
                principal_kind: PrincipalKind::User,
                principal_id: format!("user{i}"),
                groups: vec!["staff".into()],
                revoked: false,
            },
        );
        keys.push(k.full_key);
    }
    let key = keys[5_000].clone();
    c.bench_function("identity/api_key_authenticate_10k_keys", |b| {
        b.iter(|| registry.authenticate(black_box(&key)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
