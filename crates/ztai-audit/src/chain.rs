//! The hash chain over audit rows, and verification of the whole log: chain, Merkle leaves and
//! signed checkpoints.
//!
//! The chain localises damage (it names the first row that does not fit); the checkpoints make
//! damage undeniable, because an administrator who rewrites rows and their hashes still cannot
//! produce a tree head signed by the log's key, and a checkpoint kept outside the database
//! (by a SIEM, an auditor) reveals rows removed from the end of the log.

use crate::AuditError;
use crate::checkpoint::CheckpointVerifier;
use crate::merkle::{Frontier, leaf_hash};
use crate::writer::leaf_of;
use sha2::{Digest, Sha256};
use ztai_store::{AuditLeaf, AuditRow, AuditStore};

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
    /// A row's stored Merkle leaf hash does not match its content.
    LeafModified { seq: i64 },
    /// A searchable copy beside the hashed record (`time`, `principal`, `action`, `decision`,
    /// `record_id`) differs from the record: a search by that column would miss or mis-find it.
    ColumnMismatch { seq: i64, column: AuditColumn },
    /// The log's Merkle root at a checkpoint's size differs from the signed one: records at or
    /// before that size were changed, or the checkpoint's root was.
    CheckpointMismatch { size: u64, source: String },
    /// A checkpoint covers more records than the log holds: records were removed from the end.
    Truncated {
        checkpoint_size: u64,
        records: u64,
        source: String,
    },
    /// A checkpoint is not validly signed by the configured key.
    CheckpointSignature {
        size: i64,
        source: String,
        message: String,
    },
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
            ChainProblem::LeafModified { seq } => write!(
                f,
                "record {seq}'s Merkle leaf hash does not match its content: the row was modified"
            ),
            ChainProblem::ColumnMismatch { seq, column } => write!(
                f,
                "record {seq}'s `{}` column differs from the hashed record: the searchable copy was edited",
                column.name()
            ),
            ChainProblem::CheckpointMismatch { size, source } => write!(
                f,
                "the log's first {size} records do not match the signed checkpoint ({source}): records up to {size} were changed since it was signed"
            ),
            ChainProblem::Truncated {
                checkpoint_size,
                records,
                source,
            } => write!(
                f,
                "the log holds {records} records but the signed checkpoint ({source}) covers {checkpoint_size}: records after {records} were removed"
            ),
            ChainProblem::CheckpointSignature {
                size,
                source,
                message,
            } => write!(
                f,
                "checkpoint at size {size} ({source}) is not trustworthy: {message}"
            ),
        }
    }
}

/// The copies of a record's fields that `audit_log` keeps beside it for searching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditColumn {
    RecordId,
    Time,
    Principal,
    Action,
    Decision,
}

impl AuditColumn {
    pub fn name(self) -> &'static str {
        match self {
            AuditColumn::RecordId => "record_id",
            AuditColumn::Time => "time",
            AuditColumn::Principal => "principal",
            AuditColumn::Action => "action",
            AuditColumn::Decision => "decision",
        }
    }
}

/// The fields of a record that have searchable copies.
#[derive(serde::Deserialize)]
struct Indexed {
    id: String,
    time: String,
    principal: String,
    action: String,
    decision: ztai_core::Decision,
}

/// Which searchable copies of `row` differ from its hashed record (every column, when the record
/// does not even parse).
pub fn column_mismatches(row: &AuditRow) -> Vec<AuditColumn> {
    let Ok(r) = serde_json::from_str::<Indexed>(&row.record_json) else {
        return vec![
            AuditColumn::RecordId,
            AuditColumn::Time,
            AuditColumn::Principal,
            AuditColumn::Action,
            AuditColumn::Decision,
        ];
    };
    let decision = match r.decision {
        ztai_core::Decision::Allow => "allow",
        ztai_core::Decision::Deny => "deny",
    };
    [
        (AuditColumn::RecordId, r.id == row.record_id),
        (AuditColumn::Time, r.time == row.time),
        (AuditColumn::Principal, r.principal == row.principal),
        (AuditColumn::Action, r.action == row.action),
        (AuditColumn::Decision, decision == row.decision),
    ]
    .into_iter()
    .filter(|(_, same)| !same)
    .map(|(c, _)| c)
    .collect()
}

/// What is wrong with one row on its own: its hash against its content, and its searchable
/// copies against its record. A search checks each row it returns with this, so what it shows
/// comes from verified values; the links between rows need `verify_log`.
pub fn row_problems(row: &AuditRow) -> Vec<ChainProblem> {
    let mut problems = Vec::new();
    if chain_hash(&row.prev_hash, row.seq, &row.record_json).as_slice() != row.hash {
        problems.push(ChainProblem::Modified { seq: row.seq });
    }
    problems.extend(column_mismatches(row).into_iter().map(|column| {
        ChainProblem::ColumnMismatch {
            seq: row.seq,
            column,
        }
    }));
    problems
}

/// The result of walking the whole log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub records: u64,
    pub head_hash: String,
    /// The Merkle root over every record, hex.
    pub tree_root: String,
    /// Checkpoints compared with the log (stored and supplied).
    pub checkpoints_checked: usize,
    /// Whether checkpoint signatures were checked (a verifier key was given).
    pub signatures_checked: bool,
    pub problems: Vec<ChainProblem>,
}

/// What to check the log against beyond its own rows.
#[derive(Debug, Default)]
pub struct VerifyOptions<'a> {
    /// The pinned checkpoint key; without it signatures are not checked.
    pub verifier: Option<&'a CheckpointVerifier>,
    /// Signed checkpoints kept outside the database: (where from, note text).
    pub external: Vec<(String, String)>,
}

/// Walks the chain only (no checkpoints); see `verify_log`.
pub fn verify_chain(store: &dyn AuditStore) -> Result<ChainReport, AuditError> {
    verify_log(store, &VerifyOptions::default())
}

/// A checkpoint to compare with the log at its size.
struct Claim {
    size: u64,
    root: [u8; 32],
    source: String,
}

/// Walks every row in order and reports every place the log does not hold: the chain, each
/// row's leaf hash, and the Merkle root at every checkpoint's size.
pub fn verify_log(
    store: &dyn AuditStore,
    options: &VerifyOptions<'_>,
) -> Result<ChainReport, AuditError> {
    let mut problems = Vec::new();
    let mut claims = Vec::new();
    let read = |e: ztai_store::StoreError| AuditError::Read(e.to_string());
    for c in store.checkpoints().map_err(read)? {
        let source = format!("stored checkpoint {}", c.tree_size);
        let size = u64::try_from(c.tree_size).unwrap_or(0);
        match options.verifier.map(|v| v.verify(&c.note)) {
            Some(Err(e)) => {
                problems.push(ChainProblem::CheckpointSignature {
                    size: c.tree_size,
                    source,
                    message: e.to_string(),
                });
                continue;
            }
            Some(Ok(signed)) if signed.size != size || signed.root.as_slice() != c.root => {
                problems.push(ChainProblem::CheckpointSignature {
                    size: c.tree_size,
                    source,
                    message: "its size or root columns differ from what was signed".into(),
                });
                continue;
            }
            _ => {}
        }
        if let Ok(root) = <[u8; 32]>::try_from(c.root.as_slice()) {
            claims.push(Claim { size, root, source });
        }
    }
    for (source, note) in &options.external {
        let Some(v) = options.verifier else {
            return Err(AuditError::Read(
                "a supplied checkpoint can only be trusted with a verifier key; pass --key".into(),
            ));
        };
        match v.verify(note) {
            Ok(signed) => claims.push(Claim {
                size: signed.size,
                root: signed.root,
                source: source.clone(),
            }),
            Err(e) => problems.push(ChainProblem::CheckpointSignature {
                size: -1,
                source: source.clone(),
                message: e.to_string(),
            }),
        }
    }
    claims.sort_by_key(|c| c.size);
    let mut claims = claims.into_iter().peekable();
    let mut checked = 0usize;

    let mut prev = GENESIS_HASH.to_vec();
    let mut expected_seq = 1i64;
    let mut after = 0i64;
    let mut frontier = Frontier::new();
    // A claim for the empty tree is checked before any row.
    let mut settle = |frontier: &Frontier,
                      claims: &mut std::iter::Peekable<std::vec::IntoIter<Claim>>,
                      problems: &mut Vec<ChainProblem>| {
        while let Some(c) = claims.next_if(|c| c.size == frontier.size()) {
            checked += 1;
            if c.root != frontier.root() {
                problems.push(ChainProblem::CheckpointMismatch {
                    size: c.size,
                    source: c.source,
                });
            }
        }
    };
    settle(&frontier, &mut claims, &mut problems);
    // Pruned rows come first: their content is gone, their leaf and chain hashes remain, so the
    // tree and the chain still run through them.
    loop {
        let rows = store.audit_pruned_after(after, 8192).map_err(read)?;
        if rows.is_empty() {
            break;
        }
        for (seq, leaf, hash) in rows {
            if seq != expected_seq {
                problems.push(ChainProblem::Gap {
                    expected: expected_seq,
                    found: seq,
                });
            }
            frontier.push(leaf_of(&AuditLeaf::Hash(leaf)));
            settle(&frontier, &mut claims, &mut problems);
            prev = hash;
            expected_seq = seq.saturating_add(1);
            after = seq;
        }
    }
    loop {
        let rows = store.audit_rows_after(after, 4096).map_err(read)?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            if row.seq != expected_seq {
                problems.push(ChainProblem::Gap {
                    expected: expected_seq,
                    found: row.seq,
                });
            }
            if row.prev_hash != prev {
                problems.push(ChainProblem::BrokenLink { seq: row.seq });
            }
            problems.extend(row_problems(&row));
            let leaf = leaf_hash(row.record_json.as_bytes());
            if row.leaf_hash.as_ref().is_some_and(|h| h.as_slice() != leaf) {
                problems.push(ChainProblem::LeafModified { seq: row.seq });
            }
            frontier.push(leaf);
            settle(&frontier, &mut claims, &mut problems);
            prev = row.hash;
            expected_seq = row.seq.saturating_add(1);
            after = row.seq;
        }
    }
    for c in claims {
        checked += 1;
        problems.push(ChainProblem::Truncated {
            checkpoint_size: c.size,
            records: frontier.size(),
            source: c.source,
        });
    }
    Ok(ChainReport {
        records: frontier.size(),
        head_hash: hex::encode(&prev),
        tree_root: hex::encode(frontier.root()),
        checkpoints_checked: checked,
        signatures_checked: options.verifier.is_some(),
        problems,
    })
}
