//! Portable proofs: that a record is in the log a signed checkpoint commits to (inclusion), and
//! that a later checkpoint extends an earlier one without rewriting it (consistency).
//!
//! A proof carries everything its check needs — the record itself, the audit path and the
//! signed checkpoint notes — so `verify_proof` runs offline with only the pinned verifier key:
//! an auditor never has to trust our database or our binary's reading of it.

use crate::AuditError;
use crate::checkpoint::{CheckpointError, CheckpointVerifier};
use crate::merkle::{self, Hash, ProofError};
use crate::writer::leaf_of;
use serde::{Deserialize, Serialize};
use ztai_store::{AuditStore, CheckpointRow};

/// A self-contained proof, serialised as JSON by the CLI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditProof {
    Inclusion {
        /// The record's sequence number (its leaf index plus one).
        seq: u64,
        tree_size: u64,
        /// The record exactly as stored; its leaf hash is recomputed from this.
        record: String,
        /// Audit path, hex, leaf to root.
        path: Vec<String>,
        /// The signed checkpoint of `tree_size`.
        checkpoint: String,
    },
    Consistency {
        old_size: u64,
        new_size: u64,
        path: Vec<String>,
        old_checkpoint: String,
        new_checkpoint: String,
    },
}

/// Why a proof does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofCheckError {
    #[error("{0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("{0}")]
    Merkle(#[from] ProofError),
    #[error("the proof is malformed: {0}")]
    Malformed(String),
}

fn read(e: ztai_store::StoreError) -> AuditError {
    AuditError::Read(e.to_string())
}

/// Leaf hashes of the first `size` records.
fn leaves(store: &dyn AuditStore, size: u64) -> Result<Vec<Hash>, AuditError> {
    let mut out = Vec::new();
    let mut after = 0i64;
    while (out.len() as u64) < size {
        let want = usize::try_from(size - out.len() as u64)
            .unwrap_or(usize::MAX)
            .min(8192);
        let batch = store.audit_leaves_after(after, want).map_err(read)?;
        let Some((last, _)) = batch.last() else {
            break;
        };
        after = *last;
        out.extend(batch.iter().map(|(_, l)| leaf_of(l)));
    }
    if (out.len() as u64) < size {
        return Err(AuditError::Read(format!(
            "the log holds {} records, fewer than the checkpoint's {size}: it was truncated; run `ztai audit verify`",
            out.len()
        )));
    }
    Ok(out)
}

fn checkpoint_of(store: &dyn AuditStore, size: Option<u64>) -> Result<CheckpointRow, AuditError> {
    let all = store.checkpoints().map_err(read)?;
    match size {
        Some(s) => all
            .into_iter()
            .find(|c| u64::try_from(c.tree_size).ok() == Some(s))
            .ok_or_else(|| {
                AuditError::Read(format!(
                    "there is no checkpoint of size {s}; `ztai audit checkpoints` lists them"
                ))
            }),
        None => all.into_iter().last().ok_or_else(|| {
            AuditError::Read(
                "the log has no signed checkpoint yet; a running gateway signs one every minute (or on `POST /api/v1/audit/checkpoint`)".into(),
            )
        }),
    }
}

fn hexes(path: &[Hash]) -> Vec<String> {
    path.iter().map(hex::encode).collect()
}

/// Proves that record `seq` is in the tree of the checkpoint of `size` (default: the latest).
pub fn prove_inclusion(
    store: &dyn AuditStore,
    seq: u64,
    size: Option<u64>,
) -> Result<AuditProof, AuditError> {
    let cp = checkpoint_of(store, size)?;
    let tree_size = u64::try_from(cp.tree_size).unwrap_or(0);
    if seq == 0 || seq > tree_size {
        return Err(AuditError::Read(format!(
            "record {seq} is not covered by the checkpoint of size {tree_size}; wait for the next checkpoint or pick another with --size"
        )));
    }
    let row = store
        .audit_row(i64::try_from(seq).unwrap_or(i64::MAX))
        .map_err(read)?
        .ok_or_else(|| {
            AuditError::Read(format!(
                "record {seq} is not in the log, or its content was pruned (its leaf hash still is)"
            ))
        })?;
    let all = leaves(store, tree_size)?;
    let path =
        merkle::inclusion_proof(seq - 1, &all).map_err(|e| AuditError::Read(e.to_string()))?;
    Ok(AuditProof::Inclusion {
        seq,
        tree_size,
        record: row.record_json,
        path: hexes(&path),
        checkpoint: cp.note,
    })
}

/// Proves that the checkpoint of `new` extends the checkpoint of `old`.
pub fn prove_consistency(
    store: &dyn AuditStore,
    old: u64,
    new: u64,
) -> Result<AuditProof, AuditError> {
    let old_cp = checkpoint_of(store, Some(old))?;
    let new_cp = checkpoint_of(store, Some(new))?;
    let all = leaves(store, new)?;
    let path = merkle::consistency_proof(old, &all).map_err(|e| AuditError::Read(e.to_string()))?;
    Ok(AuditProof::Consistency {
        old_size: old,
        new_size: new,
        path: hexes(&path),
        old_checkpoint: old_cp.note,
        new_checkpoint: new_cp.note,
    })
}

fn parse_path(path: &[String]) -> Result<Vec<Hash>, ProofCheckError> {
    path.iter()
        .map(|h| {
            hex::decode(h)
                .ok()
                .and_then(|v| Hash::try_from(v.as_slice()).ok())
                .ok_or_else(|| {
                    ProofCheckError::Malformed(format!("`{h}` is not a SHA-256 hex hash"))
                })
        })
        .collect()
}

/// Checks a proof offline against the pinned key. Returns a one-line summary of what holds.
pub fn verify_proof(
    proof: &AuditProof,
    verifier: &CheckpointVerifier,
) -> Result<String, ProofCheckError> {
    match proof {
        AuditProof::Inclusion {
            seq,
            tree_size,
            record,
            path,
            checkpoint,
        } => {
            let signed = verifier.verify(checkpoint)?;
            if signed.size != *tree_size {
                return Err(ProofCheckError::Malformed(format!(
                    "the proof claims tree size {tree_size} but its checkpoint is of size {}",
                    signed.size
                )));
            }
            let index = seq
                .checked_sub(1)
                .ok_or_else(|| ProofCheckError::Malformed("records are numbered from 1".into()))?;
            let leaf = merkle::leaf_hash(record.as_bytes());
            merkle::verify_inclusion(index, *tree_size, &leaf, &parse_path(path)?, &signed.root)?;
            Ok(format!(
                "record {seq} is in the log `{}` of {tree_size} records signed by `{}` at {}",
                signed.origin,
                verifier.name(),
                signed.time
            ))
        }
        AuditProof::Consistency {
            old_size,
            new_size,
            path,
            old_checkpoint,
            new_checkpoint,
        } => {
            let old = verifier.verify(old_checkpoint)?;
            let new = verifier.verify(new_checkpoint)?;
            if old.size != *old_size || new.size != *new_size {
                return Err(ProofCheckError::Malformed(
                    "the sizes do not match the checkpoints' sizes".into(),
                ));
            }
            if old.origin != new.origin {
                return Err(ProofCheckError::Malformed(format!(
                    "the checkpoints are of different logs (`{}` and `{}`)",
                    old.origin, new.origin
                )));
            }
            merkle::verify_consistency(
                *old_size,
                *new_size,
                &parse_path(path)?,
                &old.root,
                &new.root,
            )?;
            Ok(format!(
                "the log `{}` at {new_size} records extends its first {old_size} unchanged (signed by `{}`)",
                new.origin,
                verifier.name()
            ))
        }
    }
}

/// What `prune` removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneReport {
    /// The first and last sequence numbers whose content was removed, if any.
    pub range: Option<(i64, i64)>,
    /// The checkpoint size that commits to the pruned records.
    pub covered_by: u64,
    /// The export sink (and its cursor) that kept newer records from being pruned, because it
    /// has not delivered them yet.
    pub held_by: Option<(String, i64)>,
}

/// Removes the content of records older than `before` (RFC 3339, records' form) that a signed
/// checkpoint already covers, keeping their leaf and chain hashes so the log stays verifiable
/// and later records stay provable. Checkpoint first, then prune: nothing uncommitted goes.
/// Unless `ignore_export` is set, nothing an export sink has yet to deliver goes either (a sink
/// that no longer exists must have its cursor dropped: `ztai audit cursors --drop NAME`).
pub fn prune(
    store: &dyn AuditStore,
    before: &str,
    now: &str,
    reason: &str,
    ignore_export: bool,
) -> Result<PruneReport, AuditError> {
    let latest = store.latest_checkpoint().map_err(read)?.ok_or_else(|| {
        AuditError::Read(
            "the log has no signed checkpoint, so nothing can be pruned yet; a running gateway signs one every minute".into(),
        )
    })?;
    let mut covered = latest.tree_size;
    let mut held_by = None;
    if !ignore_export
        && let Some((sink, cursor, _)) = store
            .export_cursors()
            .map_err(read)?
            .into_iter()
            .min_by_key(|(_, c, _)| *c)
        && cursor < covered
    {
        covered = cursor;
        held_by = Some((sink, cursor));
    }
    // The newest record older than `before`; times grow with the sequence, so the pruned range
    // is a prefix.
    let mut last = 0i64;
    let mut after = 0i64;
    let mut leaves = Vec::new();
    'scan: loop {
        let rows = store.audit_rows_after(after, 4096).map_err(read)?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            if row.seq > covered || row.time.as_str() >= before {
                break 'scan;
            }
            if row.leaf_hash.is_none() {
                leaves.push((
                    row.seq,
                    merkle::leaf_hash(row.record_json.as_bytes()).to_vec(),
                ));
            }
            last = row.seq;
            after = row.seq;
        }
    }
    let range = if last == 0 {
        None
    } else {
        store
            .prune_audit(last, &leaves, now, reason)
            .map_err(|e| AuditError::Append(format!("cannot prune: {e}")))?
    };
    Ok(PruneReport {
        range,
        covered_by: u64::try_from(latest.tree_size).unwrap_or(0),
        held_by,
    })
}
