//! The SQLite backend.
//!
//! One `Store` holds one connection; open one per thread that needs it (the audit writer owns its
//! own). Opening applies the numbered schema steps of `migrations` that the file has not seen.

use crate::StoreError;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

fn policy_set_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PolicySetRow> {
    Ok(PolicySetRow {
        version: r.get(0)?,
        digest: r.get(1)?,
        source: r.get(2)?,
        author: r.get(3)?,
        created_at: r.get(4)?,
        policies_json: r.get(5)?,
    })
}

/// A request held for a human approver. Times are Unix seconds; a pending request past
/// `expires_at` counts as expired (denied) before the sweep writes it so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRow {
    pub approval_id: String,
    pub status: ztai_core::ApprovalStatus,
    /// `kind:id` of the principal whose request is held.
    pub requester: String,
    /// The delegation chain the request was made under, `kind:id` outermost first.
    pub chain: Vec<String>,
    pub action: String,
    pub resource: String,
    pub approver_group: String,
    /// Digest of what was asked (principal, chain, action, resource and body), so an approval
    /// cannot be spent on a different request.
    pub request_digest: String,
    /// What approvers are shown (model, operation, policies, findings), JSON.
    pub summary: serde_json::Value,
    pub created_at: i64,
    pub expires_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub reason: Option<String>,
    /// The decision statement as a signed note: the approver's signature, countersigned by
    /// the gateway.
    pub signature: Option<String>,
    pub used_at: Option<i64>,
    /// Which registered approver key signed the decision (`name+keyid`), when one did.
    pub approver_key: Option<String>,
}

/// A catalogued document (the registry behind `/api/v1/documents`): what policy knows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRow {
    pub document_id: String,
    pub collections: Vec<String>,
    pub classification: String,
    /// `kind:id`, or empty.
    pub owner: String,
    pub readers: Vec<String>,
    pub labels: Vec<String>,
    pub updated_at: String,
    pub updated_by: String,
}

/// The meta key counting changes to the documents registry, so replicas know when to re-read.
pub const DOCUMENTS_VERSION_KEY: &str = "documents_version";

/// An approver's registered signing key: decisions they sign are checked against it. Times are
/// RFC 3339 text like the other registries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverKeyRow {
    /// `name+keyid` of the verifier key; unique.
    pub key_id: String,
    /// `kind:id` of the approver the key belongs to (the verifier key's name).
    pub principal: String,
    /// The full verifier key, `name+keyid+base64(alg ‖ public key)`.
    pub verifier_key: String,
    pub label: String,
    pub created_at: String,
    pub created_by: String,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
}

/// A registered agent: who answers for it, what it is for, and the most it may ever reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRow {
    pub agent_id: String,
    pub owner: String,
    pub purpose: String,
    /// Groups policy evaluates the agent with.
    pub groups: Vec<String>,
    /// The ceiling as `kind:name` entries (`model:small`, `tool:*`).
    pub ceiling: Vec<String>,
    pub created_at: String,
    pub created_by: String,
    pub revoked_at: Option<String>,
    pub revoked_by: Option<String>,
}

/// A revoked credential or principal: `kind` is `token` (a task token revocation id) or `user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRow {
    pub seq: i64,
    pub kind: String,
    pub subject: String,
    pub revoked_at: String,
    pub revoked_by: String,
    pub reason: String,
}

/// A stored API key: everything but the secret, which is kept only as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub key_id: String,
    pub secret_hash: Vec<u8>,
    pub principal_kind: String,
    pub principal_id: String,
    pub groups: Vec<String>,
    pub label: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// One audit log row as stored: the record's canonical JSON and its place in the hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub seq: i64,
    pub record_id: String,
    pub time: String,
    pub principal: String,
    pub action: String,
    pub decision: String,
    pub record_json: String,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    /// The record's Merkle leaf hash; absent on rows written before schema version 2, whose
    /// leaf hash readers compute from `record_json`.
    pub leaf_hash: Option<Vec<u8>>,
}

/// A pruned audit row: `(seq, leaf_hash, hash)`; its content is gone.
pub type PrunedRow = (i64, Vec<u8>, Vec<u8>);

/// Which audit rows a search wants; every field narrows it, `None` leaves it open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub principal: Option<String>,
    pub action: Option<String>,
    pub decision: Option<String>,
    /// Inclusive lower bound on the record time, in the records' own RFC 3339 (micros) form.
    pub since: Option<String>,
    /// Exclusive upper bound on the record time.
    pub until: Option<String>,
    /// A finding kind (`email`) or category (`secret`) the record must carry.
    pub finding: Option<String>,
    /// Only rows after this sequence number (for following the log).
    pub after_seq: Option<i64>,
}

/// A signed checkpoint of the audit log's Merkle tree, with the writer's frontier at that size
/// so a restarted writer resumes without rehashing the whole log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRow {
    pub tree_size: i64,
    pub root: Vec<u8>,
    pub time: String,
    /// The signed note, exactly as signed.
    pub note: String,
    /// The frontier's peak hashes, concatenated.
    pub frontier: Vec<u8>,
}

/// One version of the policy set, as loaded by a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySetRow {
    pub version: i64,
    pub digest: String,
    pub source: String,
    pub author: String,
    pub created_at: String,
    /// JSON object: file name → policy text.
    pub policies_json: String,
}

/// One connection. Other crates never see it: they hold the pooled `Sqlite` through the domain
/// traits, and the audit writer through `AuditWriter`.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) conn: Connection,
}

impl Store {
    /// Opens (creating if needed) the database file at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(|source| StoreError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Self::init(conn)
    }

    /// An in-memory store, for this crate's unit tests.
    #[cfg(test)]
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL lets readers run beside the audit writer; NORMAL sync in WAL mode is durable against
        // process crashes (kill -9), which is what "an answered request is recorded" needs.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        crate::migrations::migrate(&mut conn)?;
        Ok(Store { conn })
    }

    /// Whether the connection answers a trivial query.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.conn.query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    /// Stops this connection from checkpointing the WAL on commit, for a writer whose commits
    /// must stay short; some other connection must then call `checkpoint`.
    pub fn disable_autocheckpoint(&self) -> Result<(), StoreError> {
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(())
    }

    /// Copies committed WAL pages into the database. A passive checkpoint never waits; `restart`
    /// also waits for a running writer and makes the next one start the WAL from its beginning.
    /// Returns the WAL's frame count and how many frames were checkpointed.
    pub fn checkpoint(&self, restart: bool) -> Result<(i64, i64), StoreError> {
        let sql = if restart {
            "PRAGMA wal_checkpoint(RESTART)"
        } else {
            "PRAGMA wal_checkpoint(PASSIVE)"
        };
        Ok(self
            .conn
            .query_row(sql, [], |r| Ok((r.get(1)?, r.get(2)?)))?)
    }

    // ---- meta -------------------------------------------------------------------------------

    pub fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO meta(key, value) VALUES(?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    // ---- API keys ---------------------------------------------------------------------------

    pub fn insert_key(&self, row: &KeyRow) -> Result<(), StoreError> {
        let groups = serde_json::to_string(&row.groups)
            .map_err(|e| StoreError::Corrupt(format!("groups of key `{}`: {e}", row.key_id)))?;
        let changed = self.conn.execute(
            "INSERT OR IGNORE INTO api_keys(key_id, secret_hash, principal_kind, principal_id, groups_json, label, created_at, revoked_at)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                row.key_id,
                row.secret_hash,
                row.principal_kind,
                row.principal_id,
                groups,
                row.label,
                row.created_at,
                row.revoked_at
            ],
        )?;
        if changed == 0 {
            return Err(StoreError::Conflict(format!("api key `{}`", row.key_id)));
        }
        Ok(())
    }

    pub fn list_keys(&self) -> Result<Vec<KeyRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT key_id, secret_hash, principal_kind, principal_id, groups_json, label, created_at, revoked_at
             FROM api_keys ORDER BY created_at, key_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, Option<String>>(7)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (key_id, secret_hash, kind, id, groups_json, label, created_at, revoked_at) = row?;
            let groups: Vec<String> = serde_json::from_str(&groups_json)
                .map_err(|e| StoreError::Corrupt(format!("groups of key `{key_id}`: {e}")))?;
            out.push(KeyRow {
                key_id,
                secret_hash,
                principal_kind: kind,
                principal_id: id,
                groups,
                label,
                created_at,
                revoked_at,
            });
        }
        Ok(out)
    }

    /// Marks a key revoked; returns `NotFound` for an unknown id.
    pub fn revoke_key(&self, key_id: &str, at: &str) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE key_id = ?1",
            params![key_id, at],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("api key `{key_id}`")));
        }
        Ok(())
    }

    // ---- agents -----------------------------------------------------------------------------

    pub fn insert_agent(&self, row: &AgentRow) -> Result<(), StoreError> {
        let json = |v: &Vec<String>, what: &str| {
            serde_json::to_string(v).map_err(|e| {
                StoreError::Corrupt(format!("{what} of agent `{}`: {e}", row.agent_id))
            })
        };
        let changed = self.conn.execute(
            "INSERT OR IGNORE INTO agents(agent_id, owner, purpose, groups_json, ceiling_json, created_at, created_by, revoked_at, revoked_by)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                row.agent_id,
                row.owner,
                row.purpose,
                json(&row.groups, "groups")?,
                json(&row.ceiling, "ceiling")?,
                row.created_at,
                row.created_by,
                row.revoked_at,
                row.revoked_by
            ],
        )?;
        if changed == 0 {
            return Err(StoreError::Conflict(format!("agent `{}`", row.agent_id)));
        }
        Ok(())
    }

    pub fn list_agents(&self) -> Result<Vec<AgentRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT agent_id, owner, purpose, groups_json, ceiling_json, created_at, created_by, revoked_at, revoked_by
             FROM agents ORDER BY agent_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
                r.get::<_, Option<String>>(7)?,
                r.get::<_, Option<String>>(8)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                agent_id,
                owner,
                purpose,
                groups,
                ceiling,
                created_at,
                created_by,
                revoked_at,
                revoked_by,
            ) = row?;
            let parse = |text: &str, what: &str| {
                serde_json::from_str::<Vec<String>>(text)
                    .map_err(|e| StoreError::Corrupt(format!("{what} of agent `{agent_id}`: {e}")))
            };
            out.push(AgentRow {
                groups: parse(&groups, "groups")?,
                ceiling: parse(&ceiling, "ceiling")?,
                agent_id,
                owner,
                purpose,
                created_at,
                created_by,
                revoked_at,
                revoked_by,
            });
        }
        Ok(out)
    }

    /// Marks an agent revoked (every token naming it stops working); `NotFound` if unknown.
    pub fn revoke_agent(&self, agent_id: &str, at: &str, by: &str) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE agents SET revoked_at = COALESCE(revoked_at, ?2), revoked_by = COALESCE(revoked_by, ?3) WHERE agent_id = ?1",
            params![agent_id, at, by],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("agent `{agent_id}`")));
        }
        Ok(())
    }

    // ---- approvals --------------------------------------------------------------------------

    pub fn insert_approval(&self, row: &ApprovalRow) -> Result<(), StoreError> {
        let chain = serde_json::to_string(&row.chain)
            .map_err(|e| StoreError::Corrupt(format!("chain of approval: {e}")))?;
        let changed = self.conn.execute(
            "INSERT OR IGNORE INTO approvals(approval_id, status, requester, chain_json, action, resource, approver_group, request_digest, summary_json, created_at, expires_at)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                row.approval_id,
                row.status.as_str(),
                row.requester,
                chain,
                row.action,
                row.resource,
                row.approver_group,
                row.request_digest,
                row.summary.to_string(),
                row.created_at,
                row.expires_at
            ],
        )?;
        if changed == 0 {
            return Err(StoreError::Conflict(format!(
                "approval `{}`",
                row.approval_id
            )));
        }
        Ok(())
    }

    const APPROVAL_COLUMNS: &'static str = "approval_id, status, requester, chain_json, action, resource, approver_group, request_digest, summary_json, created_at, expires_at, decided_by, decided_at, reason, signature, used_at, approver_key";

    fn approval_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApprovalRow> {
        let chain: String = r.get(3)?;
        let summary: String = r.get(8)?;
        let status: String = r.get(1)?;
        let status = ztai_core::ApprovalStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Text,
                format!("unknown approval status `{status}`").into(),
            )
        })?;
        Ok(ApprovalRow {
            approval_id: r.get(0)?,
            status,
            requester: r.get(2)?,
            chain: serde_json::from_str(&chain).unwrap_or_default(),
            action: r.get(4)?,
            resource: r.get(5)?,
            approver_group: r.get(6)?,
            request_digest: r.get(7)?,
            summary: serde_json::from_str(&summary).unwrap_or(serde_json::Value::Null),
            created_at: r.get(9)?,
            expires_at: r.get(10)?,
            decided_by: r.get(11)?,
            decided_at: r.get(12)?,
            reason: r.get(13)?,
            signature: r.get(14)?,
            used_at: r.get(15)?,
            approver_key: r.get(16)?,
        })
    }

    pub fn get_approval(&self, approval_id: &str) -> Result<Option<ApprovalRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                &format!(
                    "SELECT {} FROM approvals WHERE approval_id = ?1",
                    Self::APPROVAL_COLUMNS
                ),
                params![approval_id],
                Self::approval_row,
            )
            .optional()?)
    }

    /// Approvals newest first; `pending_at` keeps only those still pending at that time.
    pub fn list_approvals(
        &self,
        pending_at: Option<i64>,
        limit: usize,
    ) -> Result<Vec<ApprovalRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {} FROM approvals WHERE (?1 IS NULL OR (status = 'pending' AND expires_at > ?1)) ORDER BY created_at DESC, approval_id LIMIT ?2",
            Self::APPROVAL_COLUMNS
        ))?;
        let rows = stmt
            .query_map(params![pending_at, limit], Self::approval_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Records a decision on a request still pending and unexpired at `at`. Returns false when
    /// it was already decided or has expired: a decision is made once.
    #[allow(clippy::too_many_arguments)]
    pub fn decide_approval(
        &self,
        approval_id: &str,
        approved: bool,
        by: &str,
        at: i64,
        reason: &str,
        signature: &str,
        approver_key: Option<&str>,
    ) -> Result<bool, StoreError> {
        let changed = self.conn.execute(
            "UPDATE approvals SET status = ?2, decided_by = ?3, decided_at = ?4, reason = ?5, signature = ?6, approver_key = ?7
             WHERE approval_id = ?1 AND status = 'pending' AND expires_at > ?4",
            params![
                approval_id,
                ztai_core::ApprovalStatus::decided(approved).as_str(),
                by,
                at,
                reason,
                signature,
                approver_key
            ],
        )?;
        Ok(changed == 1)
    }

    /// Sweeps approvals: a request still pending past its deadline at `now` becomes `expired`
    /// (readers already treat it so; the row now says it too), and any request whose deadline
    /// is older than `forget_before` is deleted (its audit records remain). Returns how many
    /// rows were expired and deleted. One statement each, so concurrent decisions either see
    /// a row pending and unexpired, or not at all.
    pub fn sweep_approvals(
        &self,
        now: i64,
        forget_before: i64,
    ) -> Result<(usize, usize), StoreError> {
        let expired = self.conn.execute(
            "UPDATE approvals SET status = 'expired' WHERE status = 'pending' AND expires_at <= ?1",
            params![now],
        )?;
        let deleted = self.conn.execute(
            "DELETE FROM approvals WHERE expires_at < ?1 AND status != 'pending'",
            params![forget_before],
        )?;
        Ok((expired, deleted))
    }

    /// Spends an approval: true once, for an approved request, before `until`.
    pub fn use_approval(&self, approval_id: &str, at: i64, until: i64) -> Result<bool, StoreError> {
        let changed = self.conn.execute(
            "UPDATE approvals SET used_at = ?2 WHERE approval_id = ?1 AND status = 'approved' AND used_at IS NULL AND ?2 < ?3",
            params![approval_id, at, until],
        )?;
        Ok(changed == 1)
    }

    // ---- documents --------------------------------------------------------------------------

    /// Inserts or replaces documents in one transaction and bumps the registry's version.
    pub fn upsert_documents(&mut self, rows: &[DocumentRow]) -> Result<i64, StoreError> {
        let json = |v: &Vec<String>, id: &str| {
            serde_json::to_string(v)
                .map_err(|e| StoreError::Corrupt(format!("document `{id}`: {e}")))
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO documents(document_id, collections_json, classification, owner, readers_json, labels_json, updated_at, updated_by)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(document_id) DO UPDATE SET collections_json = excluded.collections_json,
                   classification = excluded.classification, owner = excluded.owner,
                   readers_json = excluded.readers_json, labels_json = excluded.labels_json,
                   updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            )?;
            for r in rows {
                stmt.execute(params![
                    r.document_id,
                    json(&r.collections, &r.document_id)?,
                    r.classification,
                    r.owner,
                    json(&r.readers, &r.document_id)?,
                    json(&r.labels, &r.document_id)?,
                    r.updated_at,
                    r.updated_by
                ])?;
            }
        }
        let version = Self::bump_documents_version(&tx)?;
        tx.commit()?;
        Ok(version)
    }

    fn bump_documents_version(tx: &rusqlite::Transaction<'_>) -> Result<i64, StoreError> {
        tx.execute(
            "INSERT INTO meta(key, value) VALUES(?1, '1') ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
            params![DOCUMENTS_VERSION_KEY],
        )?;
        let v: String = tx.query_row(
            "SELECT value FROM meta WHERE key = ?1",
            params![DOCUMENTS_VERSION_KEY],
            |r| r.get(0),
        )?;
        v.parse()
            .map_err(|_| StoreError::Corrupt(format!("{DOCUMENTS_VERSION_KEY} is `{v}`")))
    }

    /// Deletes a document; false when there was none.
    pub fn delete_document(&mut self, document_id: &str) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "DELETE FROM documents WHERE document_id = ?1",
            params![document_id],
        )?;
        if changed > 0 {
            Self::bump_documents_version(&tx)?;
        }
        tx.commit()?;
        Ok(changed > 0)
    }

    /// The registry's version: it changes whenever a document is written or deleted.
    pub fn documents_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .meta_get(DOCUMENTS_VERSION_KEY)?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// Documents in id order, after `after` (exclusive), at most `limit`.
    pub fn list_documents(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DocumentRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT document_id, collections_json, classification, owner, readers_json, labels_json, updated_at, updated_by
             FROM documents WHERE (?1 IS NULL OR document_id > ?1) ORDER BY document_id LIMIT ?2",
        )?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![after, limit], |r| {
                let list = |i: usize| -> rusqlite::Result<Vec<String>> {
                    let text: String = r.get(i)?;
                    serde_json::from_str(&text).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            i,
                            rusqlite::types::Type::Text,
                            Box::new(e),
                        )
                    })
                };
                Ok(DocumentRow {
                    document_id: r.get(0)?,
                    collections: list(1)?,
                    classification: r.get(2)?,
                    owner: r.get(3)?,
                    readers: list(4)?,
                    labels: list(5)?,
                    updated_at: r.get(6)?,
                    updated_by: r.get(7)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    // ---- approver keys ----------------------------------------------------------------------

    /// Registers an approver's verifier key; a key registered before (even revoked) is refused.
    pub fn insert_approver_key(&self, row: &ApproverKeyRow) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "INSERT OR IGNORE INTO approver_keys(key_id, principal, verifier_key, label, created_at, created_by, revoked_at, revoked_by)
             VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                row.key_id,
                row.principal,
                row.verifier_key,
                row.label,
                row.created_at,
                row.created_by,
                row.revoked_at,
                row.revoked_by
            ],
        )?;
        if changed == 0 {
            return Err(StoreError::Conflict(format!(
                "approver key `{}`",
                row.key_id
            )));
        }
        Ok(())
    }

    /// Approver keys, revoked ones included, oldest first; only `principal`'s when given.
    pub fn list_approver_keys(
        &self,
        principal: Option<&str>,
    ) -> Result<Vec<ApproverKeyRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT key_id, principal, verifier_key, label, created_at, created_by, revoked_at, revoked_by
             FROM approver_keys WHERE (?1 IS NULL OR principal = ?1) ORDER BY created_at, key_id",
        )?;
        let rows = stmt
            .query_map(params![principal], |r| {
                Ok(ApproverKeyRow {
                    key_id: r.get(0)?,
                    principal: r.get(1)?,
                    verifier_key: r.get(2)?,
                    label: r.get(3)?,
                    created_at: r.get(4)?,
                    created_by: r.get(5)?,
                    revoked_at: r.get(6)?,
                    revoked_by: r.get(7)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Revokes an approver key; revoking it again keeps the first revocation.
    pub fn revoke_approver_key(&self, key_id: &str, at: &str, by: &str) -> Result<(), StoreError> {
        let changed = self.conn.execute(
            "UPDATE approver_keys SET revoked_at = COALESCE(revoked_at, ?2), revoked_by = COALESCE(revoked_by, ?3) WHERE key_id = ?1",
            params![key_id, at, by],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("approver key `{key_id}`")));
        }
        Ok(())
    }

    // ---- revocations ------------------------------------------------------------------------

    /// Records a revocation; revoking something already revoked keeps the first record.
    pub fn insert_revocation(
        &self,
        kind: &str,
        subject: &str,
        at: &str,
        by: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO revocations(kind, subject, revoked_at, revoked_by, reason) VALUES(?1, ?2, ?3, ?4, ?5)",
            params![kind, subject, at, by, reason],
        )?;
        Ok(())
    }

    /// Revocations recorded after `after_seq`, oldest first, so a gateway can follow the table.
    pub fn revocations_after(&self, after_seq: i64) -> Result<Vec<RevocationRow>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT seq, kind, subject, revoked_at, revoked_by, reason FROM revocations WHERE seq > ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![after_seq], |r| {
            Ok(RevocationRow {
                seq: r.get(0)?,
                kind: r.get(1)?,
                subject: r.get(2)?,
                revoked_at: r.get(3)?,
                revoked_by: r.get(4)?,
                reason: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // ---- audit log --------------------------------------------------------------------------

    /// The last row of the audit chain (its `seq` and `hash`), if any.
    pub fn audit_head(&self) -> Result<Option<(i64, Vec<u8>)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT seq, hash FROM (
                   SELECT seq, hash FROM audit_log
                   UNION ALL SELECT seq, hash FROM audit_pruned)
                 ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Rows whose content was pruned, oldest first: `(seq, leaf_hash, hash)`; they always form
    /// the log's prefix.
    pub fn audit_pruned_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<PrunedRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, leaf_hash, hash FROM audit_pruned WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Removes the content of rows `..=last_seq`, keeping each one's leaf hash and chain hash
    /// (so every checkpoint and every later record still verifies) and recording the range.
    /// `leaves` gives the leaf hash of rows stored without one. One transaction.
    pub fn prune_audit(
        &mut self,
        last_seq: i64,
        leaves: &[(i64, Vec<u8>)],
        time: &str,
        reason: &str,
    ) -> Result<Option<(i64, i64)>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let first: Option<i64> = tx
            .query_row(
                "SELECT MIN(seq) FROM audit_log WHERE seq <= ?1",
                params![last_seq],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let Some(first) = first else {
            return Ok(None);
        };
        {
            let mut fill = tx.prepare_cached(
                "UPDATE audit_log SET leaf_hash = ?2 WHERE seq = ?1 AND leaf_hash IS NULL",
            )?;
            for (seq, leaf) in leaves {
                fill.execute(params![seq, leaf])?;
            }
        }
        tx.execute(
            "INSERT INTO audit_pruned(seq, leaf_hash, hash)
             SELECT seq, leaf_hash, hash FROM audit_log WHERE seq <= ?1 AND leaf_hash IS NOT NULL",
            params![last_seq],
        )?;
        let moved = tx.execute(
            "DELETE FROM audit_log WHERE seq <= ?1 AND leaf_hash IS NOT NULL",
            params![last_seq],
        )?;
        let left: i64 = tx.query_row(
            "SELECT COUNT(*) FROM audit_log WHERE seq <= ?1",
            params![last_seq],
            |r| r.get(0),
        )?;
        if left != 0 || moved == 0 {
            // Every pruned row needs its leaf hash; refuse rather than lose a commitment.
            return Err(StoreError::Corrupt(format!(
                "{left} rows up to {last_seq} have no leaf hash; nothing was pruned"
            )));
        }
        tx.execute(
            "INSERT INTO audit_prunes(first_seq, last_seq, time, reason) VALUES(?1, ?2, ?3, ?4)",
            params![first, last_seq, time, reason],
        )?;
        tx.commit()?;
        Ok(Some((first, last_seq)))
    }

    /// The last audit sequence number the export sink `sink` has delivered, if it ever ran.
    pub fn export_cursor(&self, sink: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT seq FROM export_cursors WHERE sink = ?1",
                params![sink],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Records that `sink` has delivered every record up to `seq` (durable on return).
    pub fn set_export_cursor(&self, sink: &str, seq: i64, at: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO export_cursors(sink, seq, updated_at) VALUES(?1, ?2, ?3)
             ON CONFLICT(sink) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at",
            params![sink, seq, at],
        )?;
        Ok(())
    }

    /// Every export sink's cursor: `(sink, seq, updated_at)`, by name.
    pub fn export_cursors(&self) -> Result<Vec<(String, i64, String)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT sink, seq, updated_at FROM export_cursors ORDER BY sink")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Forgets the cursor of a sink that no longer exists; returns whether there was one.
    pub fn drop_export_cursor(&self, sink: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .execute("DELETE FROM export_cursors WHERE sink = ?1", params![sink])?
            > 0)
    }

    /// Appends rows in one transaction: all become durable together or none do.
    pub fn append_audit_batch(&mut self, rows: &[AuditRow]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO audit_log(seq, record_id, time, principal, action, decision, record_json, prev_hash, hash, leaf_hash)
                 VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for r in rows {
                stmt.execute(params![
                    r.seq,
                    r.record_id,
                    r.time,
                    r.principal,
                    r.action,
                    r.decision,
                    r.record_json,
                    r.prev_hash,
                    r.hash,
                    r.leaf_hash
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Rows with `seq > after`, oldest first, at most `limit`.
    pub fn audit_rows_after(&self, after: i64, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, record_id, time, principal, action, decision, record_json, prev_hash, hash, leaf_hash
             FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, limit], audit_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The newest rows matching `filter`, newest first, at most `limit`.
    pub fn audit_search(
        &self,
        filter: &AuditFilter,
        limit: usize,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, record_id, time, principal, action, decision, record_json, prev_hash, hash, leaf_hash
             FROM audit_log
             WHERE (?1 IS NULL OR principal = ?1) AND (?2 IS NULL OR action = ?2)
               AND (?3 IS NULL OR decision = ?3) AND (?4 IS NULL OR time >= ?4)
               AND (?5 IS NULL OR time < ?5)
               AND (?6 IS NULL OR EXISTS (
                     SELECT 1 FROM json_each(record_json, '$.findings')
                     WHERE json_extract(value, '$.kind') = ?6 OR json_extract(value, '$.category') = ?6))
               AND seq > ?7
             ORDER BY seq DESC LIMIT ?8",
        )?;
        let rows = stmt.query_map(
            params![
                filter.principal,
                filter.action,
                filter.decision,
                filter.since,
                filter.until,
                filter.finding,
                filter.after_seq.unwrap_or(0),
                limit
            ],
            audit_row,
        )?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    pub fn audit_count(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get(0))?)
    }

    /// One row by sequence number.
    pub fn audit_row(&self, seq: i64) -> Result<Option<AuditRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT seq, record_id, time, principal, action, decision, record_json, prev_hash, hash, leaf_hash
                 FROM audit_log WHERE seq = ?1",
                params![seq],
                audit_row,
            )
            .optional()?)
    }

    /// Leaf material for rows with `seq > after`, oldest first, at most `limit`: the stored
    /// leaf hash, or the record JSON where none is stored.
    pub fn audit_leaves_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<(i64, AuditLeaf)>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, leaf_hash, CASE WHEN leaf_hash IS NULL THEN record_json END
             FROM audit_log WHERE seq > ?1
             UNION ALL SELECT seq, leaf_hash, NULL FROM audit_pruned WHERE seq > ?1
             ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, limit], |r| {
            let seq: i64 = r.get(0)?;
            let leaf = match r.get::<_, Option<Vec<u8>>>(1)? {
                Some(h) => AuditLeaf::Hash(h),
                None => AuditLeaf::Json(r.get::<_, Option<String>>(2)?.unwrap_or_default()),
            };
            Ok((seq, leaf))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Stores a checkpoint; one per tree size.
    pub fn insert_checkpoint(&self, c: &CheckpointRow) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT OR IGNORE INTO audit_checkpoints(tree_size, root, time, note, frontier) VALUES(?1, ?2, ?3, ?4, ?5)",
            params![c.tree_size, c.root, c.time, c.note, c.frontier],
        )?;
        Ok(())
    }

    /// Every checkpoint, smallest tree first.
    pub fn checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT tree_size, root, time, note, frontier FROM audit_checkpoints ORDER BY tree_size",
        )?;
        let rows = stmt.query_map([], checkpoint_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The checkpoint of the largest tree, if any.
    pub fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT tree_size, root, time, note, frontier FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1",
                [],
                checkpoint_row,
            )
            .optional()?)
    }

    // ---- policy sets ------------------------------------------------------------------------

    /// Records a policy set version unless the newest one already has this digest.
    /// Returns the version the set is stored under.
    pub fn record_policy_set(
        &self,
        digest: &str,
        source: &str,
        author: &str,
        created_at: &str,
        policies_json: &str,
    ) -> Result<i64, StoreError> {
        if let Some(latest) = self.latest_policy_set()?
            && latest.digest == digest
        {
            return Ok(latest.version);
        }
        self.conn.execute(
            "INSERT INTO policy_sets(digest, source, author, created_at, policies_json) VALUES(?1, ?2, ?3, ?4, ?5)",
            params![digest, source, author, created_at, policies_json],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Policy set versions, newest first, at most `limit`, from `before` (exclusive) down when given.
    pub fn list_policy_sets(
        &self,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<PolicySetRow>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut stmt = self.conn.prepare(
            "SELECT version, digest, source, author, created_at, policies_json FROM policy_sets WHERE (?1 IS NULL OR version < ?1) ORDER BY version DESC LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![before, limit], policy_set_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    pub fn get_policy_set(&self, version: i64) -> Result<Option<PolicySetRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT version, digest, source, author, created_at, policies_json FROM policy_sets WHERE version = ?1",
                params![version],
                policy_set_row,
            )
            .optional()?)
    }

    pub fn latest_policy_set(&self) -> Result<Option<PolicySetRow>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT version, digest, source, author, created_at, policies_json FROM policy_sets ORDER BY version DESC LIMIT 1",
                [],
                |r| {
                    Ok(PolicySetRow {
                        version: r.get(0)?,
                        digest: r.get(1)?,
                        source: r.get(2)?,
                        author: r.get(3)?,
                        created_at: r.get(4)?,
                        policies_json: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }
}

fn checkpoint_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CheckpointRow> {
    Ok(CheckpointRow {
        tree_size: r.get(0)?,
        root: r.get(1)?,
        time: r.get(2)?,
        note: r.get(3)?,
        frontier: r.get(4)?,
    })
}

/// What the store holds for one Merkle leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditLeaf {
    /// The stored leaf hash.
    Hash(Vec<u8>),
    /// The record JSON of a row stored without one.
    Json(String),
}

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        seq: r.get(0)?,
        record_id: r.get(1)?,
        time: r.get(2)?,
        principal: r.get(3)?,
        action: r.get(4)?,
        decision: r.get(5)?,
        record_json: r.get(6)?,
        prev_hash: r.get(7)?,
        hash: r.get(8)?,
        leaf_hash: r.get(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> KeyRow {
        KeyRow {
            key_id: id.into(),
            secret_hash: vec![1, 2, 3],
            principal_kind: "user".into(),
            principal_id: "alice".into(),
            groups: vec!["staff".into()],
            label: "test".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            revoked_at: None,
        }
    }

    #[test]
    fn keys_round_trip_and_revoke() {
        let s = Store::open_in_memory().unwrap();
        s.insert_key(&key("k1")).unwrap();
        assert!(matches!(
            s.insert_key(&key("k1")),
            Err(StoreError::Conflict(_))
        ));
        s.revoke_key("k1", "2026-01-02T00:00:00Z").unwrap();
        let keys = s.list_keys().unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].groups, vec!["staff".to_string()]);
        assert_eq!(keys[0].revoked_at.as_deref(), Some("2026-01-02T00:00:00Z"));
        assert!(matches!(
            s.revoke_key("nope", "x"),
            Err(StoreError::NotFound(_))
        ));
    }

    #[test]
    fn audit_batches_append_in_order_and_search_filters() {
        let mut s = Store::open_in_memory().unwrap();
        assert_eq!(s.audit_head().unwrap(), None);
        let rows: Vec<AuditRow> = (1..=3)
            .map(|i| AuditRow {
                seq: i,
                record_id: format!("r{i}"),
                time: "t".into(),
                principal: if i == 2 {
                    "user:bob".into()
                } else {
                    "user:alice".into()
                },
                action: "invoke".into(),
                decision: if i == 3 {
                    "deny".into()
                } else {
                    "allow".into()
                },
                record_json: format!("{{\"n\":{i}}}"),
                prev_hash: vec![0],
                hash: vec![i as u8],
                leaf_hash: (i != 2).then(|| vec![i as u8; 32]),
            })
            .collect();
        s.append_audit_batch(&rows).unwrap();
        assert_eq!(
            s.audit_leaves_after(0, 10).unwrap(),
            vec![
                (1, AuditLeaf::Hash(vec![1; 32])),
                (2, AuditLeaf::Json("{\"n\":2}".into())),
                (3, AuditLeaf::Hash(vec![3; 32])),
            ]
        );
        assert_eq!(s.audit_row(2).unwrap().unwrap().record_id, "r2");
        assert_eq!(s.audit_row(9).unwrap(), None);
        assert_eq!(s.audit_head().unwrap(), Some((3, vec![3])));
        assert_eq!(s.audit_rows_after(1, 10).unwrap().len(), 2);
        let by = |f: AuditFilter| -> Vec<i64> {
            s.audit_search(&f, 10)
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect()
        };
        let alice = AuditFilter {
            principal: Some("user:alice".into()),
            ..AuditFilter::default()
        };
        assert_eq!(by(alice.clone()), vec![3, 1]);
        let denied = AuditFilter {
            decision: Some("deny".into()),
            ..AuditFilter::default()
        };
        assert_eq!(by(denied), vec![3]);
        assert_eq!(
            by(AuditFilter {
                after_seq: Some(1),
                ..alice
            }),
            vec![3]
        );
        // A duplicate sequence number is refused and the batch leaves nothing behind.
        let dup = vec![rows[0].clone()];
        assert!(s.append_audit_batch(&dup).is_err());
        assert_eq!(s.audit_count().unwrap(), 3);
    }

    fn approval(id: &str, created: i64, expires: i64) -> ApprovalRow {
        ApprovalRow {
            approval_id: id.into(),
            status: ztai_core::ApprovalStatus::Pending,
            requester: "user:demo".into(),
            chain: vec!["user:demo".into()],
            action: "invoke".into(),
            resource: "Model::\"m\"".into(),
            approver_group: "admins".into(),
            request_digest: "d".into(),
            summary: serde_json::json!({"model": "m"}),
            created_at: created,
            expires_at: expires,
            decided_by: None,
            decided_at: None,
            reason: None,
            signature: None,
            used_at: None,
            approver_key: None,
        }
    }

    #[test]
    fn documents_are_upserted_listed_in_pages_deleted_and_versioned() {
        let mut s = Store::open_in_memory().unwrap();
        assert_eq!(s.documents_version().unwrap(), 0);
        let doc = |id: &str, class: &str| DocumentRow {
            document_id: id.into(),
            collections: vec!["wiki".into()],
            classification: class.into(),
            owner: String::new(),
            readers: vec!["staff".into()],
            labels: vec![],
            updated_at: "t".into(),
            updated_by: "user:admin".into(),
        };
        let v1 = s
            .upsert_documents(&[doc("b", "internal"), doc("a", "public"), doc("c", "public")])
            .unwrap();
        assert_eq!(v1, 1);
        let v2 = s.upsert_documents(&[doc("a", "restricted")]).unwrap();
        assert_eq!(v2, 2);
        let page = s.list_documents(None, 2).unwrap();
        assert_eq!(
            page.iter()
                .map(|d| d.document_id.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(page[0].classification, "restricted", "replaced");
        assert_eq!(page[0].readers, ["staff"]);
        let rest = s.list_documents(Some("b"), 10).unwrap();
        assert_eq!(rest.len(), 1);
        assert!(s.delete_document("a").unwrap());
        assert!(!s.delete_document("a").unwrap());
        assert_eq!(
            s.documents_version().unwrap(),
            3,
            "a no-op delete is not a change"
        );
        assert_eq!(s.list_documents(None, 10).unwrap().len(), 2);
    }

    #[test]
    fn approver_keys_are_registered_once_listed_by_principal_and_revoked() {
        let s = Store::open_in_memory().unwrap();
        let key = |id: &str, principal: &str, at: &str| ApproverKeyRow {
            key_id: id.into(),
            principal: principal.into(),
            verifier_key: format!("{id}+AQ=="),
            label: "laptop".into(),
            created_at: at.into(),
            created_by: "user:admin".into(),
            revoked_at: None,
            revoked_by: None,
        };
        s.insert_approver_key(&key("user:carol+01", "user:carol", "t1"))
            .unwrap();
        s.insert_approver_key(&key("user:carol+02", "user:carol", "t2"))
            .unwrap();
        s.insert_approver_key(&key("user:dave+01", "user:dave", "t3"))
            .unwrap();
        assert!(matches!(
            s.insert_approver_key(&key("user:carol+01", "user:carol", "t4")),
            Err(StoreError::Conflict(_))
        ));
        let ids = |p: Option<&str>| -> Vec<String> {
            s.list_approver_keys(p)
                .unwrap()
                .into_iter()
                .map(|k| k.key_id)
                .collect()
        };
        assert_eq!(ids(Some("user:carol")), ["user:carol+01", "user:carol+02"]);
        assert_eq!(ids(None).len(), 3);
        assert!(ids(Some("user:nobody")).is_empty());
        s.revoke_approver_key("user:carol+01", "t5", "user:admin")
            .unwrap();
        s.revoke_approver_key("user:carol+01", "t6", "user:other")
            .unwrap();
        let carol = s.list_approver_keys(Some("user:carol")).unwrap();
        assert_eq!(carol[0].revoked_at.as_deref(), Some("t5"));
        assert_eq!(carol[0].revoked_by.as_deref(), Some("user:admin"));
        assert_eq!(carol[1].revoked_at, None);
        assert!(matches!(
            s.revoke_approver_key("user:nobody+00", "t", "x"),
            Err(StoreError::NotFound(_))
        ));
        // A revoked key cannot be registered again (its id stays taken).
        assert!(
            s.insert_approver_key(&key("user:carol+01", "user:carol", "t7"))
                .is_err()
        );
    }

    #[test]
    fn a_version_5_store_gains_the_approver_key_column_and_keeps_its_approvals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v5.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE approvals (approval_id TEXT PRIMARY KEY, status TEXT NOT NULL, requester TEXT NOT NULL,
                   chain_json TEXT NOT NULL, action TEXT NOT NULL, resource TEXT NOT NULL, approver_group TEXT NOT NULL,
                   request_digest TEXT NOT NULL, summary_json TEXT NOT NULL, created_at INTEGER NOT NULL,
                   expires_at INTEGER NOT NULL, decided_by TEXT, decided_at INTEGER, reason TEXT, signature TEXT,
                   used_at INTEGER);
                 INSERT INTO approvals VALUES('apr_1', 'approved', 'user:a', '[]', 'invoke', 'model:m', 'admins',
                   'd', '{}', 1, 100, 'user:b', 2, 'ok', 'note', NULL);
                 PRAGMA user_version = 5;",
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let old = s.get_approval("apr_1").unwrap().unwrap();
        assert_eq!((old.status.as_str(), old.approver_key), ("approved", None));
        s.insert_approval(&approval("a2", 10, 200)).unwrap();
        assert!(
            s.decide_approval("a2", true, "user:b", 20, "", "n", Some("user:b+01"))
                .unwrap()
        );
        assert_eq!(
            s.get_approval("a2")
                .unwrap()
                .unwrap()
                .approver_key
                .as_deref(),
            Some("user:b+01")
        );
        drop(s);
        // Opening it again does not try to add the column twice.
        assert!(Store::open(&path).is_ok());
    }

    #[test]
    fn expired_approvals_are_swept_and_old_ones_forgotten() {
        let s = Store::open_in_memory().unwrap();
        s.insert_approval(&approval("old", 10, 20)).unwrap();
        s.insert_approval(&approval("late", 100, 150)).unwrap();
        s.insert_approval(&approval("open", 100, 300)).unwrap();
        s.insert_approval(&approval("decided", 100, 300)).unwrap();
        assert!(
            s.decide_approval("decided", false, "user:root", 120, "no", "sig", None)
                .unwrap()
        );
        // At 200: `old` and `late` have expired; nothing is old enough to forget.
        assert_eq!(s.sweep_approvals(200, 0).unwrap(), (2, 0));
        let status = |id: &str| s.get_approval(id).unwrap().map(|r| r.status.as_str());
        assert_eq!(status("old"), Some("expired"));
        assert_eq!(status("late"), Some("expired"));
        assert_eq!(status("open"), Some("pending"));
        // An expired request can no longer be decided.
        assert!(
            !s.decide_approval("late", true, "user:root", 200, "ok", "sig", None)
                .unwrap()
        );
        // Sweeping again changes nothing; forgetting before 100 deletes only `old`.
        assert_eq!(s.sweep_approvals(200, 100).unwrap(), (0, 1));
        assert_eq!(status("old"), None);
        // A pending request is never deleted, whatever its age; a decided one is.
        assert_eq!(s.sweep_approvals(299, 1000).unwrap(), (0, 2));
        assert_eq!(status("open"), Some("pending"));
        assert_eq!(status("decided"), None);
    }

    #[test]
    fn approvals_are_decided_once_before_expiry_and_spent_once() {
        let s = Store::open_in_memory().unwrap();
        s.insert_approval(&approval("a1", 100, 200)).unwrap();
        s.insert_approval(&approval("a2", 110, 150)).unwrap();
        assert!(matches!(
            s.insert_approval(&approval("a1", 1, 2)),
            Err(StoreError::Conflict(_))
        ));
        // Pending at 120: both; at 160: a2 has expired.
        assert_eq!(s.list_approvals(Some(120), 10).unwrap().len(), 2);
        let pending: Vec<String> = s
            .list_approvals(Some(160), 10)
            .unwrap()
            .into_iter()
            .map(|r| r.approval_id)
            .collect();
        assert_eq!(pending, ["a1"]);
        // Deciding an expired request fails; so does deciding twice.
        assert!(
            !s.decide_approval("a2", true, "user:root", 150, "ok", "sig", None)
                .unwrap()
        );
        assert!(
            s.decide_approval(
                "a1",
                true,
                "user:root",
                130,
                "ok",
                "sig",
                Some("user:root+0a0b0c0d")
            )
            .unwrap()
        );
        assert!(
            !s.decide_approval("a1", false, "user:other", 131, "no", "sig", None)
                .unwrap()
        );
        let a1 = s.get_approval("a1").unwrap().unwrap();
        assert_eq!(
            (a1.status.as_str(), a1.decided_by.as_deref()),
            ("approved", Some("user:root"))
        );
        assert_eq!(a1.chain, ["user:demo"]);
        assert_eq!(a1.approver_key.as_deref(), Some("user:root+0a0b0c0d"));
        // Spent once, and not after its deadline.
        assert!(!s.use_approval("a1", 500, 400).unwrap());
        assert!(s.use_approval("a1", 140, 400).unwrap());
        assert!(!s.use_approval("a1", 141, 400).unwrap());
        assert!(!s.use_approval("a2", 140, 400).unwrap(), "never approved");
        assert!(s.get_approval("nope").unwrap().is_none());
    }

    #[test]
    fn policy_sets_are_versioned_by_digest() {
        let s = Store::open_in_memory().unwrap();
        let v1 = s.record_policy_set("d1", "dir", "ops", "t", "{}").unwrap();
        let again = s.record_policy_set("d1", "dir", "ops", "t", "{}").unwrap();
        let v2 = s.record_policy_set("d2", "dir", "ops", "t", "{}").unwrap();
        assert_eq!(v1, again);
        assert!(v2 > v1);
        assert_eq!(s.latest_policy_set().unwrap().unwrap().digest, "d2");
        let all: Vec<i64> = s
            .list_policy_sets(None, 10)
            .unwrap()
            .iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(all, [v2, v1], "newest first, the repeat not stored twice");
        assert_eq!(s.list_policy_sets(Some(v2), 10).unwrap().len(), 1);
        assert_eq!(s.get_policy_set(v1).unwrap().unwrap().digest, "d1");
        assert!(s.get_policy_set(999).unwrap().is_none());
    }

    #[test]
    fn reopening_a_file_keeps_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ztai.db");
        {
            let s = Store::open(&path).unwrap();
            s.meta_set("a", "1").unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.meta_get("a").unwrap().as_deref(), Some("1"));
        s.meta_set("a", "2").unwrap();
        assert_eq!(s.meta_get("a").unwrap().as_deref(), Some("2"));
    }

    #[test]
    fn agents_and_revocations_round_trip() {
        let s = Store::open_in_memory().unwrap();
        let row = AgentRow {
            agent_id: "support-bot".into(),
            owner: "alice".into(),
            purpose: "answer tickets".into(),
            groups: vec!["agents".into()],
            ceiling: vec!["model:small".into(), "tool:orders.lookup".into()],
            created_at: "2026-11-22T00:00:00Z".into(),
            created_by: "user:admin".into(),
            revoked_at: None,
            revoked_by: None,
        };
        s.insert_agent(&row).unwrap();
        assert!(matches!(s.insert_agent(&row), Err(StoreError::Conflict(_))));
        assert_eq!(s.list_agents().unwrap(), vec![row.clone()]);
        s.revoke_agent("support-bot", "2026-11-22T01:00:00Z", "user:admin")
            .unwrap();
        s.revoke_agent("support-bot", "2026-11-22T02:00:00Z", "user:other")
            .unwrap();
        let got = s.list_agents().unwrap();
        assert_eq!(
            got.first().and_then(|a| a.revoked_at.clone()).as_deref(),
            Some("2026-11-22T01:00:00Z")
        );
        assert!(matches!(
            s.revoke_agent("nobody", "t", "u"),
            Err(StoreError::NotFound(_))
        ));
        s.insert_revocation("user", "bob", "t1", "user:admin", "left")
            .unwrap();
        s.insert_revocation("token", "abcd", "t2", "user:admin", "")
            .unwrap();
        s.insert_revocation("user", "bob", "t3", "user:admin", "again")
            .unwrap();
        let all = s.revocations_after(0).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all.first().map(|r| r.reason.as_str()), Some("left"));
        let last = all.first().map(|r| r.seq).unwrap();
        assert_eq!(s.revocations_after(last).unwrap().len(), 1);
    }

    #[test]
    fn export_cursors_persist_move_and_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ztai.db");
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(s.export_cursor("siem").unwrap(), None);
            s.set_export_cursor("siem", 10, "t1").unwrap();
            s.set_export_cursor("siem", 25, "t2").unwrap();
            s.set_export_cursor("files", 3, "t3").unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.export_cursor("siem").unwrap(), Some(25));
        assert_eq!(
            s.export_cursors().unwrap(),
            vec![
                ("files".into(), 3, "t3".into()),
                ("siem".into(), 25, "t2".into())
            ]
        );
        assert!(s.drop_export_cursor("files").unwrap());
        assert!(!s.drop_export_cursor("files").unwrap());
        assert_eq!(s.export_cursor("files").unwrap(), None);
    }

    #[test]
    fn a_version_1_store_is_migrated_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE audit_log (seq INTEGER PRIMARY KEY, record_id TEXT NOT NULL, time TEXT NOT NULL,
                   principal TEXT NOT NULL, action TEXT NOT NULL, decision TEXT NOT NULL,
                   record_json TEXT NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL);
                 INSERT INTO audit_log VALUES(1, 'r1', 't', 'user:a', 'invoke', 'allow', '{}', x'00', x'01');
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.audit_leaves_after(0, 10).unwrap(),
            vec![(1, AuditLeaf::Json("{}".into()))]
        );
        assert!(s.latest_checkpoint().unwrap().is_none());
        let c = CheckpointRow {
            tree_size: 1,
            root: vec![9; 32],
            time: "t".into(),
            note: "n".into(),
            frontier: vec![9; 32],
        };
        s.insert_checkpoint(&c).unwrap();
        assert_eq!(s.latest_checkpoint().unwrap(), Some(c.clone()));
        assert_eq!(s.checkpoints().unwrap(), vec![c]);
    }

    #[test]
    fn audit_search_filters_by_action_time_and_finding() {
        let mut s = Store::open_in_memory().unwrap();
        let row = |seq: i64, action: &str, time: &str, findings: &str| AuditRow {
            seq,
            record_id: format!("r{seq}"),
            time: time.into(),
            principal: "user:a".into(),
            action: action.into(),
            decision: "allow".into(),
            record_json: format!("{{\"findings\":{findings}}}"),
            prev_hash: vec![0],
            hash: vec![0],
            leaf_hash: None,
        };
        s.append_audit_batch(&[
            row(
                1,
                "invoke",
                "2026-11-22T01:00:00.000000Z",
                r#"[{"kind":"email","category":"pii"}]"#,
            ),
            row(2, "admin", "2026-11-22T02:00:00.000000Z", "[]"),
            row(
                3,
                "invoke",
                "2026-11-22T03:00:00.000000Z",
                r#"[{"kind":"aws_access_key_id","category":"secret"}]"#,
            ),
        ])
        .unwrap();
        let by = |f: AuditFilter| -> Vec<i64> {
            s.audit_search(&f, 10)
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect()
        };
        let f = AuditFilter::default;
        assert_eq!(
            by(AuditFilter {
                action: Some("invoke".into()),
                ..f()
            }),
            vec![3, 1]
        );
        assert_eq!(
            by(AuditFilter {
                since: Some("2026-11-22T01:30:00.000000Z".into()),
                until: Some("2026-11-22T03:00:00.000000Z".into()),
                ..f()
            }),
            vec![2]
        );
        assert_eq!(
            by(AuditFilter {
                finding: Some("email".into()),
                ..f()
            }),
            vec![1]
        );
        assert_eq!(
            by(AuditFilter {
                finding: Some("secret".into()),
                ..f()
            }),
            vec![3]
        );
        assert_eq!(
            by(AuditFilter {
                finding: Some("jwt".into()),
                ..f()
            }),
            Vec::<i64>::new()
        );
    }
}
