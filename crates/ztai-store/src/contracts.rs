//! What a backend must promise, one trait per domain, so the gateway and the CLI name the store's
//! duties and never its database.
//!
//! Every method is synchronous and may block (callers on an async runtime run it on a blocking
//! thread). Unless a method says otherwise:
//! - **durable**: once a write returns `Ok`, it survives a crash of the process;
//! - **atomic**: a write that touches several rows applies all of them or none, and a reader
//!   never sees half of it;
//! - **concurrent writers**: any number of callers (threads, processes, and later replicas) may
//!   write at once; where a rule must hold across them ("decided once", "spent once", "labels are
//!   never lost") the method says so and the backend enforces it in one statement or transaction,
//!   never by a read followed by a write in the caller;
//! - **errors**: `NotFound`/`Conflict`/`Refused` describe the request; any other error means the
//!   store failed and the caller must fail closed.
//!
//! The traits are declared through `contract!`, which also forwards each method of the pooled
//! SQLite backend to a pooled connection, so a method's signature is written once here and once
//! where SQLite implements it. `Backend` is all of them: what the gateway holds.
//! `crate::conformance` checks these promises against any backend.

use crate::{
    AgentRow, ApprovalRow, ApproverKeyRow, AuditFilter, AuditLeaf, AuditRow, CheckpointRow,
    DocumentRow, KeyRow, McpSessionRow, McpToolRow, ModelRow, ModelVersionRow, PolicySetRow,
    PrunedRow, RevocationRow, RevokedSignerRow, StoreError, VersionMove,
};
use std::collections::BTreeSet;

/// Declares a domain trait and implements it for `crate::Sqlite` by running the method of the
/// same name on a connection taken from the pool.
macro_rules! contract {
    (
        $(#[$tmeta:meta])*
        pub trait $trait:ident {
            $(
                $(#[$mmeta:meta])*
                fn $name:ident(&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty;
            )*
        }
    ) => {
        $(#[$tmeta])*
        pub trait $trait: Send + Sync {
            $(
                $(#[$mmeta])*
                fn $name(&self $(, $arg: $ty)*) -> $ret;
            )*
        }

        impl $trait for crate::Sqlite {
            $(
                $(#[$mmeta])*
                #[allow(unused_mut)]
                fn $name(&self $(, $arg: $ty)*) -> $ret {
                    let mut conn = self.conn()?;
                    conn.$name($($arg),*)
                }
            )*
        }
    };
}

contract! {
    /// Small named values the gateway keeps across restarts (the instance id, versions).
    /// Last writer wins.
    pub trait MetaStore {
        fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError>;
        fn meta_set(&self, key: &str, value: &str) -> Result<(), StoreError>;
    }
}

contract! {
    /// API keys: the hash of each secret, never the secret. A key id is inserted once
    /// (`Conflict` after); revocation is permanent and keeps its first time.
    pub trait KeyStore {
        fn insert_key(&self, row: &KeyRow) -> Result<(), StoreError>;
        /// Every key, revoked ones included, oldest first.
        fn list_keys(&self) -> Result<Vec<KeyRow>, StoreError>;
        /// `NotFound` for an unknown id.
        fn revoke_key(&self, key_id: &str, at: &str) -> Result<(), StoreError>;
    }
}

contract! {
    /// Agents and the revocation feed every gateway follows. An agent id is inserted once;
    /// revocations are append-only, numbered in the order they were recorded, and revoking
    /// something twice keeps the first record, so followers reading `revocations_after` in a
    /// loop see each revocation exactly once.
    pub trait AgentStore {
        fn insert_agent(&self, row: &AgentRow) -> Result<(), StoreError>;
        fn list_agents(&self) -> Result<Vec<AgentRow>, StoreError>;
        /// Every token naming the agent stops working; `NotFound` if unknown.
        fn revoke_agent(&self, agent_id: &str, at: &str, by: &str) -> Result<(), StoreError>;
        fn insert_revocation(
            &self,
            kind: &str,
            subject: &str,
            at: &str,
            by: &str,
            reason: &str,
        ) -> Result<(), StoreError>;
        /// Revocations recorded after `after_seq`, oldest first.
        fn revocations_after(&self, after_seq: i64) -> Result<Vec<RevocationRow>, StoreError>;
    }
}

contract! {
    /// Requests held for a human, and the keys approvers sign with. A decision is made once and
    /// an approval is spent once, whatever the number of concurrent callers: each is one
    /// conditional write, and the loser is told `false`.
    pub trait ApprovalStore {
        fn insert_approval(&self, row: &ApprovalRow) -> Result<(), StoreError>;
        fn get_approval(&self, approval_id: &str) -> Result<Option<ApprovalRow>, StoreError>;
        /// Newest first; `pending_at` keeps only those still pending at that time.
        fn list_approvals(
            &self,
            pending_at: Option<i64>,
            limit: usize,
        ) -> Result<Vec<ApprovalRow>, StoreError>;
        /// True when this call decided a request still pending and unexpired at `at`.
        #[allow(clippy::too_many_arguments)]
        fn decide_approval(
            &self,
            approval_id: &str,
            approved: bool,
            by: &str,
            at: i64,
            reason: &str,
            signature: &str,
            approver_key: Option<&str>,
        ) -> Result<bool, StoreError>;
        /// Expires pending requests past their deadline and deletes any older than
        /// `forget_before`; returns (expired, deleted).
        fn sweep_approvals(&self, now: i64, forget_before: i64)
            -> Result<(usize, usize), StoreError>;
        /// True once, for an approved request, before `until`.
        fn use_approval(&self, approval_id: &str, at: i64, until: i64) -> Result<bool, StoreError>;
        /// A key registered before (even revoked) is a `Conflict`.
        fn insert_approver_key(&self, row: &ApproverKeyRow) -> Result<(), StoreError>;
        fn list_approver_keys(
            &self,
            principal: Option<&str>,
        ) -> Result<Vec<ApproverKeyRow>, StoreError>;
        fn revoke_approver_key(&self, key_id: &str, at: &str, by: &str) -> Result<(), StoreError>;
    }
}

contract! {
    /// The documents registry. A bulk upsert applies whole or not at all and moves the
    /// registry's version, which changes on every write so replicas know to reload.
    pub trait DocumentStore {
        /// Returns the registry's new version.
        fn upsert_documents(&self, rows: &[DocumentRow]) -> Result<i64, StoreError>;
        /// False when there was none.
        fn delete_document(&self, document_id: &str) -> Result<bool, StoreError>;
        fn documents_version(&self) -> Result<i64, StoreError>;
        /// In id order, after `after` (exclusive), at most `limit`.
        fn list_documents(
            &self,
            after: Option<&str>,
            limit: usize,
        ) -> Result<Vec<DocumentRow>, StoreError>;
    }
}

contract! {
    /// The model registry. Every lifecycle move is one transaction checked against the stored
    /// state: deploying supersedes the model's deployed version atomically (readers never see
    /// two deployed, or none). Revoking a signer records the signer first, so no later
    /// verification accepts it, then revokes each version it signed, one move each.
    pub trait RegistryStore {
        fn create_model(&self, row: &ModelRow) -> Result<(), StoreError>;
        fn registered_model(&self, name: &str) -> Result<Option<ModelRow>, StoreError>;
        fn registered_models(&self) -> Result<Vec<ModelRow>, StoreError>;
        /// `NotFound` when the model was not created first.
        fn register_model_version(&self, row: &ModelVersionRow) -> Result<(), StoreError>;
        fn model_version(
            &self,
            model: &str,
            version: &str,
        ) -> Result<Option<ModelVersionRow>, StoreError>;
        fn model_versions(&self, model: Option<&str>) -> Result<Vec<ModelVersionRow>, StoreError>;
        /// Returns the versions that changed, the named one first; `Conflict` for a move the
        /// lifecycle does not allow from the stored state.
        fn transition_model_version(
            &self,
            m: &VersionMove<'_>,
        ) -> Result<Vec<ModelVersionRow>, StoreError>;
        fn note_model_version(
            &self,
            model: &str,
            version: &str,
            reason: &str,
            scan: Option<&serde_json::Value>,
            by: &str,
            now: i64,
        ) -> Result<(), StoreError>;
        /// Returns the versions revoked.
        fn revoke_model_signer(
            &self,
            fingerprint: &str,
            reason: &str,
            by: &str,
            now: i64,
        ) -> Result<Vec<ModelVersionRow>, StoreError>;
        fn revoked_model_signer(
            &self,
            fingerprints: &[String],
        ) -> Result<Option<RevokedSignerRow>, StoreError>;
        fn revoked_model_signers(&self) -> Result<Vec<RevokedSignerRow>, StoreError>;
    }
}

contract! {
    /// MCP tool pins and sealed sessions. Approving pins exactly the digest the administrator
    /// reviewed (false if the server has offered another since). Taint only grows: concurrent
    /// additions to one session all survive.
    pub trait McpStore {
        fn mcp_tool(&self, server: &str, tool: &str) -> Result<Option<McpToolRow>, StoreError>;
        fn put_mcp_tool(&self, row: &McpToolRow) -> Result<(), StoreError>;
        fn approve_mcp_tool(
            &self,
            server: &str,
            tool: &str,
            digest: &str,
            by: &str,
            at: i64,
        ) -> Result<bool, StoreError>;
        fn block_mcp_tool(
            &self,
            server: &str,
            tool: &str,
            reason: &str,
            at: i64,
        ) -> Result<bool, StoreError>;
        fn list_mcp_tools(&self, server: Option<&str>) -> Result<Vec<McpToolRow>, StoreError>;
        fn insert_mcp_session(&self, row: &McpSessionRow) -> Result<(), StoreError>;
        fn mcp_session(&self, session_hash: &str) -> Result<Option<McpSessionRow>, StoreError>;
        /// Returns the session's whole set after adding `labels`.
        fn add_mcp_taint(
            &self,
            session_hash: &str,
            labels: &BTreeSet<String>,
        ) -> Result<BTreeSet<String>, StoreError>;
        fn end_mcp_session(&self, session_hash: &str, at: i64) -> Result<bool, StoreError>;
        fn prune_mcp_sessions(&self, before: i64) -> Result<usize, StoreError>;
    }
}

contract! {
    /// Versions of the policy set in force. Recording the digest the newest version already has
    /// returns that version instead of adding one; versions only grow.
    pub trait PolicySetStore {
        fn record_policy_set(
            &self,
            digest: &str,
            source: &str,
            author: &str,
            created_at: &str,
            policies_json: &str,
        ) -> Result<i64, StoreError>;
        /// Newest first, at most `limit`, from `before` (exclusive) down when given.
        fn list_policy_sets(
            &self,
            before: Option<i64>,
            limit: usize,
        ) -> Result<Vec<PolicySetRow>, StoreError>;
        fn get_policy_set(&self, version: i64) -> Result<Option<PolicySetRow>, StoreError>;
        fn latest_policy_set(&self) -> Result<Option<PolicySetRow>, StoreError>;
    }
}

contract! {
    /// The audit log as readers, exporters and retention see it. Rows are appended only by the
    /// log's single writer (`Backend::audit_writer`), so readers see a chain that only grows at its
    /// head and shrinks only at its start, by `prune_audit`. Readers never block the writer.
    pub trait AuditStore {
        /// The last row of the chain (its `seq` and `hash`), if any.
        fn audit_head(&self) -> Result<Option<(i64, Vec<u8>)>, StoreError>;
        fn audit_count(&self) -> Result<i64, StoreError>;
        fn audit_row(&self, seq: i64) -> Result<Option<AuditRow>, StoreError>;
        /// Rows with `seq > after`, oldest first, at most `limit`.
        fn audit_rows_after(&self, after: i64, limit: usize) -> Result<Vec<AuditRow>, StoreError>;
        /// The newest rows matching `filter`, newest first, at most `limit`. The searchable
        /// columns are copies: callers must check each row against its hashed record.
        fn audit_search(&self, filter: &AuditFilter, limit: usize)
            -> Result<Vec<AuditRow>, StoreError>;
        /// Leaf material for rows with `seq > after`, oldest first, at most `limit`.
        fn audit_leaves_after(
            &self,
            after: i64,
            limit: usize,
        ) -> Result<Vec<(i64, AuditLeaf)>, StoreError>;
        /// Rows whose content was pruned, oldest first; they always form the log's prefix.
        fn audit_pruned_after(&self, after: i64, limit: usize)
            -> Result<Vec<PrunedRow>, StoreError>;
        /// Removes the content of rows `..=last_seq`, keeping their hashes, in one transaction.
        fn prune_audit(
            &self,
            last_seq: i64,
            leaves: &[(i64, Vec<u8>)],
            time: &str,
            reason: &str,
        ) -> Result<Option<(i64, i64)>, StoreError>;
        /// Every signed checkpoint, smallest tree first.
        fn checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError>;
        fn latest_checkpoint(&self) -> Result<Option<CheckpointRow>, StoreError>;
        /// The last sequence number export sink `sink` delivered, if it ever ran.
        fn export_cursor(&self, sink: &str) -> Result<Option<i64>, StoreError>;
        /// Durable on return: a sink never delivers a record twice across a restart.
        fn set_export_cursor(&self, sink: &str, seq: i64, at: &str) -> Result<(), StoreError>;
        /// `(sink, seq, updated_at)`, by name.
        fn export_cursors(&self) -> Result<Vec<(String, i64, String)>, StoreError>;
        fn drop_export_cursor(&self, sink: &str) -> Result<bool, StoreError>;
    }
}

/// Every domain: what the gateway and the offline commands hold.
pub trait Backend:
    std::fmt::Debug
    + MetaStore
    + KeyStore
    + AgentStore
    + ApprovalStore
    + DocumentStore
    + RegistryStore
    + McpStore
    + PolicySetStore
    + AuditStore
{
    /// Whether the backend answers a trivial query now (readiness probes).
    fn ping(&self) -> Result<(), StoreError>;
    /// Opens the audit log's one writer; `WriterBusy` while another (in any process) is open.
    fn audit_writer(&self) -> Result<Box<dyn crate::AuditWriter>, StoreError>;
}
