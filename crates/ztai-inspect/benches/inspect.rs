//! Inspection cost on 4 KiB of text: the whole pipeline, each tier alone, each detector, and
//! streamed redaction.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use ztai_core::{Channel, FindingCategory};
use ztai_inspect::{Detector, Inspector, StreamRedactor};

fn text_4k() -> String {
    let para = "Our quarterly review covers the migration of the billing service, the new on-call rota \
and open questions about data retention. Contact the team lead at jane.doe@example.com or the \
service desk for access. The staging key AKIAIOSFODNN7EXAMPLF must be rotated before launch. ";
    let mut s = String::new();
    while s.len() < 4096 {
        s.push_str(para);
    }
    s.truncate(4096);
    s
}

/// Ordinary prose with nothing to find: most traffic looks like this.
fn clean_4k() -> String {
    let para = "Summarise the attached meeting notes for the team, keeping the decisions, the owners \
and the dates, and leave out the small talk. The budget discussion moved to next week. ";
    let mut s = String::new();
    while s.len() < 4096 {
        s.push_str(para);
    }
    s.truncate(4096);
    s
}

/// A retrieved report with nothing to find on the untrusted channel either: no instructions to
/// anyone, no personal data (`clean_4k` opens every paragraph with "Summarise …", which the
/// task-instruction rule rightly flags in a retrieved document).
fn report_4k() -> String {
    let para = "The quarterly review covered the migration of the billing service, the new on-call \
rota and open questions about data retention. Latency stayed within the agreed budget for most of \
the period, and both incidents in March were traced to a misconfigured cache. ";
    let mut s = String::new();
    while s.len() < 4096 {
        s.push_str(para);
    }
    s.truncate(4096);
    s
}

fn bench(c: &mut Criterion) {
    let inspector = Inspector::with_default_rules().unwrap();
    let text = text_4k();
    let mut g = c.benchmark_group("inspect");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("rules_tier_4k_all_categories", |b| {
        b.iter(|| inspector.inspect(black_box(&text), Channel::Input).unwrap())
    });
    let clean = clean_4k();
    g.bench_function("rules_tier_4k_clean_prose", |b| {
        b.iter(|| {
            inspector
                .inspect(black_box(&clean), Channel::Input)
                .unwrap()
        })
    });
    for (name, d) in [
        (
            "secrets",
            Box::new(ztai_inspect::SecretDetector::new().unwrap()) as Box<dyn Detector>,
        ),
        ("pii", Box::new(ztai_inspect::PiiDetector::new().unwrap())),
        (
            "injection_rules",
            Box::new(ztai_inspect::InjectionRules::new().unwrap()),
        ),
    ] {
        g.bench_function(format!("detector_{name}_4k_clean_prose"), |b| {
            b.iter(|| {
                let mut out = Vec::new();
                d.detect(black_box(&clean), Channel::Input, &mut out);
                out
            })
        });
        g.bench_function(format!("detector_{name}_4k_with_findings"), |b| {
            b.iter(|| {
                let mut out = Vec::new();
                d.detect(black_box(&text), Channel::Input, &mut out);
                out
            })
        });
    }
    // The classifier tier alone, and the rules tier alone (the two budgets).
    let model = ztai_inspect::InjectionModel::builtin().unwrap();
    g.bench_function("classifier_tier_4k", |b| {
        b.iter(|| model.score(black_box(&clean)))
    });
    let rules_only = Inspector::new(
        vec![
            Box::new(ztai_inspect::SecretDetector::new().unwrap()),
            Box::new(ztai_inspect::PiiDetector::new().unwrap()),
            Box::new(ztai_inspect::InjectionRules::new().unwrap()),
            Box::new(ztai_inspect::TaskInstructionRule::new().unwrap()),
        ],
        ztai_inspect::DEFAULT_MAX_BYTES,
    )
    .with_decoders(ztai_inspect::Decoders::new().unwrap());
    g.bench_function("rules_tier_only_4k_all_categories", |b| {
        b.iter(|| {
            rules_only
                .inspect(black_box(&text), Channel::Untrusted)
                .unwrap()
        })
    });
    g.bench_function("rules_tier_only_4k_clean_prose", |b| {
        b.iter(|| {
            rules_only
                .inspect(black_box(&clean), Channel::Untrusted)
                .unwrap()
        })
    });
    let report = report_4k();
    g.bench_function("rules_tier_only_4k_untrusted_report", |b| {
        b.iter(|| {
            rules_only
                .inspect(black_box(&report), Channel::Untrusted)
                .unwrap()
        })
    });
    let mixed = format!("Ｈｅｌｌｏ — résumé naïve café. {}", &clean[..3000]);
    g.bench_function("whole_pipeline_4k_non_ascii", |b| {
        b.iter(|| {
            inspector
                .inspect(black_box(&mixed), Channel::Input)
                .unwrap()
        })
    });
    g.bench_function("stream_redact_4k_in_16_byte_chunks", |b| {
        b.iter(|| {
            let mut r = StreamRedactor::new(
                vec![FindingCategory::Secret, FindingCategory::Pii],
                Channel::Output,
            );
            let mut out = 0;
            for chunk in text.as_bytes().chunks(16) {
                out += r
                    .push(&inspector, std::str::from_utf8(chunk).unwrap())
                    .unwrap()
                    .len();
            }
            out + r.finish(&inspector).unwrap().len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
