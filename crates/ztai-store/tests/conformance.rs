//! The promises of `ztai_store`'s domain traits, checked against every backend through
//! `&dyn Backend` only, so a new backend (PostgreSQL) is added to `backends()` and nothing else.
//! Each test names the contract it checks; the concurrent ones race real threads on one store.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::sync::Arc;
use ztai_core::{ApprovalStatus, ModelState, Transition};
use ztai_store::{
    AgentRow, ApprovalRow, AuditFilter, Backend, DocumentRow, KeyRow, McpSessionRow, ModelRow,
    ModelVersionRow, Sqlite, StoreError, VerificationEvidence, VersionMove,
};

/// Every backend this build has, each fresh and empty, with the directory that holds it.
fn backends() -> Vec<(&'static str, Arc<dyn Backend>, tempfile::TempDir)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Sqlite::open(&dir.path().join("ztai.db")).unwrap();
    vec![("sqlite", Arc::new(sqlite), dir)]
}

fn each(check: impl Fn(&str, Arc<dyn Backend>)) {
    for (name, backend, _dir) in backends() {
        check(name, backend);
    }
}

/// Runs `f` on `n` threads at once (released together) and returns their results.
fn race<T: Send + 'static>(
    n: usize,
    b: &Arc<dyn Backend>,
    f: impl Fn(usize, &dyn Backend) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let f = Arc::new(f);
    let gate = Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let (b, f, gate) = (b.clone(), f.clone(), gate.clone());
            std::thread::spawn(move || {
                gate.wait();
                f(i, b.as_ref())
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn key(id: &str) -> KeyRow {
    KeyRow {
        key_id: id.into(),
        secret_hash: vec![1, 2, 3],
        principal_kind: "user".into(),
        principal_id: "alice".into(),
        groups: vec!["eng".into()],
        label: "test".into(),
        created_at: format!("2026-12-08T00:00:00.{id}Z"),
        revoked_at: None,
    }
}

fn approval(id: &str, expires_at: i64) -> ApprovalRow {
    ApprovalRow {
        approval_id: id.into(),
        status: ApprovalStatus::Pending,
        requester: "user:alice".into(),
        chain: vec!["user:alice".into()],
        action: "Action::\"tool_call\"".into(),
        resource: "Tool::\"refund\"".into(),
        approver_group: "finance".into(),
        request_digest: "d".into(),
        summary: serde_json::json!({"tool": "refund"}),
        created_at: 100,
        expires_at,
        decided_by: None,
        decided_at: None,
        reason: None,
        signature: None,
        used_at: None,
        approver_key: None,
    }
}

fn document(id: &str) -> DocumentRow {
    DocumentRow {
        document_id: id.into(),
        collections: vec!["hr".into()],
        classification: "internal".into(),
        owner: String::new(),
        readers: vec!["group:hr".into()],
        labels: vec![],
        updated_at: "2026-12-08T00:00:00Z".into(),
        updated_by: "user:admin".into(),
    }
}

fn model_version(model: &str, version: &str) -> ModelVersionRow {
    ModelVersionRow {
        model: model.into(),
        version: version.into(),
        state: ModelState::Registered,
        path: "/models/x".into(),
        signature_path: "/models/x.sig".into(),
        upstream_model: format!("{model}-{version}"),
        lineage: serde_json::json!({}),
        root_digest: None,
        signer: None,
        signer_fingerprints: vec![],
        scan: None,
        state_reason: String::new(),
        registered_by: "user:admin".into(),
        registered_at: 1,
        updated_by: "user:admin".into(),
        updated_at: 1,
        deployed_at: None,
    }
}

#[test]
fn keys_are_inserted_once_and_revocation_keeps_its_first_time() {
    each(|name, b| {
        b.insert_key(&key("1")).unwrap();
        assert!(
            matches!(b.insert_key(&key("1")), Err(StoreError::Conflict(_))),
            "{name}"
        );
        b.revoke_key("1", "first").unwrap();
        b.revoke_key("1", "second").unwrap();
        let keys = b.list_keys().unwrap();
        assert_eq!(keys.len(), 1, "{name}");
        assert_eq!(keys[0].revoked_at.as_deref(), Some("first"), "{name}");
        assert_eq!(keys[0].groups, vec!["eng".to_string()], "{name}");
        assert!(
            matches!(b.revoke_key("nope", "x"), Err(StoreError::NotFound(_))),
            "{name}"
        );
    });
}

#[test]
fn concurrent_inserts_of_one_key_id_admit_exactly_one() {
    each(|name, b| {
        let ok = race(8, &b, |_, b| b.insert_key(&key("7")).is_ok());
        assert_eq!(ok.iter().filter(|o| **o).count(), 1, "{name}");
        assert_eq!(b.list_keys().unwrap().len(), 1, "{name}");
    });
}

#[test]
fn the_revocation_feed_is_append_only_ordered_and_deduplicated() {
    each(|name, b| {
        b.insert_revocation("token", "t1", "a", "admin", "lost")
            .unwrap();
        b.insert_revocation("user", "bob", "b", "admin", "left")
            .unwrap();
        b.insert_revocation("token", "t1", "c", "admin", "again")
            .unwrap();
        let all = b.revocations_after(0).unwrap();
        let subjects: Vec<_> = all.iter().map(|r| r.subject.as_str()).collect();
        assert_eq!(subjects, ["t1", "bob"], "{name}");
        assert_eq!(all[0].reason, "lost", "{name}: the first record is kept");
        assert!(all[0].seq < all[1].seq, "{name}");
        let after = b.revocations_after(all[0].seq).unwrap();
        assert_eq!(after.len(), 1, "{name}");
        b.insert_agent(&AgentRow {
            agent_id: "agent-1".into(),
            owner: "user:alice".into(),
            purpose: "triage".into(),
            groups: vec![],
            ceiling: vec!["tool:*".into()],
            created_at: "t".into(),
            created_by: "user:admin".into(),
            revoked_at: None,
            revoked_by: None,
        })
        .unwrap();
        b.revoke_agent("agent-1", "t2", "user:admin").unwrap();
        assert_eq!(
            b.list_agents().unwrap()[0].revoked_by.as_deref(),
            Some("user:admin"),
            "{name}"
        );
        assert!(
            matches!(
                b.revoke_agent("agent-x", "t", "a"),
                Err(StoreError::NotFound(_))
            ),
            "{name}"
        );
    });
}

#[test]
fn an_approval_is_decided_once_and_spent_once_under_contention() {
    each(|name, b| {
        b.insert_approval(&approval("apr_1", 1_000)).unwrap();
        let decided = race(8, &b, |i, b| {
            b.decide_approval(
                "apr_1",
                i % 2 == 0,
                &format!("user:approver{i}"),
                200,
                "ok",
                "sig",
                None,
            )
            .unwrap()
        });
        assert_eq!(decided.iter().filter(|d| **d).count(), 1, "{name}");
        let row = b.get_approval("apr_1").unwrap().unwrap();
        if row.status == ApprovalStatus::Approved {
            let spent = race(8, &b, |_, b| b.use_approval("apr_1", 300, 2_000).unwrap());
            assert_eq!(spent.iter().filter(|s| **s).count(), 1, "{name}");
        } else {
            assert_eq!(row.status, ApprovalStatus::Denied, "{name}");
            assert!(!b.use_approval("apr_1", 300, 2_000).unwrap(), "{name}");
        }
    });
}

#[test]
fn an_expired_approval_cannot_be_decided_and_is_swept() {
    each(|name, b| {
        b.insert_approval(&approval("apr_old", 150)).unwrap();
        assert!(
            !b.decide_approval("apr_old", true, "user:a", 151, "late", "sig", None)
                .unwrap(),
            "{name}"
        );
        let pending = b.list_approvals(Some(140), 10).unwrap();
        assert_eq!(pending.len(), 1, "{name}");
        assert!(
            b.list_approvals(Some(151), 10).unwrap().is_empty(),
            "{name}"
        );
        let (expired, deleted) = b.sweep_approvals(200, 0).unwrap();
        assert_eq!((expired, deleted), (1, 0), "{name}");
        let (_, deleted) = b.sweep_approvals(200, 10_000).unwrap();
        assert_eq!(deleted, 1, "{name}");
        assert!(b.get_approval("apr_old").unwrap().is_none(), "{name}");
    });
}

#[test]
fn document_writes_move_the_version_and_apply_whole() {
    each(|name, b| {
        let v0 = b.documents_version().unwrap();
        let v1 = b
            .upsert_documents(&[document("a"), document("b"), document("c")])
            .unwrap();
        assert!(v1 > v0, "{name}");
        assert_eq!(b.documents_version().unwrap(), v1, "{name}");
        let page = b.list_documents(Some("a"), 1).unwrap();
        assert_eq!(page[0].document_id, "b", "{name}");
        assert!(b.delete_document("b").unwrap(), "{name}");
        assert!(!b.delete_document("b").unwrap(), "{name}");
        assert!(b.documents_version().unwrap() > v1, "{name}");
        // Concurrent writers each move the version; none is lost.
        let before = b.documents_version().unwrap();
        race(6, &b, |i, b| {
            b.upsert_documents(&[document(&format!("d{i}"))]).unwrap();
        });
        assert_eq!(b.documents_version().unwrap(), before + 6, "{name}");
        assert_eq!(b.list_documents(None, 100).unwrap().len(), 8, "{name}");
    });
}

#[test]
fn deploying_supersedes_the_deployed_version_in_one_move() {
    each(|name, b| {
        b.create_model(&ModelRow {
            name: "m".into(),
            owners: vec!["user:ml".into()],
            approved_uses: vec!["chat".into()],
            risk_tier: "limited".into(),
            description: String::new(),
            fallback: true,
            created_at: 1,
            created_by: "user:admin".into(),
        })
        .unwrap();
        assert!(
            matches!(
                b.register_model_version(&model_version("other", "1")),
                Err(StoreError::NotFound(_))
            ),
            "{name}"
        );
        for v in ["1", "2"] {
            b.register_model_version(&model_version("m", v)).unwrap();
            let evidence = VerificationEvidence {
                root_digest: format!("sha256:{v}"),
                signer: serde_json::json!({"identity": "ml@example.com"}),
                signer_fingerprints: vec![format!("fp-{v}")],
                scan: serde_json::json!({"clean": true}),
            };
            for t in [Transition::Verify, Transition::Approve, Transition::Deploy] {
                b.transition_model_version(&VersionMove {
                    model: "m",
                    version: v,
                    transition: t,
                    evidence: (t == Transition::Verify).then_some(&evidence),
                    reason: "test",
                    by: "user:admin",
                    now: 2,
                })
                .unwrap_or_else(|e| panic!("{name}: {t:?} {v}: {e}"));
            }
        }
        let states: Vec<_> = b
            .model_versions(Some("m"))
            .unwrap()
            .into_iter()
            .map(|r| (r.version, r.state))
            .collect();
        assert_eq!(
            states,
            [
                ("1".to_string(), ModelState::Approved),
                ("2".to_string(), ModelState::Deployed)
            ],
            "{name}"
        );
        let refused = b.transition_model_version(&VersionMove {
            model: "m",
            version: "1",
            transition: Transition::Verify,
            evidence: None,
            reason: "again",
            by: "user:admin",
            now: 3,
        });
        assert!(matches!(refused, Err(StoreError::Conflict(_))), "{name}");
        let revoked = b
            .revoke_model_signer("fp-2", "leaked", "user:admin", 4)
            .unwrap();
        assert_eq!(revoked.len(), 1, "{name}");
        assert_eq!(
            b.model_version("m", "2").unwrap().unwrap().state,
            ModelState::Revoked,
            "{name}"
        );
        assert!(
            b.revoked_model_signer(&["x".into(), "fp-2".into()])
                .unwrap()
                .is_some(),
            "{name}"
        );
    });
}

#[test]
fn taint_only_grows_even_when_added_concurrently() {
    each(|name, b| {
        b.insert_mcp_session(&McpSessionRow {
            session_hash: "h".into(),
            server: "files".into(),
            principal: "user:alice".into(),
            created_at: 1,
            expires_at: 100,
            ended_at: None,
            taint: BTreeSet::new(),
        })
        .unwrap();
        race(8, &b, |i, b| {
            b.add_mcp_taint("h", &BTreeSet::from([format!("label{i}")]))
                .unwrap();
        });
        let taint = b.mcp_session("h").unwrap().unwrap().taint;
        assert_eq!(taint.len(), 8, "{name}: {taint:?}");
        assert!(b.end_mcp_session("h", 50).unwrap(), "{name}");
        assert!(!b.end_mcp_session("h", 51).unwrap(), "{name}");
        assert_eq!(b.prune_mcp_sessions(101).unwrap(), 1, "{name}");
    });
}

#[test]
fn a_policy_set_digest_already_newest_is_not_recorded_twice() {
    each(|name, b| {
        let v1 = b
            .record_policy_set("d1", "startup", "a", "t", "{}")
            .unwrap();
        assert_eq!(
            b.record_policy_set("d1", "reload", "a", "t", "{}").unwrap(),
            v1,
            "{name}"
        );
        let v2 = b.record_policy_set("d2", "reload", "a", "t", "{}").unwrap();
        assert!(v2 > v1, "{name}");
        assert_eq!(
            b.latest_policy_set().unwrap().unwrap().version,
            v2,
            "{name}"
        );
        assert_eq!(b.list_policy_sets(Some(v2), 10).unwrap().len(), 1, "{name}");
        assert_eq!(
            b.get_policy_set(v1).unwrap().unwrap().digest,
            "d1",
            "{name}"
        );
    });
}

#[test]
fn meta_and_export_cursors_keep_the_last_write() {
    each(|name, b| {
        assert_eq!(b.meta_get("k").unwrap(), None, "{name}");
        b.meta_set("k", "1").unwrap();
        b.meta_set("k", "2").unwrap();
        assert_eq!(b.meta_get("k").unwrap().as_deref(), Some("2"), "{name}");
        assert_eq!(b.export_cursor("siem").unwrap(), None, "{name}");
        b.set_export_cursor("siem", 5, "t").unwrap();
        b.set_export_cursor("siem", 9, "t").unwrap();
        assert_eq!(b.export_cursor("siem").unwrap(), Some(9), "{name}");
        assert_eq!(b.export_cursors().unwrap().len(), 1, "{name}");
        assert!(b.drop_export_cursor("siem").unwrap(), "{name}");
        assert!(!b.drop_export_cursor("siem").unwrap(), "{name}");
    });
}

#[test]
fn an_empty_audit_log_reads_as_empty() {
    each(|name, b| {
        assert_eq!(b.audit_head().unwrap(), None, "{name}");
        assert_eq!(b.audit_count().unwrap(), 0, "{name}");
        assert!(b.audit_rows_after(0, 10).unwrap().is_empty(), "{name}");
        assert!(
            b.audit_search(&AuditFilter::default(), 10)
                .unwrap()
                .is_empty(),
            "{name}"
        );
        assert!(b.latest_checkpoint().unwrap().is_none(), "{name}");
        b.ping().unwrap();
    });
}

#[test]
fn readers_and_a_writer_at_once_each_see_whole_rows() {
    each(|name, b| {
        for i in 0..200 {
            b.upsert_documents(&[document(&format!("doc{i:03}"))])
                .unwrap();
        }
        // Eight readers list the registry while this thread inserts keys: every read sees all
        // 200 documents, every key arrives, and nobody gets a busy error.
        let readers = {
            let b = b.clone();
            std::thread::spawn(move || {
                race(8, &b, |_, b| {
                    for _ in 0..20 {
                        assert_eq!(b.list_documents(None, 1_000).unwrap().len(), 200);
                    }
                })
            })
        };
        for i in 0..50 {
            b.insert_key(&key(&format!("{i:03}"))).unwrap();
        }
        readers.join().unwrap();
        assert_eq!(b.list_keys().unwrap().len(), 50, "{name}");
    });
}
