//! The audit log: every decision becomes an `AuditRecord`, appended to a hash chain and made durable
//! before the response it describes is released.
//!
//! Appends from all request tasks go through one writer thread that commits them in batches (group
//! commit): a request waits only for the transaction that carries its record, and the database sees
//! one fsync-free WAL commit per batch instead of one per request. Each row's hash covers the
//! previous row's hash, its sequence number and its exact JSON, so any change, deletion, insertion
//! or reordering breaks the chain at a row `verify_log` can name. Every record is also a leaf of an
//! RFC 9162 Merkle tree whose heads the writer signs (`checkpoint`), so history rewritten with
//! recomputed hashes, or cut short, contradicts a signed checkpoint, and any record can be proven
//! to an auditor offline (`prove_inclusion`, `verify_proof`).

mod chain;
pub mod checkpoint;
pub mod export;
pub mod keyfile;
pub mod merkle;
mod proof;
pub mod pseudonym;
mod writer;

pub use chain::{
    AuditColumn, ChainProblem, ChainReport, GENESIS_HASH, VerifyOptions, chain_hash,
    column_mismatches, row_problems, verify_chain, verify_log,
};
pub use proof::{
    AuditProof, ProofCheckError, PruneReport, prove_consistency, prove_inclusion, prune,
    verify_proof,
};
pub use writer::{AuditLog, AuditLogConfig};

/// Audit failures. Any of these on the request path means the request is refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    #[error(
        "the audit log could not record the request ({0}); the request was refused because nothing is served unrecorded"
    )]
    Append(String),
    #[error(
        "the audit writer has stopped; restart the gateway (requests are refused until it runs)"
    )]
    WriterStopped,
    #[error("cannot open the audit log: {0}")]
    Open(String),
    #[error("cannot read the audit log: {0}")]
    Read(String),
    #[error("cannot encode the audit record: {0}")]
    Encode(String),
}

/// A user-given time bound for audit searches (`2026-11-22T03:00:00Z`, fractions and offsets
/// optional) in the records' own fixed-width form, so bounds compare correctly as text.
pub fn query_time(text: &str) -> Result<String, AuditError> {
    humantime::parse_rfc3339_weak(text)
        .map(|t| humantime::format_rfc3339_micros(t).to_string())
        .map_err(|e| {
            AuditError::Read(format!(
                "`{text}` is not an RFC 3339 time such as 2026-11-22T03:00:00Z ({e})"
            ))
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_times_normalise_to_the_record_form() {
        assert_eq!(
            super::query_time("2026-11-22T03:00:00Z").unwrap(),
            "2026-11-22T03:00:00.000000Z"
        );
        assert!(super::query_time("yesterday").is_err());
    }
}
