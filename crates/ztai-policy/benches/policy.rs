//! Cost of one decision with the sample policy pack, evaluated and served from the cache.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use ztai_core::{Action, Principal, PrincipalKind, Resource};
use ztai_policy::{PolicyEngine, RequestContext};

fn bench(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let engine = PolicyEngine::load_dir(&dir).unwrap();
    let principal = Principal {
        kind: PrincipalKind::User,
        id: "alice".into(),
        groups: vec!["staff".into()],
        on_behalf_of: vec![],
        credential_id: "k".into(),
    };
    let model = Resource::Model("echo-small".into());
    let groups = vec!["standard".to_string()];
    let ctx = RequestContext::new("chat");
    c.bench_function("policy/evaluate_sample_pack_uncached", |b| {
        b.iter(|| {
            engine
                .evaluate(black_box(&principal), Action::Invoke, &model, &groups, &ctx)
                .unwrap()
        })
    });
    c.bench_function("policy/authorize_sample_pack_cached", |b| {
        b.iter(|| {
            engine
                .authorize(black_box(&principal), Action::Invoke, &model, &groups, &ctx)
                .unwrap()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
