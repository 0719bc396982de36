//! The tamper catalogue: each way an administrator with database access could alter the log is
//! tried on a real SQLite file, and verification must name it. Proofs are made from the same
//! log and checked offline, and forged ones are refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use ztai_audit::checkpoint::{CheckpointSigner, CheckpointVerifier};
use ztai_audit::merkle::leaf_hash;
use ztai_audit::{
    AuditLog, AuditLogConfig, AuditProof, ChainProblem, VerifyOptions, chain_hash,
    prove_consistency, prove_inclusion, verify_log, verify_proof,
};
use ztai_core::{AuditRecord, Decision, StageTimings};
use ztai_store::Sqlite;
use ztai_store::prelude::*;
use ztai_store::testing::RawSqlite;

fn record(i: usize) -> AuditRecord {
    AuditRecord {
        id: format!("r{i}"),
        time: "2026-11-22T00:00:00Z".into(),
        instance: "test".into(),
        principal: format!("user:u{}", i % 3),
        chain: vec![],
        action: "invoke".into(),
        resource: "Model::\"m\"".into(),
        decision: if i.is_multiple_of(5) {
            Decision::Deny
        } else {
            Decision::Allow
        },
        policies: vec![],
        reason: String::new(),
        obligations: vec![],
        findings: vec![],
        status: 200,
        request_digest: String::new(),
        response_digest: String::new(),
        timings: StageTimings::default(),
        content: None,
        client: String::new(),
        credential: None,
    }
}

/// A log of 70 records with checkpoints at 50 and 70, signed by a fresh key.
async fn build(path: &Path) -> (CheckpointVerifier, Vec<String>) {
    let (pkcs8, signer) = CheckpointSigner::generate("ztai-test").unwrap();
    let verifier = CheckpointVerifier::parse(&signer.verifier_key()).unwrap();
    let config = AuditLogConfig {
        signer: Some(CheckpointSigner::from_pkcs8("ztai-test", &pkcs8).unwrap()),
        origin: "ztai-audit/test".into(),
        checkpoint_every: 1_000_000,
        ..AuditLogConfig::default()
    };
    let log = AuditLog::open(&Sqlite::open(path).unwrap(), config).unwrap();
    let mut notes = vec![];
    for i in 1..=50 {
        log.append(record(i)).await.unwrap();
    }
    notes.push(log.checkpoint_now().await.unwrap().unwrap());
    for i in 51..=70 {
        log.append(record(i)).await.unwrap();
    }
    notes.push(log.checkpoint_now().await.unwrap().unwrap());
    assert_eq!(log.checkpoint_now().await.unwrap(), None, "nothing new");
    assert_eq!(log.checkpoints(), 2);
    (verifier, notes)
}

fn raw(path: &Path) -> RawSqlite {
    RawSqlite::open(path).unwrap()
}

fn problems(path: &Path, v: &CheckpointVerifier, external: &[String]) -> Vec<ChainProblem> {
    let store = Sqlite::open(path).unwrap();
    let options = VerifyOptions {
        verifier: Some(v),
        external: external
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("saved checkpoint {i}"), n.clone()))
            .collect(),
    };
    verify_log(&store, &options).unwrap().problems
}

/// Rewrites every row from `from` on so the chain and the leaf hashes are internally
/// consistent again: what an administrator who knows the format would do.
fn rehash_from(path: &Path, from: i64) {
    let store = Sqlite::open(path).unwrap();
    let mut prev: Vec<u8> = if from == 1 {
        vec![0; 32]
    } else {
        store.audit_row(from - 1).unwrap().unwrap().hash
    };
    let c = raw(path);
    for row in store.audit_rows_after(from - 1, 100_000).unwrap() {
        let h = chain_hash(&prev, row.seq, &row.record_json).to_vec();
        c.set_audit_hashes(row.seq, &prev, &h, &leaf_hash(row.record_json.as_bytes()))
            .unwrap();
        prev = h;
    }
}

#[tokio::test]
async fn an_untouched_log_verifies_against_its_signed_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let (v, notes) = build(&path).await;
    let store = Sqlite::open(&path).unwrap();
    let report = verify_log(
        &store,
        &VerifyOptions {
            verifier: Some(&v),
            external: vec![("saved".into(), notes[0].clone())],
        },
    )
    .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.records, 70);
    assert_eq!(report.checkpoints_checked, 3);
    assert!(report.signatures_checked);
}

#[tokio::test]
async fn a_modified_record_is_named_even_when_its_hashes_are_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let (v, _) = build(&path).await;
    let c = raw(&path);
    c.execute("UPDATE audit_log SET record_json = replace(record_json, '\"allow\"', '\"deny\"') WHERE seq = 7")
    .unwrap();
    let p = problems(&path, &v, &[]);
    assert!(p.contains(&ChainProblem::Modified { seq: 7 }), "{p:?}");
    assert!(p.contains(&ChainProblem::LeafModified { seq: 7 }), "{p:?}");
    // The careful forger rehashes everything after the change: the chain is whole again, but
    // the signed tree heads are not the log's any more.
    rehash_from(&path, 7);
    let p = problems(&path, &v, &[]);
    assert!(
        !p.iter().any(|x| matches!(x, ChainProblem::Modified { .. })),
        "{p:?}"
    );
    assert!(
        p.iter()
            .any(|x| matches!(x, ChainProblem::CheckpointMismatch { size: 50, .. })),
        "{p:?}"
    );
}

#[tokio::test]
async fn deleted_inserted_and_reordered_records_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let (v, _) = build(&path).await;
    let c = raw(&path);
    c.execute("DELETE FROM audit_log WHERE seq = 20").unwrap();
    let p = problems(&path, &v, &[]);
    assert!(
        p.contains(&ChainProblem::Gap {
            expected: 20,
            found: 21
        }),
        "{p:?}"
    );

    let path2 = dir.path().join("b.db");
    let (v2, _) = build(&path2).await;
    let c2 = raw(&path2);
    // Swap the content of two records (a reorder that keeps sequence numbers).
    c2.execute_batch(
        "UPDATE audit_log SET record_json = (SELECT record_json FROM audit_log WHERE seq = 31) || ' ' WHERE seq = 30;",
    )
    .unwrap();
    let p = problems(&path2, &v2, &[]);
    assert!(p.contains(&ChainProblem::Modified { seq: 30 }), "{p:?}");

    let path3 = dir.path().join("c.db");
    let (v3, _) = build(&path3).await;
    let c3 = raw(&path3);
    // Insert a forged record at the end, chained correctly, but not covered by any checkpoint
    // that mentions it; and one with a foreign prev hash in the middle of the sequence space.
    c3.execute("INSERT INTO audit_log(seq, record_id, time, principal, action, decision, record_json, prev_hash, hash)
         VALUES(1000, 'x', 't', 'user:evil', 'invoke', 'allow', '{}', x'00', x'00')")
    .unwrap();
    let p = problems(&path3, &v3, &[]);
    assert!(p.contains(&ChainProblem::BrokenLink { seq: 1000 }), "{p:?}");
    assert!(
        p.contains(&ChainProblem::Gap {
            expected: 71,
            found: 1000
        }),
        "{p:?}"
    );
}

#[tokio::test]
async fn truncation_is_named_by_stored_and_by_saved_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let (v, notes) = build(&path).await;
    let c = raw(&path);
    c.execute("DELETE FROM audit_log WHERE seq > 60").unwrap();
    let p = problems(&path, &v, &[]);
    assert!(
        p.iter().any(|x| matches!(
            x,
            ChainProblem::Truncated {
                checkpoint_size: 70,
                records: 60,
                ..
            }
        )),
        "{p:?}"
    );
    // Removing the checkpoints as well hides it from the database alone...
    c.execute("DELETE FROM audit_checkpoints WHERE tree_size > 60")
        .unwrap();
    assert!(problems(&path, &v, &[]).is_empty());
    // ...but not from a checkpoint saved outside it.
    let p = problems(&path, &v, &notes[1..]);
    assert!(
        p.iter().any(|x| matches!(
            x,
            ChainProblem::Truncated {
                checkpoint_size: 70,
                ..
            }
        )),
        "{p:?}"
    );
}

#[tokio::test]
async fn a_checkpoint_not_signed_by_the_configured_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let (_, _) = build(&path).await;
    let (_, other) = CheckpointSigner::generate("ztai-test").unwrap();
    let wrong = CheckpointVerifier::parse(&other.verifier_key()).unwrap();
    let p = problems(&path, &wrong, &[]);
    assert_eq!(
        p.iter()
            .filter(|x| matches!(x, ChainProblem::CheckpointSignature { .. }))
            .count(),
        2,
        "{p:?}"
    );
    // A forged checkpoint row (root changed, note kept) is caught too.
    let path2 = dir.path().join("b.db");
    let (v2, _) = build(&path2).await;
    raw(&path2)
        .execute("UPDATE audit_checkpoints SET root = zeroblob(32) WHERE tree_size = 50")
        .unwrap();
    let p = problems(&path2, &v2, &[]);
    assert!(
        p.iter()
            .any(|x| matches!(x, ChainProblem::CheckpointSignature { size: 50, .. })),
        "{p:?}"
    );
}

#[tokio::test]
async fn inclusion_and_consistency_proofs_verify_offline_and_forgeries_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let (v, _) = build(&path).await;
    let store = Sqlite::open(&path).unwrap();
    for seq in [1, 2, 33, 50, 69, 70] {
        let proof = prove_inclusion(&store, seq, None).unwrap();
        // Round-trips through JSON, as the CLI hands it over.
        let json = serde_json::to_string(&proof).unwrap();
        let back: AuditProof = serde_json::from_str(&json).unwrap();
        assert!(verify_proof(&back, &v).is_ok(), "seq {seq}");
    }
    let at_50 = prove_inclusion(&store, 10, Some(50)).unwrap();
    assert!(verify_proof(&at_50, &v).is_ok());
    assert!(
        prove_inclusion(&store, 60, Some(50)).is_err(),
        "not covered"
    );
    assert!(prove_inclusion(&store, 0, None).is_err());

    // A forged record with the genuine path and checkpoint.
    let AuditProof::Inclusion {
        seq,
        tree_size,
        record,
        path: audit_path,
        checkpoint,
    } = prove_inclusion(&store, 12, None).unwrap()
    else {
        panic!("inclusion proof expected");
    };
    let forged = AuditProof::Inclusion {
        seq,
        tree_size,
        record: record.replace("\"allow\"", "\"deny\""),
        path: audit_path.clone(),
        checkpoint: checkpoint.clone(),
    };
    assert!(verify_proof(&forged, &v).is_err());
    // The genuine record claimed at another position.
    let moved = AuditProof::Inclusion {
        seq: 13,
        tree_size,
        record,
        path: audit_path,
        checkpoint,
    };
    assert!(verify_proof(&moved, &v).is_err());

    let consistency = prove_consistency(&store, 50, 70).unwrap();
    assert!(verify_proof(&consistency, &v).is_ok());
    // Another key does not vouch for the same proof.
    let (_, other) = CheckpointSigner::generate("ztai-test").unwrap();
    let wrong = CheckpointVerifier::parse(&other.verifier_key()).unwrap();
    assert!(verify_proof(&consistency, &wrong).is_err());
}

#[tokio::test]
async fn a_reopened_log_resumes_its_tree_from_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let (v, _) = build(&path).await;
    // `build` dropped its handle; the writer signed nothing new at shutdown (no new records).
    let (pkcs8, signer) = CheckpointSigner::generate("ztai-other").unwrap();
    drop(signer);
    let config = AuditLogConfig {
        signer: Some(CheckpointSigner::from_pkcs8("ztai-other", &pkcs8).unwrap()),
        ..AuditLogConfig::default()
    };
    let log = AuditLog::open(&Sqlite::open(&path).unwrap(), config).unwrap();
    assert_eq!(log.append(record(71)).await.unwrap(), 71);
    let note = log.checkpoint_now().await.unwrap().unwrap();
    assert!(note.contains("\n71\n"));
    // The new head is consistent with the one signed before the restart.
    let store = Sqlite::open(&path).unwrap();
    let report = verify_log(&store, &VerifyOptions::default()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(verify_proof(&prove_inclusion(&store, 5, Some(50)).unwrap(), &v).is_ok());
}

#[tokio::test]
async fn pruning_removes_old_content_but_keeps_the_log_verifiable_and_provable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let (v, notes) = build(&path).await;
    // Records 1..=30 are "old": give them an older time than the rest.
    raw(&path)
        .execute("UPDATE audit_log SET time = '2026-01-01T00:00:00.000000Z' WHERE seq <= 30")
        .unwrap();
    let store = Sqlite::open(&path).unwrap();
    // A SIEM sink that has delivered only up to 20 holds back the rest of the old records.
    store.set_export_cursor("siem", 20, "t").unwrap();
    let held = ztai_audit::prune(
        &store,
        "2026-06-01T00:00:00.000000Z",
        "2026-11-22T00:00:00.000000Z",
        "retention",
        false,
    )
    .unwrap();
    assert_eq!(held.range, Some((1, 20)));
    assert_eq!(held.held_by, Some(("siem".to_string(), 20)));
    store.set_export_cursor("siem", 70, "t").unwrap();
    let report = ztai_audit::prune(
        &store,
        "2026-06-01T00:00:00.000000Z",
        "2026-11-22T00:00:00.000000Z",
        "retention",
        false,
    )
    .unwrap();
    assert_eq!(report.range, Some((21, 30)));
    assert_eq!(report.held_by, None);
    assert_eq!(store.audit_count().unwrap(), 40);
    // The content is gone; every checkpoint, including one saved outside, still verifies.
    let options = VerifyOptions {
        verifier: Some(&v),
        external: vec![("saved".into(), notes[0].clone())],
    };
    let r = verify_log(&store, &options).unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.records, 70);
    // Later records stay provable; pruned ones say why they cannot be.
    assert!(verify_proof(&prove_inclusion(&store, 31, None).unwrap(), &v).is_ok());
    let e = prove_inclusion(&store, 5, None).unwrap_err();
    assert!(e.to_string().contains("pruned"), "{e}");
    // A forger who edits a pruned leaf breaks the signed heads.
    raw(&path)
        .execute("UPDATE audit_pruned SET leaf_hash = zeroblob(32) WHERE seq = 3")
        .unwrap();
    let p = verify_log(&store, &options).unwrap().problems;
    assert!(
        p.iter()
            .any(|x| matches!(x, ChainProblem::CheckpointMismatch { .. })),
        "{p:?}"
    );
    // Nothing newer than the latest checkpoint is ever pruned.
    let again = ztai_audit::prune(
        &store,
        "2099-01-01T00:00:00.000000Z",
        "2026-11-22T00:00:00.000000Z",
        "retention",
        false,
    )
    .unwrap();
    assert_eq!(again.range, Some((31, 70)));
    assert_eq!(store.audit_count().unwrap(), 0);
    // The writer resumes after a fully pruned log.
    let log = AuditLog::open(&Sqlite::open(&path).unwrap(), AuditLogConfig::default()).unwrap();
    assert_eq!(log.append(record(71)).await.unwrap(), 71);
}
