//! Deciding held requests under `/api/v1/approvals`.
//!
//! Whoever calls must be permitted by policy to `approve` the ticket (an `Approval` entity in the
//! approver group its policy named) and must not be in the held request's own delegation chain:
//! nobody approves their own request, whatever the policies say. A decision is made once, before
//! the ticket expires; it is signed with the gateway's signing key and recorded in the audit log.
//! Listing shows only the tickets the caller may decide.

use super::{Caller, Check, blocking, governed_as, store_failed};
use crate::approvals::{effective_status, now_unix, public_view};
use crate::error::GatewayError;
use crate::proxy::Authenticated;
use crate::state::Gateway;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use ztai_core::{Action, Principal, PrincipalKind, Resource};
use ztai_policy::Verdict;
use ztai_store::ApprovalRow;

const MAX_LISTED: usize = 500;

/// Whether `principal` may decide `row`: not in its chain, and permitted by policy.
fn may_decide(
    gw: &Gateway,
    principal: &Principal,
    row: &ApprovalRow,
    client: &str,
) -> Result<(), GatewayError> {
    let me = format!("{}:{}", principal.kind, principal.id);
    if row.requester == me || row.chain.contains(&me) {
        return Err(GatewayError::Forbidden(
            "you cannot decide a request you made or that was made on your behalf; another approver must".into(),
        ));
    }
    if principal.kind == PrincipalKind::Agent || !principal.on_behalf_of.is_empty() {
        return Err(GatewayError::Forbidden(
            "approvals are decided by people and services with their own credential, not by agents acting for someone".into(),
        ));
    }
    let who = Authenticated {
        principal: principal.clone(),
        task: None,
    };
    let verdict = gw.authorize(
        &who,
        Action::Approve,
        &Resource::Approval(row.approval_id.clone()),
        std::slice::from_ref(&row.approver_group),
        &crate::proxy::request_context(gw, "approve", client),
    )?;
    match verdict {
        Verdict::Permit(_) => Ok(()),
        Verdict::Deny(d) => Err(GatewayError::Forbidden(format!(
            "you may not decide approvals for `{}`: {}",
            row.approver_group,
            d.denial_message()
        ))),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    /// Include decided and expired tickets too.
    #[serde(default)]
    all: bool,
}

pub(super) async fn list(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Response {
    let g = gw.clone();
    let client = caller.client.clone();
    governed_as(
        &gw,
        &caller,
        Check::InHandler(Resource::Api("approvals".into())),
        "approvals::list",
        |actor| async move {
            let now = now_unix();
            let rows = blocking(&g, move |gw| {
                gw.store
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .list_approvals((!q.all).then_some(now), MAX_LISTED)
                    .map_err(store_failed)
            })
            .await?;
            let mut visible = Vec::new();
            for row in &rows {
                match may_decide(&g, &actor, row, &client) {
                    Ok(()) => visible.push(public_view(row, now)),
                    Err(GatewayError::Forbidden(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok((StatusCode::OK, json!({"approvals": visible})))
        },
    )
    .await
}

async fn load(gw: &Arc<Gateway>, id: String) -> Result<Option<ApprovalRow>, GatewayError> {
    blocking(gw, move |gw| {
        gw.store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_approval(&id)
            .map_err(store_failed)
    })
    .await
}

/// The group a ticket is in, for the policy question; an unknown ticket is in none (and so
/// policy refuses it, without telling the caller whether it exists).
async fn parents_of(gw: &Arc<Gateway>, id: &str) -> Vec<String> {
    match load(gw, id.to_string()).await {
        Ok(Some(row)) => vec![row.approver_group],
        _ => Vec::new(),
    }
}

pub(super) async fn show(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let parents = parents_of(&gw, &id).await;
    let g = gw.clone();
    let client = caller.client.clone();
    governed_as(
        &gw,
        &caller,
        Check::Policy(Action::Approve, Resource::Approval(id.clone()), &parents),
        "approvals::show",
        |actor| async move {
            let row = load(&g, id.clone())
                .await?
                .ok_or_else(|| GatewayError::NotFound(format!("approval `{id}` does not exist")))?;
            may_decide(&g, &actor, &row, &client)?;
            let mut view = public_view(&row, now_unix());
            if let Some(obj) = view.as_object_mut() {
                obj.insert(
                    "verifier_key".into(),
                    Value::String(g.audit_verifier_key.clone()),
                );
            }
            Ok((StatusCode::OK, view))
        },
    )
    .await
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct DecisionBody {
    #[serde(default)]
    reason: String,
}

pub(super) async fn approve(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    decide(gw, caller, id, body, true).await
}

pub(super) async fn deny(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    decide(gw, caller, id, body, false).await
}

async fn decide(
    gw: Arc<Gateway>,
    caller: Caller,
    id: String,
    body: axum::body::Bytes,
    approved: bool,
) -> Response {
    let parents = parents_of(&gw, &id).await;
    let g = gw.clone();
    let client = caller.client.clone();
    governed_as(
        &gw,
        &caller,
        Check::Policy(Action::Approve, Resource::Approval(id.clone()), &parents),
        if approved {
            "approvals::approve"
        } else {
            "approvals::deny"
        },
        |actor| async move {
            let parsed: DecisionBody = if body.iter().all(u8::is_ascii_whitespace) {
                DecisionBody::default()
            } else {
                serde_json::from_slice(&body).map_err(|e| {
                    GatewayError::Unprocessable(format!(
                        "the body must be JSON like {{\"reason\": \"…\"}}: {e}"
                    ))
                })?
            };
            let row = load(&g, id.clone())
                .await?
                .ok_or_else(|| GatewayError::NotFound(format!("approval `{id}` does not exist")))?;
            may_decide(&g, &actor, &row, &client)?;
            let now = now_unix();
            match effective_status(&row, now) {
                "pending" => {}
                "expired" => {
                    return Err(GatewayError::Conflict(format!(
                        "approval `{id}` expired before a decision; the request was denied"
                    )));
                }
                other => {
                    return Err(GatewayError::Conflict(format!(
                        "approval `{id}` is already {other}; a decision is made once"
                    )));
                }
            }
            let by = format!("{}:{}", actor.kind, actor.id);
            let reason = crate::approvals::one_line(&parsed.reason);
            let signature = g.approvals.sign_decision(&row, approved, &by, now, &reason);
            let (id2, by2, reason2, sig2) =
                (id.clone(), by.clone(), reason.clone(), signature.clone());
            let decided = blocking(&g, move |gw| {
                gw.store
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .decide_approval(&id2, approved, &by2, now, &reason2, &sig2)
                    .map_err(store_failed)
            })
            .await?;
            if !decided {
                return Err(GatewayError::Conflict(format!(
                    "approval `{id}` was decided by someone else or expired meanwhile"
                )));
            }
            g.approvals.notify(&id);
            g.metrics
                .approvals
                .get_or_create(&crate::metrics::Outcome {
                    outcome: if approved { "approved" } else { "denied" },
                })
                .inc();
            Ok((
                StatusCode::OK,
                json!({
                    "id": id,
                    "status": if approved { "approved" } else { "denied" },
                    "decided_by": by,
                    "reason": reason,
                    "signature": signature,
                    "verifier_key": g.audit_verifier_key,
                }),
            ))
        },
    )
    .await
}
