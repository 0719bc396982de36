//! Cost of authorising one retrieval batch: 1,000 candidate documents drawn from a catalogue of
//! 10,000, decided by the sample policy pack (with `documents.cedar`) plus 100 generated policies,
//! through `BatchDecider` exactly as `POST /v1/retrieval/authorize` does (chunk inspection and
//! HTTP excluded).
//!
//! The catalogue's shape sets how many distinct classes a batch holds, and so the cost: about
//! one policy evaluation per class plus a hash per candidate. Here: 40 collections, each with
//! one classification and one reader group, and one document in 20 owned by one of 50 owners,
//! which gives a 1,000-candidate batch about 90 classes. `evaluate` is the worst case (every class
//! is a first sight); `authorize` is a caller asking again with the decision cache warm.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout
)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::collections::BTreeSet;
use std::hint::black_box;
use ztai_core::{Action, Principal, PrincipalKind, Resource};
use ztai_policy::{BatchDecider, PolicyEngine, PolicySource, RequestContext, ResourceFacts};

#[path = "../tests/support/generated.rs"]
mod generated;

struct Doc {
    id: Resource,
    parents: Vec<String>,
    classification: String,
    owner: String,
    readers: BTreeSet<String>,
    labels: BTreeSet<String>,
}

impl Doc {
    fn facts(&self) -> ResourceFacts<'_> {
        ResourceFacts {
            parents: &self.parents,
            classification: &self.classification,
            owner: &self.owner,
            readers: &self.readers,
            labels: &self.labels,
        }
    }
}

fn catalogue() -> Vec<Doc> {
    const LEVELS: [&str; 4] = ["public", "internal", "confidential", "restricted"];
    (0..10_000usize)
        .map(|i| {
            let c = i % 40;
            Doc {
                id: Resource::Document(format!("doc-{i}")),
                parents: vec![format!("collection-{c}")],
                classification: LEVELS[c % 4].to_string(),
                owner: if i % 20 == 0 {
                    format!("user:owner-{}", (i / 20) % 50)
                } else {
                    String::new()
                },
                readers: [format!("group-{}", c % 8)].into_iter().collect(),
                labels: [format!("label-{}", c % 5)].into_iter().collect(),
            }
        })
        .collect()
}

fn engine() -> PolicyEngine {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies");
    let mut sources: Vec<PolicySource> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
        .map(|p| PolicySource {
            name: p.file_name().unwrap().to_string_lossy().into_owned(),
            text: std::fs::read_to_string(&p).unwrap(),
        })
        .collect();
    sources.push(PolicySource {
        name: "generated.cedar".into(),
        text: generated::policy_set(100).text,
    });
    PolicyEngine::from_sources(sources).unwrap()
}

/// One batch: `picks` index the catalogue. Returns how many were permitted and evaluated.
fn batch(
    engine: &PolicyEngine,
    who: &Principal,
    base: &RequestContext,
    docs: &[Doc],
    picks: &[usize],
    cached: bool,
) -> (usize, usize) {
    let mut decider = BatchDecider::new(engine);
    let mut permitted = 0;
    for &i in picks {
        let d = &docs[i];
        let facts = d.facts();
        let v = decider
            .decide(&d.id, &facts, &[], || {
                let mut ctx = base.clone();
                facts.apply(&mut ctx);
                if cached {
                    engine.authorize(who, Action::ReadDocument, &d.id, &d.parents, &ctx)
                } else {
                    engine.evaluate(who, Action::ReadDocument, &d.id, &d.parents, &ctx)
                }
            })
            .unwrap();
        permitted += usize::from(v.decision().is_allow());
    }
    (permitted, decider.evaluated())
}

fn bench(c: &mut Criterion) {
    let engine = engine();
    let docs = catalogue();
    let who = Principal {
        kind: PrincipalKind::User,
        id: "owner-3".into(),
        groups: vec!["staff".into(), "group-2".into(), "group-5".into()],
        on_behalf_of: vec![],
        credential_id: "k".into(),
        device_posture: Vec::new(),
    };
    let base = RequestContext::new("retrieval")
        .with_principal(&who)
        .at_unix_time(1_790_000_000);
    // Eight different batches of 1,000 (a search returns candidates from anywhere).
    let mut rng = generated::Rng::new(7);
    let batches: Vec<Vec<usize>> = (0..8)
        .map(|_| (0..1000).map(|_| rng.below(docs.len())).collect())
        .collect();
    let (permitted, evaluated) = batch(&engine, &who, &base, &docs, &batches[0], false);
    println!(
        "retrieval batch: 1000 candidates, {evaluated} classes evaluated, {permitted} permitted ({} policies)",
        engine.policy_count()
    );
    let mut i = 0usize;
    c.bench_function("retrieval/1000_candidates_evaluate", |b| {
        b.iter(|| {
            i += 1;
            black_box(batch(
                &engine,
                black_box(&who),
                &base,
                &docs,
                &batches[i % batches.len()],
                false,
            ))
        })
    });
    c.bench_function("retrieval/1000_candidates_cached", |b| {
        b.iter(|| {
            i += 1;
            black_box(batch(
                &engine,
                black_box(&who),
                &base,
                &docs,
                &batches[i % batches.len()],
                true,
            ))
        })
    });
    // Percentiles over 200 uncached batches.
    let mut samples: Vec<f64> = (0..220)
        .map(|k| {
            let t = std::time::Instant::now();
            black_box(batch(
                &engine,
                &who,
                &base,
                &docs,
                &batches[k % batches.len()],
                false,
            ));
            t.elapsed().as_secs_f64() * 1000.0
        })
        .skip(20)
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    println!(
        "retrieval/1000_candidates_evaluate: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms ({} batches)",
        at(0.5),
        at(0.9),
        at(0.99),
        samples.len()
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
