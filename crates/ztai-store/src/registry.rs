//! The model registry: models, their versions with lineage and verification evidence, each
//! version's lifecycle state, and revoked signers.
//!
//! Transitions go through `ztai_core::ModelState::apply` inside a transaction, so a state the
//! lifecycle does not allow can never be written, and deploying one version supersedes the
//! deployed one atomically (the gateway never sees two, or none, in between).

use crate::{Store, StoreError};
use rusqlite::{OptionalExtension, params};
use ztai_core::{ModelState, Transition};

/// A registered model: who answers for it, what it may be used for, how risky it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRow {
    pub name: String,
    pub owners: Vec<String>,
    pub approved_uses: Vec<String>,
    /// `minimal`, `limited`, `high` or `unacceptable` (EU AI Act style tiers), or the
    /// organisation's own.
    pub risk_tier: String,
    pub description: String,
    /// Whether traffic falls back to the last known-good version when the deployed one leaves.
    pub fallback: bool,
    pub created_at: i64,
    pub created_by: String,
}

/// One version of a model and its evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelVersionRow {
    pub model: String,
    pub version: String,
    pub state: ModelState,
    /// Where the files are, on the gateway's host.
    pub path: String,
    pub signature_path: String,
    /// The model name sent upstream when this version takes the traffic.
    pub upstream_model: String,
    /// Training datasets (manifest digests), base model, parameters and seeds, code commit,
    /// who trained it and when: JSON as registered.
    pub lineage: serde_json::Value,
    /// Root digest of the signed manifest, once verified.
    pub root_digest: Option<String>,
    /// Who signed (method, identity, chain), once verified.
    pub signer: Option<serde_json::Value>,
    /// Key hints / certificate digests a signer revocation matches.
    pub signer_fingerprints: Vec<String>,
    /// The malicious-file scan summary, once scanned.
    pub scan: Option<serde_json::Value>,
    pub state_reason: String,
    pub registered_by: String,
    pub registered_at: i64,
    pub updated_by: String,
    pub updated_at: i64,
    pub deployed_at: Option<i64>,
}

/// A signing key or certificate no longer trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedSignerRow {
    pub fingerprint: String,
    pub reason: String,
    pub revoked_by: String,
    pub revoked_at: i64,
}

/// One lifecycle move: which version, which transition, why and by whom.
#[derive(Debug, Clone, Copy)]
pub struct VersionMove<'a> {
    pub model: &'a str,
    pub version: &'a str,
    pub transition: Transition,
    /// Written with a `verify`.
    pub evidence: Option<&'a VerificationEvidence>,
    pub reason: &'a str,
    /// `kind:id` of who moved it.
    pub by: &'a str,
    pub now: i64,
}

/// What a verification established, written together with the `verify` transition.
#[derive(Debug, Clone)]
pub struct VerificationEvidence {
    pub root_digest: String,
    pub signer: serde_json::Value,
    pub signer_fingerprints: Vec<String>,
    pub scan: serde_json::Value,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn json_list(s: &str, what: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt(what, e))
}

const MODEL_COLUMNS: &str = "name, owners_json, approved_uses_json, risk_tier, description, fallback, created_at, created_by";
const VERSION_COLUMNS: &str = "model, version, state, path, signature_path, upstream_model, lineage_json, root_digest, signer_json, signer_fingerprints_json, scan_json, state_reason, registered_by, registered_at, updated_by, updated_at, deployed_at";

type RawModel = (String, String, String, String, String, bool, i64, String);

fn model_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawModel> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

fn model_from(raw: RawModel) -> Result<ModelRow, StoreError> {
    let (name, owners, uses, risk_tier, description, fallback, created_at, created_by) = raw;
    Ok(ModelRow {
        owners: json_list(&owners, &format!("owners of model `{name}`"))?,
        approved_uses: json_list(&uses, &format!("approved uses of model `{name}`"))?,
        name,
        risk_tier,
        description,
        fallback,
        created_at,
        created_by,
    })
}

struct RawVersion {
    cols: Vec<Option<String>>,
    registered_at: i64,
    updated_at: i64,
    deployed_at: Option<i64>,
}

fn version_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawVersion> {
    let mut cols = Vec::with_capacity(14);
    for i in 0..13 {
        cols.push(r.get::<_, Option<String>>(i)?);
    }
    cols.push(r.get::<_, Option<String>>(14)?);
    Ok(RawVersion {
        cols,
        registered_at: r.get(13)?,
        updated_at: r.get(15)?,
        deployed_at: r.get(16)?,
    })
}

fn version_from(raw: RawVersion) -> Result<ModelVersionRow, StoreError> {
    let col = |i: usize| raw.cols.get(i).cloned().flatten();
    let text = |i: usize| col(i).unwrap_or_default();
    let model = text(0);
    let version = text(1);
    let what = format!("version `{version}` of model `{model}`");
    let state = ModelState::parse(&text(2))
        .ok_or_else(|| corrupt(&what, format!("unknown state `{}`", text(2))))?;
    let json = |i: usize| -> Result<Option<serde_json::Value>, StoreError> {
        col(i)
            .map(|s| serde_json::from_str(&s).map_err(|e| corrupt(&what, e)))
            .transpose()
    };
    Ok(ModelVersionRow {
        state,
        path: text(3),
        signature_path: text(4),
        upstream_model: text(5),
        lineage: json(6)?.unwrap_or(serde_json::Value::Null),
        root_digest: col(7),
        signer: json(8)?,
        signer_fingerprints: json_list(&col(9).unwrap_or_else(|| "[]".into()), &what)?,
        scan: json(10)?,
        state_reason: text(11),
        registered_by: text(12),
        registered_at: raw.registered_at,
        updated_by: text(13),
        updated_at: raw.updated_at,
        deployed_at: raw.deployed_at,
        model,
        version,
    })
}

impl Store {
    pub fn create_model(&self, row: &ModelRow) -> Result<(), StoreError> {
        let owners = serde_json::to_string(&row.owners).map_err(|e| corrupt("owners", e))?;
        let uses =
            serde_json::to_string(&row.approved_uses).map_err(|e| corrupt("approved uses", e))?;
        let inserted = self.conn.execute(
            &format!("INSERT OR IGNORE INTO registry_models ({MODEL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![row.name, owners, uses, row.risk_tier, row.description, row.fallback, row.created_at, row.created_by],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!("model `{}`", row.name)));
        }
        Ok(())
    }

    pub fn registered_model(&self, name: &str) -> Result<Option<ModelRow>, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {MODEL_COLUMNS} FROM registry_models WHERE name = ?1"
            ))?
            .query_row(params![name], model_row)
            .optional()?
            .map(model_from)
            .transpose()
    }

    pub fn registered_models(&self) -> Result<Vec<ModelRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {MODEL_COLUMNS} FROM registry_models ORDER BY name"
        ))?;
        let rows = stmt
            .query_map([], model_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(model_from).collect()
    }

    /// Adds a version in state `registered`.
    pub fn register_model_version(&self, row: &ModelVersionRow) -> Result<(), StoreError> {
        if self.registered_model(&row.model)?.is_none() {
            return Err(StoreError::NotFound(format!(
                "model `{}` (create it first)",
                row.model
            )));
        }
        let lineage = serde_json::to_string(&row.lineage).map_err(|e| corrupt("lineage", e))?;
        let inserted = self.conn.execute(
            &format!(
                "INSERT OR IGNORE INTO registry_versions ({VERSION_COLUMNS}) VALUES (?1, ?2, 'registered', ?3, ?4, ?5, ?6, NULL, NULL, '[]', NULL, ?7, ?8, ?9, ?8, ?9, NULL)"
            ),
            params![
                row.model,
                row.version,
                row.path,
                row.signature_path,
                row.upstream_model,
                lineage,
                row.state_reason,
                row.registered_by,
                row.registered_at
            ],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "version `{}` of model `{}`",
                row.version, row.model
            )));
        }
        Ok(())
    }

    pub fn model_version(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<ModelVersionRow>, StoreError> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {VERSION_COLUMNS} FROM registry_versions WHERE model = ?1 AND version = ?2"
            ))?
            .query_row(params![model, version], version_row)
            .optional()?
            .map(version_from)
            .transpose()
    }

    /// Every version of `model` (or of every model), oldest registration first.
    pub fn model_versions(&self, model: Option<&str>) -> Result<Vec<ModelVersionRow>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {VERSION_COLUMNS} FROM registry_versions WHERE ?1 IS NULL OR model = ?1 ORDER BY model, registered_at, version"
        ))?;
        let rows = stmt
            .query_map(params![model], version_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(version_from).collect()
    }

    /// Moves a version through the lifecycle. Deploying supersedes the deployed version of the
    /// same model in the same transaction. Returns the versions that changed, the named one first.
    pub fn transition_model_version(
        &mut self,
        m: &VersionMove<'_>,
    ) -> Result<Vec<ModelVersionRow>, StoreError> {
        let VersionMove {
            model,
            version,
            transition,
            evidence,
            reason,
            by,
            now,
        } = *m;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let state: Option<String> = tx
            .query_row(
                "SELECT state FROM registry_versions WHERE model = ?1 AND version = ?2",
                params![model, version],
                |r| r.get(0),
            )
            .optional()?;
        let state = state.ok_or_else(|| {
            StoreError::NotFound(format!("version `{version}` of model `{model}`"))
        })?;
        let from =
            ModelState::parse(&state).ok_or_else(|| corrupt("model version state", &state))?;
        let to = from
            .apply(transition)
            .map_err(|e| StoreError::Conflict(e.to_string()))?;
        let mut changed = vec![(model.to_string(), version.to_string())];
        if transition == Transition::Deploy {
            let mut stmt = tx.prepare(
                "SELECT version FROM registry_versions WHERE model = ?1 AND state = 'deployed'",
            )?;
            let deployed: Vec<String> = stmt
                .query_map(params![model], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            drop(stmt);
            for other in deployed {
                tx.execute(
                    "UPDATE registry_versions SET state = 'approved', state_reason = ?3, updated_by = ?4, updated_at = ?5 WHERE model = ?1 AND version = ?2",
                    params![model, other, format!("superseded by version {version}"), by, now],
                )?;
                changed.push((model.to_string(), other));
            }
        }
        if let Some(ev) = evidence {
            let signer = serde_json::to_string(&ev.signer).map_err(|e| corrupt("signer", e))?;
            let fps = serde_json::to_string(&ev.signer_fingerprints)
                .map_err(|e| corrupt("fingerprints", e))?;
            let scan = serde_json::to_string(&ev.scan).map_err(|e| corrupt("scan", e))?;
            tx.execute(
                "UPDATE registry_versions SET root_digest = ?3, signer_json = ?4, signer_fingerprints_json = ?5, scan_json = ?6 WHERE model = ?1 AND version = ?2",
                params![model, version, ev.root_digest, signer, fps, scan],
            )?;
        }
        tx.execute(
            "UPDATE registry_versions SET state = ?3, state_reason = ?4, updated_by = ?5, updated_at = ?6,
                 deployed_at = CASE WHEN ?3 = 'deployed' THEN ?6 ELSE deployed_at END
             WHERE model = ?1 AND version = ?2",
            params![model, version, to.as_str(), reason, by, now],
        )?;
        tx.commit()?;
        let mut out = Vec::new();
        for (m, v) in changed {
            if let Some(row) = self.model_version(&m, &v)? {
                out.push(row);
            }
        }
        Ok(out)
    }

    /// Records scan or verification evidence without a transition (a failed verification keeps
    /// the version where it was, with the reason).
    pub fn note_model_version(
        &self,
        model: &str,
        version: &str,
        reason: &str,
        scan: Option<&serde_json::Value>,
        by: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let scan = scan.map(|s| serde_json::to_string(s).unwrap_or_default());
        let n = self.conn.execute(
            "UPDATE registry_versions SET state_reason = ?3, scan_json = COALESCE(?4, scan_json), updated_by = ?5, updated_at = ?6 WHERE model = ?1 AND version = ?2",
            params![model, version, reason, scan, by, now],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "version `{version}` of model `{model}`"
            )));
        }
        Ok(())
    }

    /// Revokes a signer and every version it signed that is not already revoked or retired.
    /// Returns the versions revoked.
    pub fn revoke_model_signer(
        &mut self,
        fingerprint: &str,
        reason: &str,
        by: &str,
        now: i64,
    ) -> Result<Vec<ModelVersionRow>, StoreError> {
        let fingerprint = fingerprint.trim().to_ascii_lowercase();
        self.conn.execute(
            "INSERT OR REPLACE INTO registry_revoked_signers (fingerprint, reason, revoked_by, revoked_at) VALUES (?1, ?2, ?3, ?4)",
            params![fingerprint, reason, by, now],
        )?;
        let affected: Vec<ModelVersionRow> = self
            .model_versions(None)?
            .into_iter()
            .filter(|v| {
                v.signer_fingerprints
                    .iter()
                    .any(|f| f.eq_ignore_ascii_case(&fingerprint))
            })
            .filter(|v| !matches!(v.state, ModelState::Revoked | ModelState::Retired))
            .collect();
        let mut out = Vec::new();
        for v in affected {
            let why = format!("signer {fingerprint} revoked: {reason}");
            let rows = self.transition_model_version(&VersionMove {
                model: &v.model,
                version: &v.version,
                transition: Transition::Revoke,
                evidence: None,
                reason: &why,
                by,
                now,
            })?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// The first of `fingerprints` that has been revoked, if any.
    pub fn revoked_model_signer(
        &self,
        fingerprints: &[String],
    ) -> Result<Option<RevokedSignerRow>, StoreError> {
        for fp in fingerprints {
            let row = self
                .conn
                .prepare_cached("SELECT fingerprint, reason, revoked_by, revoked_at FROM registry_revoked_signers WHERE fingerprint = ?1")?
                .query_row(params![fp.to_ascii_lowercase()], |r| {
                    Ok(RevokedSignerRow { fingerprint: r.get(0)?, reason: r.get(1)?, revoked_by: r.get(2)?, revoked_at: r.get(3)? })
                })
                .optional()?;
            if row.is_some() {
                return Ok(row);
            }
        }
        Ok(None)
    }

    pub fn revoked_model_signers(&self) -> Result<Vec<RevokedSignerRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT fingerprint, reason, revoked_by, revoked_at FROM registry_revoked_signers ORDER BY revoked_at")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(RevokedSignerRow {
                    fingerprint: r.get(0)?,
                    reason: r.get(1)?,
                    revoked_by: r.get(2)?,
                    revoked_at: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::open_in_memory().unwrap_or_else(|e| panic!("{e}"))
    }

    fn model(name: &str) -> ModelRow {
        ModelRow {
            name: name.into(),
            owners: vec!["user:alice".into()],
            approved_uses: vec!["support chat".into()],
            risk_tier: "limited".into(),
            description: String::new(),
            fallback: true,
            created_at: 1,
            created_by: "user:admin".into(),
        }
    }

    fn version(model: &str, v: &str) -> ModelVersionRow {
        ModelVersionRow {
            model: model.into(),
            version: v.into(),
            state: ModelState::Registered,
            path: format!("/models/{model}/{v}"),
            signature_path: format!("/models/{model}/{v}.sig"),
            upstream_model: format!("{model}-{v}"),
            lineage: serde_json::json!({"datasets": ["sha256:ab"], "base_model": "llama"}),
            root_digest: None,
            signer: None,
            signer_fingerprints: vec![],
            scan: None,
            state_reason: String::new(),
            registered_by: "user:admin".into(),
            registered_at: 10,
            updated_by: "user:admin".into(),
            updated_at: 10,
            deployed_at: None,
        }
    }

    fn evidence(fp: &str) -> VerificationEvidence {
        VerificationEvidence {
            root_digest: "abc".into(),
            signer: serde_json::json!({"method": "key"}),
            signer_fingerprints: vec![fp.into()],
            scan: serde_json::json!({"verdict": "clean"}),
        }
    }

    fn mv<'a>(
        model: &'a str,
        version: &'a str,
        transition: Transition,
        evidence: Option<&'a VerificationEvidence>,
        now: i64,
    ) -> VersionMove<'a> {
        VersionMove {
            model,
            version,
            transition,
            evidence,
            reason: "",
            by: "user:admin",
            now,
        }
    }

    fn walk(s: &mut Store, v: &str, fp: &str) {
        let go = |s: &mut Store, t, ev: Option<&VerificationEvidence>| {
            s.transition_model_version(&mv("m", v, t, ev, 20))
                .unwrap_or_else(|e| panic!("{t:?}: {e}"))
        };
        go(s, Transition::Verify, Some(&evidence(fp)));
        go(s, Transition::Approve, None);
        go(s, Transition::Deploy, None);
    }

    #[test]
    fn versions_follow_the_lifecycle_and_deploy_supersedes() {
        let mut s = store();
        s.create_model(&model("m"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            s.create_model(&model("m")),
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            s.register_model_version(&version("nope", "1")),
            Err(StoreError::NotFound(_))
        ));
        s.register_model_version(&version("m", "1"))
            .unwrap_or_else(|e| panic!("{e}"));
        s.register_model_version(&version("m", "2"))
            .unwrap_or_else(|e| panic!("{e}"));
        // Approving before verification is refused, with the rule in the message.
        let early = s.transition_model_version(&mv("m", "1", Transition::Approve, None, 11));
        assert!(
            matches!(early, Err(StoreError::Conflict(ref m)) if m.contains("verify its signature"))
        );
        walk(&mut s, "1", "key-a");
        walk(&mut s, "2", "key-b");
        let v1 = s
            .model_version("m", "1")
            .ok()
            .flatten()
            .map(|v| (v.state, v.state_reason));
        assert_eq!(
            v1,
            Some((ModelState::Approved, "superseded by version 2".to_string()))
        );
        let v2 = s.model_version("m", "2").ok().flatten();
        assert_eq!(v2.as_ref().map(|v| v.state), Some(ModelState::Deployed));
        assert_eq!(v2.and_then(|v| v.root_digest), Some("abc".into()));
    }

    #[test]
    fn revoking_a_signer_revokes_every_version_it_signed() {
        let mut s = store();
        s.create_model(&model("m"))
            .unwrap_or_else(|e| panic!("{e}"));
        for v in ["1", "2", "3"] {
            s.register_model_version(&version("m", v))
                .unwrap_or_else(|e| panic!("{e}"));
        }
        walk(&mut s, "1", "key-a");
        walk(&mut s, "2", "key-b");
        let ev = evidence("KEY-A");
        s.transition_model_version(&mv("m", "3", Transition::Verify, Some(&ev), 30))
            .unwrap_or_else(|e| panic!("{e}"));
        let revoked = s
            .revoke_model_signer("key-a", "leaked", "user:sec", 40)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut names: Vec<&str> = revoked.iter().map(|v| v.version.as_str()).collect();
        names.sort();
        assert_eq!(names, vec!["1", "3"]);
        assert!(revoked.iter().all(|v| v.state == ModelState::Revoked));
        assert_eq!(
            s.model_version("m", "2").ok().flatten().map(|v| v.state),
            Some(ModelState::Deployed)
        );
        let found = s
            .revoked_model_signer(&["other".into(), "Key-A".into()])
            .ok()
            .flatten();
        assert_eq!(found.map(|r| r.reason), Some("leaked".into()));
    }
}
