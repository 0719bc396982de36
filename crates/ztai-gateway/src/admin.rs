//! The admin plane: health, metrics and the versioned control-plane API under `/api/v1`.
//!
//! Every API call is authenticated like a data-plane request, authorised by Cedar (`admin` on an
//! `Api` resource) and recorded in the audit log, so changing who may do what is itself governed
//! and traceable.

use crate::error::GatewayError;
use crate::ids::new_request_id;
use crate::proxy::authenticate;
use crate::record::{Trace, micros, rfc3339};
use crate::state::{Gateway, entry_from_row};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use ztai_core::{Action, Principal, PrincipalKind, Resource};
use ztai_policy::Verdict;

mod agents;
mod approvals;
mod approver_keys;
mod documents;
mod mcp_tools;
mod registry;

pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/risk/{principal}", get(risk))
        .route("/api/v1/keys", get(list_keys).post(create_key))
        .route("/api/v1/keys/{key_id}", delete(revoke_key))
        .route("/api/v1/audit", get(search_audit))
        .route("/api/v1/audit/verify", get(verify_audit))
        .route(
            "/api/v1/audit/checkpoint",
            get(latest_checkpoint).post(sign_checkpoint),
        )
        .route(
            "/api/v1/agents",
            get(agents::list_agents).post(agents::register_agent),
        )
        .route("/api/v1/agents/{agent_id}", delete(agents::revoke_agent))
        .route("/api/v1/tokens", post(agents::issue_token))
        .route(
            "/api/v1/revocations",
            get(agents::list_revocations).post(agents::revoke),
        )
        .route(
            "/api/v1/approver-keys",
            get(approver_keys::list).post(approver_keys::register),
        )
        .route(
            "/api/v1/approver-keys/{key_id}",
            delete(approver_keys::revoke),
        )
        .route(
            "/api/v1/documents",
            get(documents::list).put(documents::upsert),
        )
        .route(
            "/api/v1/documents/{document_id}",
            get(documents::show).delete(documents::delete),
        )
        .route(
            "/api/v1/registry/models",
            get(registry::list).post(registry::create),
        )
        .route("/api/v1/registry/models/{name}", get(registry::show))
        .route(
            "/api/v1/registry/models/{name}/versions",
            post(registry::register_version),
        )
        .route(
            "/api/v1/registry/models/{name}/versions/{version}/verify",
            post(registry::verify),
        )
        .route(
            "/api/v1/registry/models/{name}/versions/{version}/{action}",
            post(registry::transition),
        )
        .route("/api/v1/registry/signers", get(registry::revoked_signers))
        .route(
            "/api/v1/registry/signers/revoke",
            post(registry::revoke_signer),
        )
        .route("/api/v1/mcp/tools", get(mcp_tools::list))
        .route(
            "/api/v1/mcp/tools/{server}/{tool}/approve",
            post(mcp_tools::approve),
        )
        .route(
            "/api/v1/mcp/tools/{server}/{tool}/block",
            post(mcp_tools::block),
        )
        .route("/api/v1/approvals", get(approvals::list))
        .route("/api/v1/approvals/{approval_id}", get(approvals::show))
        .route(
            "/api/v1/approvals/{approval_id}/approve",
            post(approvals::approve),
        )
        .route(
            "/api/v1/approvals/{approval_id}/deny",
            post(approvals::deny),
        )
        .route("/api/v1/policies", get(policies))
        .route("/api/v1/policies/reload", post(reload_policies))
        .route("/api/v1/policies/versions", get(policy_versions))
        .route("/api/v1/policies/versions/{version}", get(policy_version))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            gw.clone(),
            crate::pipeline::detached,
        ))
        // Admin bodies get the same bound as the data plane's (`server.max_body_bytes`) rather
        // than axum's 2 MiB default, so a full 10,000-document registry write fits.
        .layer(axum::extract::DefaultBodyLimit::max(
            gw.config.max_body_bytes,
        ))
        .with_state(gw)
}

/// The admin listener's own 404: it names the admin API, not the data plane's endpoints (which
/// this listener does not serve).
async fn not_found() -> Response {
    GatewayError::NotFound(
        "no such endpoint on the admin listener; the admin API is under /api/v1, with /healthz, /readyz and /metrics beside it; model and MCP traffic goes to the data-plane listener".into(),
    )
    .into_response()
}

pub async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// Ready when the store answers and the audit writer runs.
pub async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    let g = gw.clone();
    // The audit table, not a bare `SELECT 1`: a store whose log cannot be read is not ready.
    let store_ok = tokio::task::spawn_blocking(move || g.store.audit_count().is_ok())
        .await
        .unwrap_or(false);
    if store_ok {
        axum::Json(json!({"status": "ready", "policy_version": gw.policy_version.load(std::sync::atomic::Ordering::Relaxed)})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "not ready", "reason": "the store does not answer"})),
        )
            .into_response()
    }
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        gw.metrics_text(),
    )
        .into_response()
}

/// What an admin handler knows of its caller: the request headers (for the credential) and the
/// socket address the request came from (for the record).
#[derive(Debug)]
pub(crate) struct Caller {
    pub headers: HeaderMap,
    pub client: String,
    /// The verified client certificate, on a TLS listener that asked for one.
    pub peer: Option<crate::conn::PeerIdentity>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Caller {
            headers: parts.headers.clone(),
            client: crate::conn::ClientAddr::of(&parts.extensions),
            peer: parts.extensions.get::<crate::conn::PeerIdentity>().cloned(),
        })
    }
}

/// Authenticates and authorises an admin call on `area`, runs `f`, and records the outcome.
async fn governed<F, Fut>(
    gw: &Arc<Gateway>,
    caller: &Caller,
    area: &str,
    action: &'static str,
    f: F,
) -> Response
where
    F: FnOnce(Principal) -> Fut,
    Fut: std::future::Future<Output = Result<(StatusCode, Value), GatewayError>>,
{
    governed_as(
        gw,
        caller,
        Check::Policy(Action::Admin, Resource::Api(area.to_string()), &[]),
        action,
        f,
    )
    .await
}

/// How `governed_as` authorises a call.
pub(crate) enum Check<'a> {
    /// One question to policy before the handler runs.
    Policy(Action, Resource, &'a [String]),
    /// The handler asks policy itself, per item (listing what the caller may decide); the
    /// resource names what the record shows.
    InHandler(Resource),
}

/// Like `governed`, for any action on any resource (deciding an approval is `approve` on the
/// `Approval`, in its approver group).
pub(crate) async fn governed_as<F, Fut>(
    gw: &Arc<Gateway>,
    caller: &Caller,
    check: Check<'_>,
    action: &'static str,
    f: F,
) -> Response
where
    F: FnOnce(Principal) -> Fut,
    Fut: std::future::Future<Output = Result<(StatusCode, Value), GatewayError>>,
{
    let request_id = new_request_id();
    let mut trace = Trace::new(request_id.clone(), action);
    trace.resource = match &check {
        Check::Policy(_, r, _) | Check::InHandler(r) => r.to_string(),
    };
    trace.client = caller.client.clone();
    let result = async {
        let t = Instant::now();
        let who = authenticate(gw, &caller.headers, caller.peer.as_ref())?;
        let principal = who.principal.clone();
        trace.timings.authenticate_us = micros(t);
        trace.principal = Some(principal.clone());
        let (cedar_action, resource, resource_parents) = match &check {
            Check::Policy(a, r, p) => (*a, r, *p),
            Check::InHandler(_) => return f(principal).await,
        };
        let t = Instant::now();
        let verdict = gw.authorize(
            &who,
            cedar_action,
            resource,
            resource_parents,
            &crate::proxy::request_context(gw, "admin", &caller.client),
        )?;
        trace.timings.authorize_us = micros(t);
        match verdict {
            Verdict::Permit(p) => trace.decision = Some(p.decision().clone()),
            Verdict::Deny(d) => {
                let msg = d.denial_message();
                trace.decision = Some(d);
                return Err(GatewayError::Forbidden(msg));
            }
        }
        f(principal).await
    }
    .await;
    let resp = match result {
        Ok((status, body)) => {
            trace.status = status.as_u16();
            trace.credential = credential_event(action, &body);
            record_decision(&mut trace, action, &body);
            (status, axum::Json(body)).into_response()
        }
        Err(e) => {
            trace.status = e.status().as_u16();
            trace.reason = e.message().to_string();
            e.into_response()
        }
    };
    let ok = resp.status().is_success();
    let resp = match gw.audit.append(gw.record_of(trace)).await {
        Ok(_) => resp,
        Err(e) => {
            gw.metrics.fail("audit");
            if ok {
                GatewayError::AuditUnavailable(e.to_string()).into_response()
            } else {
                resp
            }
        }
    };
    let mut resp = resp;
    if let Ok(v) = request_id.parse() {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// An approval decision's record names who decided with which key, and commits to the signed
/// note stored with the ticket by its SHA-256 (the log is hash-chained, so the note cannot later
/// be swapped without the log showing it).
fn record_decision(trace: &mut Trace, action: &str, body: &Value) {
    if !matches!(action, "approvals::approve" | "approvals::deny") {
        return;
    }
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
    let Some(note) = body.get("signature").and_then(Value::as_str) else {
        return;
    };
    use sha2::Digest;
    trace.response_digest = hex::encode(sha2::Sha256::digest(note.as_bytes()));
    let key = match text("approver_key") {
        "" => "signed by the gateway alone".to_string(),
        k => format!("signed with {k}"),
    };
    trace.reason = format!("{} by {} ({key})", text("status"), text("decided_by"));
}

/// The credential an admin call issued or revoked, read from the answer this module built.
fn credential_event(action: &str, body: &Value) -> Option<ztai_core::CredentialEvent> {
    let operation = match action {
        "admin::create_key" | "admin::issue_token" | "admin::register_approver_key" => {
            ztai_core::CredentialOperation::Issue
        }
        "admin::revoke_key"
        | "admin::revoke"
        | "admin::revoke_agent"
        | "admin::revoke_approver_key" => ztai_core::CredentialOperation::Revoke,
        _ => return None,
    };
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    Some(ztai_core::CredentialEvent {
        operation,
        credential_id: match text("key_id") {
            k if k.is_empty() => text("credential_id"),
            k => k,
        },
        subject: text("principal"),
        groups: body
            .get("groups")
            .and_then(Value::as_array)
            .map(|g| {
                g.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

pub(crate) async fn blocking<T: Send + 'static>(
    gw: &Arc<Gateway>,
    f: impl FnOnce(&Gateway) -> Result<T, GatewayError> + Send + 'static,
) -> Result<T, GatewayError> {
    let g = gw.clone();
    tokio::task::spawn_blocking(move || f(&g))
        .await
        .map_err(GatewayError::store)?
}

async fn risk(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Path(principal): Path<String>,
) -> Response {
    let g = gw.clone();
    governed(&gw, &caller, "risk", "admin::read_risk", |_| async move {
        let score = g.risk.score(&principal, crate::clock::unix_ms());
        Ok((
            StatusCode::OK,
            json!({"principal": principal, "risk_score": score,
                   "half_life_secs": g.config.risk_half_life.as_secs()}),
        ))
    })
    .await
}

async fn whoami(State(gw): State<Arc<Gateway>>, caller: Caller) -> Response {
    let g = gw.clone();
    governed(&gw, &caller, "whoami", "admin::whoami", |p| async move {
        let risk = g
            .risk
            .score(&format!("{}:{}", p.kind, p.id), crate::clock::unix_ms());
        Ok((
            StatusCode::OK,
            json!({"kind": p.kind, "id": p.id, "groups": p.groups, "credential": p.credential_id,
                   "chain": p.chain(), "risk_score": risk}),
        ))
    })
    .await
}

async fn list_keys(State(gw): State<Arc<Gateway>>, caller: Caller) -> Response {
    let g = gw.clone();
    governed(&gw, &caller, "keys", "admin::list_keys", |_| async move {
        let rows = blocking(&g, |gw| gw.store.list_keys().map_err(GatewayError::store)).await?;
        let keys: Vec<Value> = rows
            .iter()
            .map(|r| {
                json!({"key_id": r.key_id, "principal": format!("{}:{}", r.principal_kind, r.principal_id),
                       "groups": r.groups, "label": r.label, "created_at": r.created_at, "revoked_at": r.revoked_at})
            })
            .collect();
        Ok((StatusCode::OK, json!({"keys": keys})))
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub principal_id: String,
    #[serde(default = "default_kind")]
    pub kind: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub label: String,
}

fn default_kind() -> String {
    "user".into()
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
}

async fn create_key(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Response {
    let g = gw.clone();
    governed(&gw, &caller, "keys", "admin::create_key", |actor| async move {
        let req: CreateKey = serde_json::from_slice(&body)
            .map_err(|e| GatewayError::Unprocessable(format!("expected {{\"principal_id\", \"kind\", \"groups\", \"label\"}}: {e}")))?;
        let kind = PrincipalKind::parse(&req.kind)
            .ok_or_else(|| GatewayError::Unprocessable(format!("`kind` `{}` must be user, agent, service or model", req.kind)))?;
        if !valid_name(&req.principal_id) || !req.groups.iter().all(|g| valid_name(g)) {
            return Err(GatewayError::Unprocessable(
                "`principal_id` and `groups` must be 1-128 characters of letters, digits, `-`, `_`, `.` or `@`".into(),
            ));
        }
        let generated = ztai_identity::generate_key();
        let row = ztai_store::KeyRow {
            key_id: generated.key_id.clone(),
            secret_hash: generated.secret_hash.to_vec(),
            principal_kind: kind.as_str().into(),
            principal_id: req.principal_id.clone(),
            groups: req.groups.clone(),
            label: if req.label.is_empty() { format!("created by {}", actor.id) } else { req.label.clone() },
            created_at: rfc3339(SystemTime::now()),
            revoked_at: None,
        };
        let r2 = row.clone();
        blocking(&g, move |gw| {
            gw.store.insert_key(&r2).map_err(GatewayError::store)?;
            if let Some((id, entry)) = entry_from_row(&r2) {
                gw.keys.write().unwrap_or_else(|p| p.into_inner()).insert(id, entry);
            }
            Ok(())
        })
        .await?;
        Ok((
            StatusCode::CREATED,
            json!({"key_id": row.key_id, "api_key": generated.full_key, "principal": format!("{}:{}", kind, req.principal_id),
                   "groups": req.groups, "note": "the api_key is shown once; store it now"}),
        ))
    })
    .await
}

async fn revoke_key(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Path(key_id): Path<String>,
) -> Response {
    let g = gw.clone();
    governed(&gw, &caller, "keys", "admin::revoke_key", |_| async move {
        let id = key_id.clone();
        blocking(&g, move |gw| {
            // Revoke in memory first: the key stops working at once even if the store write fails.
            gw.keys
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .revoke(&id);
            gw.store
                .revoke_key(&id, &rfc3339(SystemTime::now()))
                .map_err(|e| match e {
                    ztai_store::StoreError::NotFound(m) => GatewayError::NotFound(m),
                    other => GatewayError::store(other),
                })
        })
        .await?;
        Ok((StatusCode::OK, json!({"key_id": key_id, "revoked": true})))
    })
    .await
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    pub principal: Option<String>,
    pub action: Option<String>,
    pub decision: Option<String>,
    /// RFC 3339; inclusive.
    pub since: Option<String>,
    /// RFC 3339; exclusive.
    pub until: Option<String>,
    /// A finding kind (`email`) or category (`secret`).
    pub finding: Option<String>,
    /// Only records after this sequence number.
    pub after: Option<i64>,
    pub limit: Option<usize>,
}

async fn search_audit(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Query(q): Query<AuditQuery>,
) -> Response {
    let g = gw.clone();
    governed(
        &gw,
        &caller,
        "audit",
        "admin::search_audit",
        |_| async move {
            if let Some(d) = &q.decision
                && d != "allow"
                && d != "deny"
            {
                return Err(GatewayError::Unprocessable(
                    "`decision` must be allow or deny".into(),
                ));
            }
            let limit = q.limit.unwrap_or(100).min(10_000);
            let time = |t: &Option<String>| {
                t.as_deref()
                    .map(ztai_audit::query_time)
                    .transpose()
                    .map_err(|e| GatewayError::Unprocessable(e.to_string()))
            };
            let filter = ztai_store::AuditFilter {
                since: time(&q.since)?,
                until: time(&q.until)?,
                principal: q.principal,
                action: q.action,
                decision: q.decision,
                finding: q.finding,
                after_seq: q.after,
            };
            let rows = blocking(&g, move |gw| {
                gw.store.audit_search(&filter, limit)
                    .map_err(GatewayError::store)
            })
            .await?;
            // Only rows whose hash and searchable copies check out are shown; the others are
            // named, so a search never presents an edited column as the record.
            let mut records = Vec::with_capacity(rows.len());
            let mut withheld = Vec::new();
            for r in &rows {
                let problems = ztai_audit::row_problems(r);
                if !problems.is_empty() {
                    g.metrics.fail("audit_integrity");
                    withheld.push(json!({"seq": r.seq, "problems": problems.iter().map(|p| p.to_string()).collect::<Vec<_>>()}));
                    continue;
                }
                let mut v: Value = serde_json::from_str(&r.record_json).unwrap_or(Value::Null);
                if let Some(o) = v.as_object_mut() {
                    o.insert("seq".into(), json!(r.seq));
                    o.insert("hash".into(), json!(hex::encode(&r.hash)));
                }
                records.push(v);
            }
            let body = if withheld.is_empty() {
                json!({"records": records})
            } else {
                json!({"records": records, "withheld": withheld})
            };
            Ok((StatusCode::OK, body))
        },
    )
    .await
}

async fn verify_audit(State(gw): State<Arc<Gateway>>, caller: Caller) -> Response {
    let g = gw.clone();
    governed(&gw, &caller, "audit", "admin::verify_audit", |_| async move {
        let report = blocking(&g, |gw| {
            let verifier = ztai_audit::checkpoint::CheckpointVerifier::parse(
                &gw.audit_verifier_key,
            )
            .map_err(|e| GatewayError::StageFailed {
                stage: crate::error::Stage::Audit,
                message: e.to_string(),
            })?;
            ztai_audit::verify_log(
                gw.store.as_ref(),
                &ztai_audit::VerifyOptions {
                    verifier: Some(&verifier),
                    external: vec![],
                },
            )
            .map_err(GatewayError::store)
        })
        .await?;
        Ok((
            StatusCode::OK,
            json!({"records": report.records, "head_hash": report.head_hash, "tree_root": report.tree_root,
                   "checkpoints_checked": report.checkpoints_checked, "intact": report.problems.is_empty(),
                   "problems": report.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>()}),
        ))
    })
    .await
}

/// The newest signed checkpoint and the key that verifies it, for publishing elsewhere.
async fn latest_checkpoint(State(gw): State<Arc<Gateway>>, caller: Caller) -> Response {
    let g = gw.clone();
    governed(
        &gw,
        &caller,
        "audit",
        "admin::read_checkpoint",
        |_| async move {
            let latest = blocking(&g, |gw| {
                let store = gw.store.as_ref();
                store.latest_checkpoint().map_err(GatewayError::store)
            })
            .await?;
            Ok((
                StatusCode::OK,
                json!({"checkpoint": latest.map(|c| c.note), "verifier_key": g.audit_verifier_key}),
            ))
        },
    )
    .await
}

/// Signs a checkpoint now (if records were added since the last one).
async fn sign_checkpoint(State(gw): State<Arc<Gateway>>, caller: Caller) -> Response {
    let g = gw.clone();
    governed(&gw, &caller, "audit", "admin::sign_checkpoint", |_| async move {
        let note = g.audit.checkpoint_now().await.map_err(|e| {
            g.metrics.fail("audit");
            GatewayError::AuditUnavailable(e.to_string())
        })?;
        Ok((
            StatusCode::OK,
            json!({"signed": note.is_some(), "checkpoint": note, "verifier_key": g.audit_verifier_key}),
        ))
    })
    .await
}

async fn policies(State(gw): State<Arc<Gateway>>, caller: Caller) -> Response {
    let g = gw.clone();
    governed(&gw, &caller, "policies", "admin::read_policies", |_| async move {
        let engine = g.policy.load();
        Ok((
            StatusCode::OK,
            json!({"version": g.policy_version.load(std::sync::atomic::Ordering::Relaxed), "digest": engine.digest(),
                   "policies": engine.policy_count(), "files": engine.sources().iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
                   "directory": g.config.policy_dir.display().to_string()}),
        ))
    })
    .await
}

/// File name → text of a stored policy set.
fn files_of(row: &ztai_store::PolicySetRow) -> std::collections::BTreeMap<String, String> {
    serde_json::from_str(&row.policies_json).unwrap_or_default()
}

/// What changed from `before` to `after`: files added, removed and modified.
fn changes(
    before: Option<&std::collections::BTreeMap<String, String>>,
    after: &std::collections::BTreeMap<String, String>,
) -> Value {
    let empty = std::collections::BTreeMap::new();
    let before = before.unwrap_or(&empty);
    let added: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    let removed: Vec<&String> = before.keys().filter(|k| !after.contains_key(*k)).collect();
    let modified: Vec<&String> = after
        .iter()
        .filter(|(k, v)| before.get(*k).is_some_and(|b| b != *v))
        .map(|(k, _)| k)
        .collect();
    json!({"added": added, "removed": removed, "modified": modified})
}

#[derive(Debug, Deserialize)]
struct VersionsQuery {
    before: Option<i64>,
    limit: Option<usize>,
}

/// The history of the policy set: each version with who made it live and what changed.
async fn policy_versions(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Query(q): Query<VersionsQuery>,
) -> Response {
    let g = gw.clone();
    governed(
        &gw,
        &caller,
        "policies",
        "admin::policy_versions",
        |_| async move {
            let limit = q.limit.unwrap_or(50).clamp(1, 500);
            // One more than shown, so the oldest shown version's changes can be computed.
            let rows = blocking(&g, move |gw| {
                gw.store
                    .list_policy_sets(q.before, limit + 1)
                    .map_err(GatewayError::store)
            })
            .await?;
            let files: Vec<_> = rows.iter().map(files_of).collect();
            let versions: Vec<Value> = rows
                .iter()
                .take(limit)
                .enumerate()
                .map(|(i, r)| {
                    let after = files.get(i).cloned().unwrap_or_default();
                    json!({"version": r.version, "digest": r.digest, "author": r.author,
                       "source": r.source, "created_at": r.created_at,
                       "files": after.keys().collect::<Vec<_>>(),
                       "changes": changes(files.get(i + 1), &after)})
                })
                .collect();
            Ok((StatusCode::OK, json!({"versions": versions})))
        },
    )
    .await
}

/// One stored version with its files.
async fn policy_version(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Path(version): Path<i64>,
) -> Response {
    let g = gw.clone();
    governed(
        &gw,
        &caller,
        "policies",
        "admin::policy_version",
        |_| async move {
            let row = blocking(&g, move |gw| {
                gw.store
                    .get_policy_set(version)
                    .map_err(GatewayError::store)
            })
            .await?
            .ok_or_else(|| {
                GatewayError::NotFound(format!("policy set version {version} does not exist"))
            })?;
            Ok((
                StatusCode::OK,
                json!({"version": row.version, "digest": row.digest, "author": row.author,
                   "source": row.source, "created_at": row.created_at, "files": files_of(&row)}),
            ))
        },
    )
    .await
}

async fn reload_policies(State(gw): State<Arc<Gateway>>, caller: Caller) -> Response {
    let g = gw.clone();
    governed(
        &gw,
        &caller,
        "policies",
        "admin::reload_policies",
        |actor| async move {
            match g
                .reload_policies(&format!("{}:{}", actor.kind, actor.id))
                .await
            {
                Ok(version) => Ok((StatusCode::OK, json!({"version": version, "applied": true}))),
                Err(e) => Err(GatewayError::Unprocessable(format!(
                    "the new policy set was refused and the running one stays: {e}"
                ))),
            }
        },
    )
    .await
}
