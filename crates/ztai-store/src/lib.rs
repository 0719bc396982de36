//! Storage for ZTAI: the domain traits every backend implements, and the embedded SQLite backend.
//!
//! Everything durable goes through this crate (API key hashes, agents and revocations, approvals,
//! the registries, policy set versions, the audit log) so no other crate knows which database
//! runs: they hold a `dyn Backend` or the narrowest domain trait (`contracts`). Calls are
//! synchronous: the gateway keeps them off its async threads (a dedicated writer thread for the
//! audit log, `spawn_blocking` for everything else). SQLite runs in WAL mode behind a small
//! connection pool (`pool`), so readers never block each other or the audit writer; its schema is
//! a list of numbered steps (`migrations`).

mod audit_writer;
mod contracts;
mod mcp;
mod migrations;
mod pool;
mod registry;
mod sqlite;
pub mod testing;

pub use audit_writer::AuditWriter;
pub use contracts::{
    AgentStore, ApprovalStore, AuditStore, Backend, DocumentStore, KeyStore, McpStore, MetaStore,
    PolicySetStore, RegistryStore,
};
pub use mcp::{McpSessionRow, McpToolRow, ToolStatus};
pub use migrations::SCHEMA_VERSION;

/// The domain traits, for callers that hold a `dyn Backend` and call its methods
/// (`use ztai_store::prelude::*`).
pub mod prelude {
    pub use crate::audit_writer::AuditWriter;
    pub use crate::contracts::{
        AgentStore, ApprovalStore, AuditStore, Backend, DocumentStore, KeyStore, McpStore,
        MetaStore, PolicySetStore, RegistryStore,
    };
}
pub use pool::{CHECKOUT_TIMEOUT, DEFAULT_POOL_SIZE, Sqlite};
pub use registry::{
    ModelRow, ModelVersionRow, RevokedSignerRow, VerificationEvidence, VersionMove,
};

pub(crate) use sqlite::Store;
pub use sqlite::{
    AgentRow, ApprovalRow, ApproverKeyRow, AuditFilter, AuditLeaf, AuditRow, CheckpointRow,
    DOCUMENTS_VERSION_KEY, DocumentRow, KeyRow, PolicySetRow, PrunedRow, RevocationRow,
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
    #[error(
        "cannot upgrade the store's schema to version {to} ({why}): {source}; the store is left at the previous version: restore a backup or report the error"
    )]
    Migration {
        to: i64,
        why: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// Every pooled connection stayed in use for `waited`: the store is overloaded or stuck.
    #[error(
        "no store connection came free within {} s ({message}); the store is overloaded or a call is stuck",
        waited.as_secs()
    )]
    Busy {
        waited: std::time::Duration,
        message: String,
    },
    /// Another writer holds the audit log: two would fork its chain.
    #[error(
        "another process is writing this audit log (`{path}` is locked): a gateway is serving this data directory; stop it, or make the change through its admin API so it is recorded in order"
    )]
    WriterBusy { path: String },
    #[error("cannot lock `{path}`: {message}")]
    Lock { path: String, message: String },
    #[error("{0}")]
    Thread(String),
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
