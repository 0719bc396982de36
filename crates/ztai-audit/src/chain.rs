//! The hash chain over audit rows and its verification.

use crate::AuditError;
use sha2::{Digest, Sha256};
use ztai_store::Store;

/// The `prev_hash` of the first row.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

/// `SHA-256(prev_hash ‖ seq as 8 big-endian bytes ‖ record JSON)`.
pub fn chain_hash(prev_hash: &[u8], seq: i64, record_json: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(seq.to_be_bytes());
    h.update(record_json.as_bytes());
    h.finalize().into()
}

/// What is wrong with a chain, at the first row where it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainProblem {
    /// A row's hash does not match its content: the row was modified.
    Modified { seq: i64 },
    /// A row does not link to the previous row's hash: a row before it was deleted, inserted or
    /// reordered (or the previous row was modified together with its hash).
    BrokenLink { seq: i64 },
    /// Sequence numbers skip: rows were deleted.
    Gap { expected: i64, found: i64 },
}

impl std::fmt::Display for ChainProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainProblem::Modified { seq } => {
                write!(
                    f,
                    "record {seq} was modified: its hash does not match its content"
                )
            }
            ChainProblem::BrokenLink { seq } => write!(
                f,
                "record {seq} does not link to the record before it: a record was inserted, removed or reordered"
            ),
            ChainProblem::Gap { expected, found } => write!(
                f,
                "records {expected}..{} are missing (deleted)",
                found.saturating_sub(1)
            ),
        }
    }
}

/// The result of walking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub records: u64,
    pub head_hash: String,
    pub problems: Vec<ChainProblem>,
}

/// Walks every row in order and reports every place the chain does not hold.
pub fn verify_chain(store: &Store) -> Result<ChainReport, AuditError> {
    let mut prev = GENESIS_HASH.to_vec();
    let mut expected_seq = 1i64;
    let mut after = 0i64;
    let mut records = 0u64;
    let mut problems = Vec::new();
    loop {
        let rows = store
            .audit_rows_after(after, 4096)
            .map_err(|e| AuditError::Read(e.to_string()))?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            records += 1;
            if row.seq != expected_seq {
                problems.push(ChainProblem::Gap {
                    expected: expected_seq,
                    found: row.seq,
                });
            }
            if row.prev_hash != prev {
                problems.push(ChainProblem::BrokenLink { seq: row.seq });
            }
            if chain_hash(&row.prev_hash, row.seq, &row.record_json).as_slice() != row.hash {
                problems.push(ChainProblem::Modified { seq: row.seq });
            }
            prev = row.hash;
            expected_seq = row.seq.saturating_add(1);
            after = row.seq;
        }
    }
    Ok(ChainReport {
        records,
        head_hash: hex::encode(&prev),
        problems,
    })
}
