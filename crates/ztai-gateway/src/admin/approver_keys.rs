//! The approver key registry under `/api/v1/approver-keys`.
//!
//! An approver signs decisions on their own machine with an Ed25519 key; the gateway checks each
//! signed decision against the keys registered here for that approver. Registering and revoking
//! keys are administrative acts (`admin` on `Api::"approver-keys"`), not something an approver's
//! bearer credential can do for itself: whoever steals that credential cannot also mint a key
//! that would make their decisions count. A key is named by its verifier key (`kind:id+keyid`),
//! so the approver it belongs to is part of what it signs.

use super::{Caller, blocking, governed, valid_name};
use crate::error::GatewayError;
use crate::record::rfc3339;
use crate::state::Gateway;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::SystemTime;
use ztai_audit::checkpoint::CheckpointVerifier;
use ztai_core::PrincipalKind;
use ztai_store::{ApproverKeyRow, StoreError};

const MAX_VERIFIER_KEY_LEN: usize = 512;
const MAX_LABEL_CHARS: usize = 200;

fn view(row: &ApproverKeyRow) -> Value {
    json!({
        "key_id": row.key_id,
        "principal": row.principal,
        "verifier_key": row.verifier_key,
        "label": row.label,
        "created_at": row.created_at,
        "created_by": row.created_by,
        "revoked_at": row.revoked_at,
        "revoked_by": row.revoked_by,
    })
}

/// The approver a verifier key names, when it names one that may decide approvals: a user or a
/// service (agents never decide approvals).
fn approver_of(verifier: &CheckpointVerifier) -> Result<String, GatewayError> {
    let name = verifier.name();
    let bad = || {
        GatewayError::Unprocessable(format!(
            "the key is named `{name}`, which is not an approver: its name must be `user:<id>` or `service:<id>` (make it with `ztai approvals keygen`)"
        ))
    };
    let (kind, id) = name.split_once(':').ok_or_else(bad)?;
    match PrincipalKind::parse(kind) {
        Some(PrincipalKind::User | PrincipalKind::Service) if valid_name(id) => {
            Ok(name.to_string())
        }
        _ => Err(bad()),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    principal: Option<String>,
}

pub(super) async fn list(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Response {
    let g = gw.clone();
    governed(
        &gw,
        &caller,
        "approver-keys",
        "admin::list_approver_keys",
        |_| async move {
            let rows = blocking(&g, move |gw| {
                gw.store
                    .list_approver_keys(q.principal.as_deref())
                    .map_err(GatewayError::store)
            })
            .await?;
            Ok((
                StatusCode::OK,
                json!({"keys": rows.iter().map(view).collect::<Vec<_>>()}),
            ))
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterKey {
    verifier_key: String,
    #[serde(default)]
    label: String,
}

pub(super) async fn register(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Response {
    let g = gw.clone();
    governed(
        &gw,
        &caller,
        "approver-keys",
        "admin::register_approver_key",
        |actor| async move {
            let req: RegisterKey = serde_json::from_slice(&body).map_err(|e| {
                GatewayError::Unprocessable(format!(
                    "expected {{\"verifier_key\": \"user:<id>+<keyid>+<key>\", \"label\": \"…\"}}: {e}"
                ))
            })?;
            let text = req.verifier_key.trim();
            if text.len() > MAX_VERIFIER_KEY_LEN {
                return Err(GatewayError::Unprocessable(format!(
                    "`verifier_key` is longer than {MAX_VERIFIER_KEY_LEN} bytes; an Ed25519 verifier key is far shorter"
                )));
            }
            let verifier = CheckpointVerifier::parse(text).map_err(|e| {
                GatewayError::Unprocessable(format!(
                    "`verifier_key` is not a verifier key ({e}); use the `.pub` file `ztai approvals keygen` wrote"
                ))
            })?;
            let principal = approver_of(&verifier)?;
            let row = ApproverKeyRow {
                key_id: verifier.key_ref(),
                principal: principal.clone(),
                verifier_key: text.to_string(),
                label: ztai_core::approval::one_line(&req.label)
                    .chars()
                    .take(MAX_LABEL_CHARS)
                    .collect(),
                created_at: rfc3339(SystemTime::now()),
                created_by: format!("{}:{}", actor.kind, actor.id),
                revoked_at: None,
                revoked_by: None,
            };
            let r2 = row.clone();
            blocking(&g, move |gw| {
                gw.store.insert_approver_key(&r2)
                    .map_err(|e| match e {
                        StoreError::Conflict(_) => GatewayError::Conflict(format!(
                            "approver key `{}` is already registered (or was, and was revoked); make a new one with `ztai approvals keygen`",
                            r2.key_id
                        )),
                        other => GatewayError::store(other),
                    })
            })
            .await?;
            Ok((StatusCode::CREATED, view(&row)))
        },
    )
    .await
}

pub(super) async fn revoke(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Path(key_id): Path<String>,
) -> Response {
    let g = gw.clone();
    governed(
        &gw,
        &caller,
        "approver-keys",
        "admin::revoke_approver_key",
        |actor| async move {
            let id = key_id.clone();
            let by = format!("{}:{}", actor.kind, actor.id);
            blocking(&g, move |gw| {
                gw.store
                    .revoke_approver_key(&id, &rfc3339(SystemTime::now()), &by)
                    .map_err(|e| match e {
                        StoreError::NotFound(m) => GatewayError::NotFound(m),
                        other => GatewayError::store(other),
                    })
            })
            .await?;
            Ok((StatusCode::OK, json!({"key_id": key_id, "revoked": true})))
        },
    )
    .await
}

/// The active keys registered for `approver`, parsed; a stored key that no longer parses is a
/// store fault, not a reason to accept anything.
pub(super) fn active_keys(
    gw: &Gateway,
    approver: &str,
) -> Result<Vec<CheckpointVerifier>, GatewayError> {
    let rows = gw
        .store
        .list_approver_keys(Some(approver))
        .map_err(GatewayError::store)?;
    rows.iter()
        .filter(|r| r.revoked_at.is_none())
        .map(|r| {
            CheckpointVerifier::parse(&r.verifier_key).map_err(|e| {
                GatewayError::store(format!("approver key `{}` is corrupt: {e}", r.key_id))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ztai_audit::checkpoint::CheckpointSigner;

    #[test]
    fn only_users_and_services_hold_approver_keys() {
        for (name, ok) in [
            ("user:carol", true),
            ("service:ops-bot", true),
            ("agent:support-bot", false),
            ("model:m", false),
            ("carol", false),
            ("user:", false),
            ("user:a/b", false),
        ] {
            let (_, signer) = CheckpointSigner::generate(name).unwrap();
            let v = CheckpointVerifier::parse(&signer.verifier_key()).unwrap();
            assert_eq!(approver_of(&v).is_ok(), ok, "{name}");
        }
    }
}
