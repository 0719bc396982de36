//! Durable audit appends through the group-commit writer, as the gateway issues them: many
//! concurrent requests each awaiting its own record. And SIEM rendering, which bounds how fast
//! one export sink can drain a backlog.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ztai_audit::{AuditLog, AuditLogConfig};
use ztai_core::{AuditRecord, Decision, StageTimings};

fn record(i: u64) -> AuditRecord {
    AuditRecord {
        id: format!("req-{i}"),
        time: "2026-11-21T00:00:00.000Z".into(),
        instance: "bench".into(),
        principal: "user:alice".into(),
        chain: vec!["user:alice".into()],
        action: "invoke".into(),
        resource: "Model::\"echo-small\"".into(),
        decision: Decision::Allow,
        policies: vec!["staff-standard-models".into()],
        reason: String::new(),
        obligations: vec![],
        findings: vec![],
        status: 200,
        request_digest: "0".repeat(64),
        response_digest: "0".repeat(64),
        timings: StageTimings::default(),
        content: None,
        client: String::new(),
        credential: None,
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(
        &ztai_store::Sqlite::open(&dir.path().join("bench.db")).unwrap(),
        AuditLogConfig::default(),
    )
    .unwrap();
    let mut group = c.benchmark_group("audit");
    const CONCURRENT: u64 = 256;
    group.throughput(Throughput::Elements(CONCURRENT));
    group.bench_function("durable_append_256_concurrent", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut tasks = Vec::with_capacity(CONCURRENT as usize);
                for i in 0..CONCURRENT {
                    let log = log.clone();
                    tasks.push(tokio::spawn(async move { log.append(record(i)).await }));
                }
                for t in tasks {
                    t.await.unwrap().unwrap();
                }
            })
        })
    });
    group.finish();

    // A typical record: a client address, two findings, one policy.
    let mut r = record(7);
    r.client = "10.1.2.3:50123".into();
    r.findings = serde_json::from_str(
        r#"[{"kind":"email","category":"pii","severity":"medium","span":{"start":3,"end":20},"channel":"input","detector":"rules"},
            {"kind":"aws_access_key","category":"secret","severity":"high","span":{"start":40,"end":60},"channel":"output","detector":"rules"}]"#,
    )
    .unwrap();
    let json = serde_json::to_string(&r).unwrap();
    let mut group = c.benchmark_group("export");
    group.throughput(Throughput::Elements(1));
    for format in [
        ztai_audit::export::ExportFormat::Ocsf,
        ztai_audit::export::ExportFormat::Cef,
        ztai_audit::export::ExportFormat::Json,
    ] {
        group.bench_function(format!("render_{}", format.as_str()), |b| {
            b.iter(|| ztai_audit::export::render(format, 42, std::hint::black_box(&json)).unwrap())
        });
    }
    let e = ztai_audit::export::render(ztai_audit::export::ExportFormat::Cef, 42, &json).unwrap();
    group.bench_function("syslog_frame_cef", |b| {
        b.iter(|| {
            let m = ztai_audit::export::format::syslog_message(
                std::hint::black_box(&e),
                13,
                "gw-1",
                ztai_audit::export::ExportFormat::Cef,
            );
            let mut out = Vec::with_capacity(m.len() + 8);
            ztai_audit::export::format::frame_octet_counted(&m, &mut out);
            out
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
