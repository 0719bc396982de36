//! Storage for ZTAI: the embedded SQLite backend.
//!
//! Everything durable goes through this crate — API key hashes, registered agents, revocations, the audit log and
//! versioned policy sets — so no other crate knows which database runs. Calls are synchronous: the
//! gateway keeps them off its async threads (a dedicated writer thread for the audit log,
//! `spawn_blocking` for control-plane calls). SQLite runs in WAL mode so readers never block the
//! audit writer.

mod mcp;
mod registry;
mod sqlite;

pub use mcp::{McpSessionRow, McpToolRow};
pub use registry::{
    ModelRow, ModelVersionRow, RevokedSignerRow, VerificationEvidence, VersionMove,
};

pub use sqlite::{
    AgentRow, ApprovalRow, ApproverKeyRow, AuditFilter, AuditLeaf, AuditRow, CheckpointRow,
    DOCUMENTS_VERSION_KEY, DocumentRow, KeyRow, PolicySetRow, PrunedRow, RevocationRow, Store,
};

/// Everything that can go wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot open the store at `{path}`: {source}; check that the directory exists and is writable"
    )]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("store query failed: {0}; the store may be full, locked or corrupt")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Conflict(String),
    /// A change the rules do not allow in the current state (the message says why).
    #[error("{0}")]
    Refused(String),
}
