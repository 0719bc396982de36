//! The schema as numbered steps, so a store written by any earlier release opens in this one.
//!
//! `PRAGMA user_version` holds the last step applied; an empty file is version 0. Opening applies
//! every later step in order, each in its own transaction together with its version bump (SQLite's
//! DDL is transactional), so a crash mid-upgrade leaves the store at a whole version and the next
//! open carries on. A step is never edited once released: a change to the schema is a new step at
//! the end. `tests/migrations.rs` opens every schema the project has shipped and checks that it
//! ends up the same shape as a fresh store, with its rows kept.

use crate::StoreError;
use rusqlite::Connection;

/// One step: what it changes and why, and the SQL that takes version `to - 1` to `to`.
pub(crate) struct Migration {
    pub to: i64,
    pub why: &'static str,
    pub sql: &'static str,
}

/// The version a store is at once every step has run.
pub const SCHEMA_VERSION: i64 = 9;

/// Every step, oldest first; `MIGRATIONS[i].to == i + 1`.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        to: 1,
        why: "The first shipped schema: API keys, the hash-chained audit log, policy set versions and metadata.",
        sql: "
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    secret_hash BLOB NOT NULL,
    principal_kind TEXT NOT NULL,
    principal_id TEXT NOT NULL,
    groups_json TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY,
    record_id TEXT NOT NULL,
    time TEXT NOT NULL,
    principal TEXT NOT NULL,
    action TEXT NOT NULL,
    decision TEXT NOT NULL,
    record_json TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_log_principal ON audit_log(principal, seq);
CREATE TABLE IF NOT EXISTS policy_sets (
    version INTEGER PRIMARY KEY,
    digest TEXT NOT NULL,
    source TEXT NOT NULL,
    author TEXT NOT NULL,
    created_at TEXT NOT NULL,
    policies_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
",
    },
    Migration {
        to: 2,
        why: "Merkle leaf hashes on audit rows (older rows keep NULL and are hashed on read), pruning and signed checkpoints. The record-id index of the very first releases is dropped: the writer never looks records up by id.",
        sql: "
ALTER TABLE audit_log ADD COLUMN leaf_hash BLOB;
DROP INDEX IF EXISTS audit_log_record_id;
CREATE TABLE IF NOT EXISTS audit_pruned (
    seq INTEGER PRIMARY KEY,
    leaf_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_prunes (
    id INTEGER PRIMARY KEY,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    time TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    tree_size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    time TEXT NOT NULL,
    note TEXT NOT NULL,
    frontier BLOB NOT NULL
);
",
    },
    Migration {
        to: 3,
        why: "Export cursors, one per SIEM sink. The pruning tables again: the first release at version 2 shipped without them, and its stores would otherwise never get them.",
        sql: "
CREATE TABLE IF NOT EXISTS audit_pruned (
    seq INTEGER PRIMARY KEY,
    leaf_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_prunes (
    id INTEGER PRIMARY KEY,
    first_seq INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    time TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS export_cursors (
    sink TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
",
    },
    Migration {
        to: 4,
        why: "Agents and the revocation feed.",
        sql: "
CREATE TABLE IF NOT EXISTS agents (
    agent_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    purpose TEXT NOT NULL,
    groups_json TEXT NOT NULL,
    ceiling_json TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TEXT,
    revoked_by TEXT
);
CREATE TABLE IF NOT EXISTS revocations (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    revoked_at TEXT NOT NULL,
    revoked_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    UNIQUE(kind, subject)
);
",
    },
    Migration {
        to: 5,
        why: "Held requests awaiting a human approver.",
        sql: "
CREATE TABLE IF NOT EXISTS approvals (
    approval_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    requester TEXT NOT NULL,
    chain_json TEXT NOT NULL,
    action TEXT NOT NULL,
    resource TEXT NOT NULL,
    approver_group TEXT NOT NULL,
    request_digest TEXT NOT NULL,
    summary_json TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    decided_by TEXT,
    decided_at INTEGER,
    reason TEXT,
    signature TEXT,
    used_at INTEGER
);
CREATE INDEX IF NOT EXISTS approvals_by_status ON approvals(status, created_at);
",
    },
    Migration {
        to: 6,
        why: "Approver keys; a decision records the key that signed it (older decisions were signed by the gateway alone and keep NULL).",
        sql: "
ALTER TABLE approvals ADD COLUMN approver_key TEXT;
CREATE TABLE IF NOT EXISTS approver_keys (
    key_id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    verifier_key TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at TEXT,
    revoked_by TEXT
);
CREATE INDEX IF NOT EXISTS approver_keys_by_principal ON approver_keys(principal);
",
    },
    Migration {
        to: 7,
        why: "The documents registry.",
        sql: "
CREATE TABLE IF NOT EXISTS documents (
    document_id TEXT PRIMARY KEY,
    collections_json TEXT NOT NULL,
    classification TEXT NOT NULL,
    owner TEXT NOT NULL,
    readers_json TEXT NOT NULL,
    labels_json TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_by TEXT NOT NULL
);
",
    },
    Migration {
        to: 8,
        why: "MCP tool pins and sealed sessions.",
        sql: "
CREATE TABLE IF NOT EXISTS mcp_tools (
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    status TEXT NOT NULL,
    pinned_digest TEXT,
    seen_digest TEXT NOT NULL,
    definition_json TEXT NOT NULL,
    findings_json TEXT NOT NULL,
    reason TEXT NOT NULL,
    first_seen INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    approved_by TEXT,
    approved_at INTEGER,
    PRIMARY KEY (server, tool)
);
CREATE TABLE IF NOT EXISTS mcp_sessions (
    session_hash TEXT PRIMARY KEY,
    server TEXT NOT NULL,
    principal TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ended_at INTEGER,
    taint_json TEXT NOT NULL
);
",
    },
    Migration {
        to: 9,
        why: "The model registry.",
        sql: "
CREATE TABLE IF NOT EXISTS registry_models (
    name TEXT PRIMARY KEY,
    owners_json TEXT NOT NULL,
    approved_uses_json TEXT NOT NULL,
    risk_tier TEXT NOT NULL,
    description TEXT NOT NULL,
    fallback INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS registry_versions (
    model TEXT NOT NULL REFERENCES registry_models(name),
    version TEXT NOT NULL,
    state TEXT NOT NULL,
    path TEXT NOT NULL,
    signature_path TEXT NOT NULL,
    upstream_model TEXT NOT NULL,
    lineage_json TEXT NOT NULL,
    root_digest TEXT,
    signer_json TEXT,
    signer_fingerprints_json TEXT NOT NULL,
    scan_json TEXT,
    state_reason TEXT NOT NULL,
    registered_by TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    deployed_at INTEGER,
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS registry_revoked_signers (
    fingerprint TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    revoked_by TEXT NOT NULL,
    revoked_at INTEGER NOT NULL
);
",
    },
];

/// Brings `conn` from its stored version to `SCHEMA_VERSION`, one transaction per step. A store
/// newer than this binary is refused rather than written with a schema it does not know.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "the store's schema version {version} is newer than this binary understands ({SCHEMA_VERSION}); upgrade ztai"
        )));
    }
    for step in MIGRATIONS.iter().filter(|m| m.to > version) {
        let tx = conn.transaction()?;
        tx.execute_batch(step.sql)
            .map_err(|source| StoreError::Migration {
                to: step.to,
                why: step.why,
                source,
            })?;
        tx.pragma_update(None, "user_version", step.to)?;
        tx.commit()?;
        if version > 0 {
            tracing::info!(to = step.to, why = step.why, "store schema upgraded");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_numbered_in_order_and_end_at_the_current_version() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.to, i as i64 + 1, "step {i} is numbered {}", m.to);
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.to), Some(SCHEMA_VERSION));
    }

    #[test]
    fn a_store_newer_than_the_binary_is_refused_untouched() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let e = migrate(&mut c).unwrap_err().to_string();
        assert!(e.contains("newer than this binary"), "{e}");
        let tables: i64 = c
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .unwrap();
        assert_eq!(tables, 0);
    }

    #[test]
    fn a_failing_step_is_rolled_back_whole_and_leaves_the_last_version() {
        let mut c = Connection::open_in_memory().unwrap();
        for m in MIGRATIONS.iter().take(5) {
            c.execute_batch(m.sql).unwrap();
        }
        c.pragma_update(None, "user_version", 5).unwrap();
        // Step 6 alters `approvals` and creates `approver_keys` before its index, whose name a
        // table already holds: the step fails on its last statement.
        c.execute_batch("CREATE TABLE approver_keys_by_principal (x INTEGER);")
            .unwrap();
        let e = migrate(&mut c).unwrap_err();
        assert!(matches!(e, StoreError::Migration { to: 6, .. }), "{e:?}");
        let v: i64 = c
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, 5);
        let count = |sql: &str| -> i64 { c.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(
            count("SELECT count(*) FROM sqlite_master WHERE name = 'approver_keys'"),
            0
        );
        assert_eq!(
            count(
                "SELECT count(*) FROM pragma_table_info('approvals') WHERE name = 'approver_key'"
            ),
            0,
            "the step's ALTER was rolled back with it"
        );
    }
}
