//! The model registry under `/api/v1/registry`: models (owners, approved uses, risk tier),
//! versions (where the files are, lineage, what is sent upstream), and the lifecycle moves.
//!
//! Verification is done here, by the gateway, not taken on the caller's word: it reads the
//! version's files and signature from its own disk, verifies the signature (key, certificate
//! chain or Sigstore, offline) and scans every file for code that runs on load. A clean result
//! moves the version to `verified` with the evidence; an unsafe file quarantines it. Every call
//! is an administrative action (`admin` on `Api::"registry"`), decided by policy and recorded;
//! every change rebuilds the deployment gate's routes before the call returns.

use super::{Caller, blocking, governed};
use crate::error::GatewayError;
use crate::state::Gateway;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use ztai_core::Transition;
use ztai_store::{ModelRow, ModelVersionRow, VerificationEvidence, VersionMove};

fn model_view(m: &ModelRow) -> Value {
    json!({
        "name": m.name,
        "owners": m.owners,
        "approved_uses": m.approved_uses,
        "risk_tier": m.risk_tier,
        "description": m.description,
        "fallback": m.fallback,
        "created_at": m.created_at,
        "created_by": m.created_by,
    })
}

fn version_view(v: &ModelVersionRow) -> Value {
    json!({
        "model": v.model,
        "version": v.version,
        "state": v.state.as_str(),
        "state_reason": v.state_reason,
        "path": v.path,
        "signature": v.signature_path,
        "upstream_model": v.upstream_model,
        "lineage": v.lineage,
        "root_digest": v.root_digest,
        "signer": v.signer,
        "signer_fingerprints": v.signer_fingerprints,
        "scan": v.scan,
        "registered_by": v.registered_by,
        "registered_at": v.registered_at,
        "updated_by": v.updated_by,
        "updated_at": v.updated_at,
        "deployed_at": v.deployed_at,
    })
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8], shape: &str) -> Result<T, GatewayError> {
    serde_json::from_slice(body)
        .map_err(|e| GatewayError::Unprocessable(format!("expected {shape}: {e}")))
}

fn routes_changed(gw: &Gateway, store: &dyn ztai_store::RegistryStore) -> Result<(), GatewayError> {
    gw.refresh_model_routes(store).map_err(GatewayError::store)
}

/// A model's route as the admin API shows it.
fn route_view(route: &crate::model_gate::Route) -> Value {
    match route {
        crate::model_gate::Route::To {
            version, fallback, ..
        } => json!({"version": version, "fallback": fallback}),
        crate::model_gate::Route::Refused(why) => json!({"refused": why}),
    }
}

pub(super) async fn list(State(gw): State<Arc<Gateway>>, caller: Caller) -> Response {
    let g = gw.clone();
    governed(
        &gw,
        &caller,
        "registry",
        "admin::list_models",
        |_| async move {
            let (models, versions) = blocking(&g, |gw| {
                let store = gw.store.as_ref();
                Ok((
                    store
                        .registered_models()
                        .map_err(GatewayError::from_store)?,
                    store
                        .model_versions(None)
                        .map_err(GatewayError::from_store)?,
                ))
            })
            .await?;
            let routes = g.model_routes.load();
            let out: Vec<Value> = models
                .iter()
                .map(|m| {
                    let mut v = model_view(m);
                    if let Some(obj) = v.as_object_mut() {
                        obj.insert(
                            "versions".into(),
                            versions
                                .iter()
                                .filter(|x| x.model == m.name)
                                .map(version_view)
                                .collect(),
                        );
                        // Where traffic goes now, or why none can (and so why `/v1/models`
                        // does not list it).
                        obj.insert("route".into(), route_view(&routes.route(&m.name)));
                    }
                    v
                })
                .collect();
            Ok((StatusCode::OK, json!({"models": out})))
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateModel {
    name: String,
    #[serde(default)]
    owners: Vec<String>,
    #[serde(default)]
    approved_uses: Vec<String>,
    risk_tier: String,
    #[serde(default)]
    description: String,
    #[serde(default = "yes")]
    fallback: bool,
}

fn yes() -> bool {
    true
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

pub(super) async fn create(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Response {
    let g = gw.clone();
    governed(&gw, &caller, "registry", "admin::register_model", |actor| async move {
        let req: CreateModel = parse(&body, "{\"name\", \"risk_tier\", \"owners\", \"approved_uses\", \"description\", \"fallback\"}")?;
        if !valid_name(&req.name) {
            return Err(GatewayError::Unprocessable(format!(
                "model name `{}` must be 1-128 letters, digits, `-`, `_`, `.` or `:`",
                req.name
            )));
        }
        if req.owners.is_empty() {
            return Err(GatewayError::Unprocessable("a model needs at least one owner (`kind:id`)".into()));
        }
        let row = ModelRow {
            name: req.name,
            owners: req.owners,
            approved_uses: req.approved_uses,
            risk_tier: req.risk_tier,
            description: req.description,
            fallback: req.fallback,
            created_at: crate::clock::unix_now_i64(),
            created_by: format!("{}:{}", actor.kind, actor.id),
        };
        let view = model_view(&row);
        blocking(&g, move |gw| {
            let store = gw.store.as_ref();
            store.create_model(&row).map_err(GatewayError::from_store)?;
            routes_changed(gw, store)
        })
        .await?;
        Ok((StatusCode::CREATED, view))
    })
    .await
}

pub(super) async fn show(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Response {
    let g = gw.clone();
    governed(
        &gw,
        &caller,
        "registry",
        "admin::show_model",
        |_| async move {
            let n = name.clone();
            let (model, versions) = blocking(&g, move |gw| {
                let store = gw.store.as_ref();
                Ok((
                    store
                        .registered_model(&n)
                        .map_err(GatewayError::from_store)?,
                    store
                        .model_versions(Some(&n))
                        .map_err(GatewayError::from_store)?,
                ))
            })
            .await?;
            let model = model.ok_or_else(|| {
                GatewayError::NotFound(format!("model `{name}` is not registered"))
            })?;
            let route = route_view(&g.model_routes.load().route(&name));
            let mut v = model_view(&model);
            if let Some(obj) = v.as_object_mut() {
                obj.insert(
                    "versions".into(),
                    versions.iter().map(version_view).collect(),
                );
                obj.insert("route".into(), route);
            }
            Ok((StatusCode::OK, v))
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterVersion {
    version: String,
    /// The model directory (or file) on the gateway's host.
    path: String,
    /// Its signature (Sigstore bundle) on the gateway's host.
    signature: String,
    /// The name sent upstream while this version is deployed.
    upstream_model: String,
    #[serde(default)]
    lineage: Value,
}

pub(super) async fn register_version(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let g = gw.clone();
    governed(&gw, &caller, "registry", "admin::register_model_version", |actor| async move {
        let req: RegisterVersion =
            parse(&body, "{\"version\", \"path\", \"signature\", \"upstream_model\", \"lineage\"}")?;
        if !valid_name(&req.version) {
            return Err(GatewayError::Unprocessable(format!("version `{}` must be 1-128 letters, digits, `-`, `_`, `.` or `:`", req.version)));
        }
        if !(req.lineage.is_object() || req.lineage.is_null()) {
            return Err(GatewayError::Unprocessable(
                "lineage must be an object (datasets, base_model, parameters, seeds, commit, trained_by, trained_at)".into(),
            ));
        }
        let now = crate::clock::unix_now_i64();
        let by = format!("{}:{}", actor.kind, actor.id);
        let row = ModelVersionRow {
            model: name.clone(),
            version: req.version,
            state: ztai_core::ModelState::Registered,
            path: req.path,
            signature_path: req.signature,
            upstream_model: req.upstream_model,
            lineage: req.lineage,
            root_digest: None,
            signer: None,
            signer_fingerprints: Vec::new(),
            scan: None,
            state_reason: "registered; verify its signature and scan it next".into(),
            registered_by: by.clone(),
            registered_at: now,
            updated_by: by,
            updated_at: now,
            deployed_at: None,
        };
        let (m, v) = (row.model.clone(), row.version.clone());
        let stored = blocking(&g, move |gw| {
            let store = gw.store.as_ref();
            store.register_model_version(&row).map_err(GatewayError::from_store)?;
            store.model_version(&m, &v).map_err(GatewayError::from_store)
        })
        .await?;
        let stored = stored.ok_or_else(|| GatewayError::store("the version vanished after it was written"))?;
        Ok((StatusCode::CREATED, version_view(&stored)))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
enum VerifyRequest {
    Key {
        public_key: String,
    },
    Certificate {
        certificate_chain: Vec<String>,
    },
    Sigstore {
        trust_config: Value,
        identity: String,
        identity_provider: String,
    },
}

fn verifier(req: VerifyRequest) -> Result<ztai_supply::signing::Verifier, GatewayError> {
    use ztai_supply::signing::{PublicKey, Verifier, sigstore::SigstoreVerifier};
    let bad = |e: String| GatewayError::Unprocessable(e);
    Ok(match req {
        VerifyRequest::Key { public_key } => {
            Verifier::Key(PublicKey::from_pem(public_key.as_bytes()).map_err(bad)?)
        }
        VerifyRequest::Certificate { certificate_chain } => {
            let pems: Vec<Vec<u8>> = certificate_chain
                .into_iter()
                .map(String::into_bytes)
                .collect();
            Verifier::certificates(&pems).map_err(bad)?
        }
        VerifyRequest::Sigstore {
            trust_config,
            identity,
            identity_provider,
        } => {
            let bytes = match trust_config {
                Value::String(s) => s.into_bytes(),
                other => serde_json::to_vec(&other).unwrap_or_default(),
            };
            Verifier::Sigstore(Box::new(
                SigstoreVerifier::new(&bytes, &identity, &identity_provider).map_err(bad)?,
            ))
        }
    })
}

/// Every regular file under `root` (or `root` itself). Links to files are followed (what a
/// loader would read is what gets scanned); links to directories are not, so a loop cannot trap
/// the walk.
fn files_under(root: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let link = std::fs::symlink_metadata(&p)?.file_type().is_symlink();
        let meta = std::fs::metadata(&p)?;
        if meta.is_dir() && !(link && p != root) {
            for e in std::fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        } else if meta.is_file() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Scans every file of a model; returns (verdict, summary JSON).
fn scan_model(path: &std::path::Path) -> Result<(ztai_supply::scan::Verdict, Value), String> {
    use ztai_supply::scan::{ScanOptions, Verdict, scan_blob};
    let options = ScanOptions::default();
    let mut verdict = Verdict::Clean;
    let mut files = Vec::new();
    for file in files_under(path).map_err(|e| format!("cannot list `{}`: {e}", path.display()))? {
        let f = std::fs::File::open(&file)
            .map_err(|e| format!("cannot read `{}`: {e}", file.display()))?;
        let rel = file
            .strip_prefix(path)
            .unwrap_or(&file)
            .display()
            .to_string();
        let report = scan_blob(&rel, &f, &options);
        verdict = match (verdict, report.verdict) {
            (Verdict::Unsafe, _) | (_, Verdict::Unsafe) => Verdict::Unsafe,
            (Verdict::Incomplete, _) | (_, Verdict::Incomplete) => Verdict::Incomplete,
            _ => Verdict::Clean,
        };
        if report.verdict != Verdict::Clean {
            files.push(json!({"path": rel, "verdict": report.verdict, "findings": report.findings, "incomplete": report.incomplete}));
        }
    }
    Ok((
        verdict,
        json!({"verdict": verdict, "files_not_clean": files}),
    ))
}

pub(super) async fn verify(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let g = gw.clone();
    governed(&gw, &caller, "registry", "admin::verify_model_version", |actor| async move {
        let req: VerifyRequest = parse(
            &body,
            "{\"method\": \"key\", \"public_key\"} or {\"method\": \"certificate\", \"certificate_chain\"} or {\"method\": \"sigstore\", \"trust_config\", \"identity\", \"identity_provider\"}",
        )?;
        let verifier = verifier(req)?;
        let by = format!("{}:{}", actor.kind, actor.id);
        let (n, v) = (name.clone(), version.clone());
        let outcome = blocking(&g, move |gw| {
            let row = {
                let store = gw.store.as_ref();
                store.model_version(&n, &v).map_err(GatewayError::from_store)?
            }
            .ok_or_else(|| GatewayError::NotFound(format!("version `{v}` of model `{n}` is not registered")))?;
            let now = crate::clock::unix_now_i64();
            let model_path = std::path::PathBuf::from(&row.path);
            let sig_path = std::path::PathBuf::from(&row.signature_path);
            // The heavy part runs without the store lock: hashing and scanning the files.
            let bundle_bytes = std::fs::read(&sig_path)
                .map_err(|e| GatewayError::Unprocessable(format!("cannot read the signature `{}`: {e}", sig_path.display())))?;
            let ignore: Vec<String> = sig_path
                .strip_prefix(&model_path)
                .ok()
                .map(|r| vec![r.display().to_string()])
                .unwrap_or_default();
            let verified = ztai_supply::signing::Bundle::parse(&bundle_bytes).and_then(|bundle| {
                ztai_supply::signing::verify_model(&model_path, &bundle, &verifier, &ignore, true, &|_| {})
            });
            let store = gw.store.as_ref();
            let verified = match verified {
                Ok(v) => v,
                Err(e) => {
                    let why = format!("verification failed: {e}");
                    store.note_model_version(&n, &v, &why, None, &by, now).map_err(GatewayError::from_store)?;
                    return Err(GatewayError::Unprocessable(why));
                }
            };
            let fingerprints = verified.signer.fingerprints();
            if let Some(revoked) = store.revoked_model_signer(&fingerprints).map_err(GatewayError::from_store)? {
                let why = format!("signed by revoked signer {}: {}", revoked.fingerprint, revoked.reason);
                store.note_model_version(&n, &v, &why, None, &by, now).map_err(GatewayError::from_store)?;
                return Err(GatewayError::Unprocessable(why));
            }
            let (verdict, scan) = scan_model(&model_path).map_err(GatewayError::Unprocessable)?;
            // The evidence is kept whatever the scan says: who signed a malicious model is what
            // an investigation, and a signer revocation, need.
            let evidence = VerificationEvidence {
                root_digest: verified.manifest.root_digest(),
                signer: serde_json::to_value(&verified.signer).unwrap_or(Value::Null),
                signer_fingerprints: fingerprints,
                scan: scan.clone(),
            };
            let (transition, reason) = match verdict {
                ztai_supply::scan::Verdict::Clean => {
                    (Transition::Verify, "signature verified and every file scanned clean")
                }
                ztai_supply::scan::Verdict::Unsafe => {
                    (Transition::Quarantine, "the malicious-file scan found unsafe content")
                }
                ztai_supply::scan::Verdict::Incomplete => {
                    let why = "the scan could not examine every file; it stays registered";
                    store.note_model_version(&n, &v, why, Some(&scan), &by, now).map_err(GatewayError::from_store)?;
                    return Err(GatewayError::Unprocessable(format!("{why}: {scan}")));
                }
            };
            let changed = store
                .transition_model_version(&VersionMove {
                    model: &n,
                    version: &v,
                    transition,
                    evidence: Some(&evidence),
                    reason,
                    by: &by,
                    now,
                })
                .map_err(GatewayError::from_store)?;
            routes_changed(gw, store)?;
            Ok(changed)
        })
        .await?;
        let first = outcome.first().map(version_view).unwrap_or(Value::Null);
        Ok((StatusCode::OK, first))
    })
    .await
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct MoveBody {
    #[serde(default)]
    reason: String,
}

/// `approve`, `deploy`, `quarantine`, `revoke` and `retire`.
pub(super) async fn transition(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Path((name, version, action)): Path<(String, String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let transition = match Transition::parse(&action) {
        Some(
            t @ (Transition::Approve
            | Transition::Deploy
            | Transition::Quarantine
            | Transition::Revoke
            | Transition::Retire),
        ) => Some(t),
        _ => None,
    };
    let record = match transition {
        Some(Transition::Approve) => "admin::approve_model_version",
        Some(Transition::Deploy) => "admin::deploy_model_version",
        Some(Transition::Quarantine) => "admin::quarantine_model_version",
        Some(Transition::Revoke) => "admin::revoke_model_version",
        Some(Transition::Retire) => "admin::retire_model_version",
        _ => "admin::move_model_version",
    };
    let g = gw.clone();
    governed(&gw, &caller, "registry", record, |actor| async move {
        let transition = transition.ok_or_else(|| {
            GatewayError::NotFound(format!(
                "no lifecycle move `{action}`; use approve, deploy, quarantine, revoke or retire (verify has its own endpoint)"
            ))
        })?;
        let req: MoveBody = if body.is_empty() { MoveBody::default() } else { parse(&body, "{\"reason\": \"…\"}")? };
        if matches!(transition, Transition::Quarantine | Transition::Revoke) && req.reason.trim().is_empty() {
            return Err(GatewayError::Unprocessable(format!("say why: {{\"reason\": \"…\"}} is required to {action}")));
        }
        let by = format!("{}:{}", actor.kind, actor.id);
        let reason = crate::approvals::one_line(&req.reason);
        let changed = blocking(&g, move |gw| {
            let store = gw.store.as_ref();
            let changed = store
                .transition_model_version(&VersionMove {
                    model: &name,
                    version: &version,
                    transition,
                    evidence: None,
                    reason: &reason,
                    by: &by,
                    now: crate::clock::unix_now_i64(),
                })
                .map_err(GatewayError::from_store)?;
            routes_changed(gw, store)?;
            Ok(changed)
        })
        .await?;
        Ok((StatusCode::OK, json!({"changed": changed.iter().map(version_view).collect::<Vec<_>>()})))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeSigner {
    fingerprint: String,
    reason: String,
}

pub(super) async fn revoke_signer(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Response {
    let g = gw.clone();
    governed(
        &gw,
        &caller,
        "registry",
        "admin::revoke_model_signer",
        |actor| async move {
            let req: RevokeSigner = parse(
                &body,
                "{\"fingerprint\": \"<key hint or certificate SHA-256>\", \"reason\": \"…\"}",
            )?;
            if req.fingerprint.trim().is_empty() || req.reason.trim().is_empty() {
                return Err(GatewayError::Unprocessable(
                    "both `fingerprint` and `reason` are required".into(),
                ));
            }
            let by = format!("{}:{}", actor.kind, actor.id);
            let changed = blocking(&g, move |gw| {
                let store = gw.store.as_ref();
                let changed = store
                    .revoke_model_signer(
                        &req.fingerprint,
                        &crate::approvals::one_line(&req.reason),
                        &by,
                        crate::clock::unix_now_i64(),
                    )
                    .map_err(GatewayError::from_store)?;
                routes_changed(gw, store)?;
                Ok(changed)
            })
            .await?;
            Ok((
                StatusCode::OK,
                json!({"revoked": changed.iter().map(version_view).collect::<Vec<_>>()}),
            ))
        },
    )
    .await
}

pub(super) async fn revoked_signers(State(gw): State<Arc<Gateway>>, caller: Caller) -> Response {
    let g = gw.clone();
    governed(&gw, &caller, "registry", "admin::list_revoked_signers", |_| async move {
        let rows = blocking(&g, |gw| {
            gw.store.revoked_model_signers().map_err(GatewayError::from_store)
        })
        .await?;
        let out: Vec<Value> = rows
            .iter()
            .map(|r| json!({"fingerprint": r.fingerprint, "reason": r.reason, "revoked_by": r.revoked_by, "revoked_at": r.revoked_at}))
            .collect();
        Ok((StatusCode::OK, json!({"signers": out})))
    })
    .await
}
