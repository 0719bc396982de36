//! Cost of one decision: the sample policy pack, and generated sets of 100 and 1,000 policies over
//! a few hundred entities (groups, model groups, models, tools, documents, destinations), each
//! evaluated uncached and served from the decision cache.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use ztai_core::{Action, Principal, PrincipalKind, Resource};
use ztai_policy::{PolicyEngine, PolicySource, RequestContext};

#[path = "../tests/support/generated.rs"]
mod generated;

fn bench(c: &mut Criterion) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let engine = PolicyEngine::load_dir(&dir).unwrap();
    let principal = Principal {
        kind: PrincipalKind::User,
        id: "alice".into(),
        groups: vec!["staff".into()],
        on_behalf_of: vec![],
        credential_id: "k".into(),
        device_posture: Vec::new(),
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

    let mut group = c.benchmark_group("policy/generated");
    for n in [100usize, 1000] {
        let set = generated::policy_set(n);
        let engine = PolicyEngine::from_sources(vec![PolicySource {
            name: "generated.cedar".into(),
            text: set.text.clone(),
        }])
        .unwrap();
        // A mix of questions: models, tools with arguments, documents, egress.
        let questions = set.questions(64);
        let mut i = 0usize;
        group.bench_with_input(BenchmarkId::new("evaluate_uncached", n), &n, |b, _| {
            b.iter(|| {
                let q = &questions[i % questions.len()];
                i += 1;
                engine
                    .evaluate(
                        black_box(&q.principal),
                        q.action,
                        &q.resource,
                        &q.parents,
                        &q.context,
                    )
                    .unwrap()
            })
        });
        group.bench_with_input(BenchmarkId::new("authorize_cached", n), &n, |b, _| {
            b.iter(|| {
                let q = &questions[i % questions.len()];
                i += 1;
                engine
                    .authorize(
                        black_box(&q.principal),
                        q.action,
                        &q.resource,
                        &q.parents,
                        &q.context,
                    )
                    .unwrap()
            })
        });
    }
    group.finish();
    percentiles();
}

/// Criterion reports means; the targets are percentiles. Times each of 20,000 uncached decisions
/// over 4,096 distinct questions (so sub-set memo misses are included) and prints p50 and p99.
fn percentiles() {
    for n in [100usize, 1000] {
        let set = generated::policy_set(n);
        let engine = PolicyEngine::from_sources(vec![PolicySource {
            name: "generated.cedar".into(),
            text: set.text.clone(),
        }])
        .unwrap();
        let questions = set.questions(4096);
        let mut samples = Vec::with_capacity(20_000);
        for i in 0..22_000usize {
            let q = &questions[i % questions.len()];
            let t = std::time::Instant::now();
            let v = engine
                .evaluate(&q.principal, q.action, &q.resource, &q.parents, &q.context)
                .unwrap();
            let elapsed = t.elapsed();
            black_box(v);
            if i >= 2_000 {
                samples.push(elapsed.as_nanos() as f64 / 1000.0);
            }
        }
        samples.sort_by(|a, b| a.total_cmp(b));
        let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
        println!(
            "policy/generated/evaluate_uncached/{n}: p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs ({} decisions)",
            at(0.50),
            at(0.90),
            at(0.99),
            samples.len()
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
