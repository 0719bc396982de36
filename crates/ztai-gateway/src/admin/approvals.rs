//! Deciding held requests under `/api/v1/approvals`.
//!
//! Whoever calls must be permitted by policy to `approve` the ticket (an `Approval` entity in the
//! approver group its policy named) and must not be in the held request's own delegation chain:
//! nobody approves their own request, whatever the policies say. A decision is made once, before
//! the ticket expires. It arrives signed by the approver (a signed note over the decision
//! statement, made with a key registered for them under `/api/v1/approver-keys`); the gateway
//! rebuilds the statement from the ticket, checks the signature, countersigns the note and
//! records it in the audit log. Unsigned decisions are refused unless `[approvals]
//! signed_decisions = "optional"`, in which case the gateway signs them alone. Listing shows
//! only the tickets the caller may decide.

use super::{Caller, Check, blocking, governed_as};
use crate::approvals::{TicketState, effective_status, public_view};
use crate::clock::unix_now_i64;
use crate::error::GatewayError;
use crate::proxy::Authenticated;
use crate::state::Gateway;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use ztai_core::{Action, DecisionStatement, Principal, PrincipalKind, Resource};
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
            let now = unix_now_i64();
            let rows = blocking(&g, move |gw| {
                gw.store
                    .list_approvals((!q.all).then_some(now), MAX_LISTED)
                    .map_err(GatewayError::store)
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
        gw.store.get_approval(&id).map_err(GatewayError::store)
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
            let mut view = public_view(&row, unix_now_i64());
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
    /// When the approver signed, Unix seconds (the statement's `decided_at`).
    decided_at: Option<i64>,
    /// The decision statement as a note signed by the approver.
    signed_note: Option<String>,
}

/// How far ahead of the gateway's clock an approver's clock may run.
const CLOCK_SKEW_SECS: i64 = 60;
/// Bigger signed notes are not decisions.
const MAX_NOTE_BYTES: usize = 8 * 1024;

/// Checks the approver's signed note against `expected` (the statement rebuilt from the
/// ticket) and the approver's registered keys; returns the countersigned note and the key that
/// signed it.
fn check_signed_decision(
    gw: &Gateway,
    row: &ApprovalRow,
    expected: &DecisionStatement<'_>,
    note: &str,
    now: i64,
) -> Result<(String, String), GatewayError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(GatewayError::Unprocessable(format!(
            "`signed_note` is longer than {MAX_NOTE_BYTES} bytes; a decision is far shorter"
        )));
    }
    let (at, by) = (expected.decided_at, expected.approver);
    if at < row.created_at || at > now.saturating_add(CLOCK_SKEW_SECS) || at >= row.expires_at {
        return Err(GatewayError::Unprocessable(format!(
            "`decided_at` {at} is not a time this ticket could be decided (it was created at {}, expires at {}, and the gateway's clock says {now}); check your clock and sign again",
            row.created_at, row.expires_at
        )));
    }
    let keys = super::approver_keys::active_keys(gw, by)?;
    if keys.is_empty() {
        return Err(GatewayError::Forbidden(format!(
            "no active signing key is registered for {by}; make one with `ztai approvals keygen` and ask an administrator to register it (`ztai approvals register-key`)"
        )));
    }
    let expected = expected.text();
    let signer = keys
        .iter()
        .find(|k| k.verify_note(note).is_ok_and(|body| body == expected))
        .ok_or_else(|| {
            GatewayError::Forbidden(format!(
                "the decision's signature does not verify: it must be {by}'s signature, with a key registered for them and not revoked, over exactly this decision of this ticket (`ztai approvals approve|deny --key FILE` makes one)"
            ))
        })?;
    let countersigned = gw.approvals.countersign(note)?;
    Ok((countersigned, signer.key_ref()))
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
            let now = unix_now_i64();
            match effective_status(&row, now) {
                TicketState::Pending => {}
                TicketState::Expired => {
                    return Err(GatewayError::Conflict(format!(
                        "approval `{id}` expired before a decision; the request was denied"
                    )));
                }
                other => {
                    return Err(GatewayError::Conflict(format!(
                        "approval `{id}` is already {}; a decision is made once",
                        other.as_str()
                    )));
                }
            }
            let by = format!("{}:{}", actor.kind, actor.id);
            let reason = crate::approvals::one_line(&parsed.reason);
            let (signature, approver_key) = match parsed.signed_note.as_deref() {
                Some(note) => {
                    let at = parsed.decided_at.ok_or_else(|| {
                        GatewayError::Unprocessable(
                            "a signed decision needs `decided_at`, the Unix time in its statement"
                                .into(),
                        )
                    })?;
                    let (row2, by2, reason2, note2) =
                        (row.clone(), by.clone(), reason.clone(), note.to_string());
                    let (signed, key) = blocking(&g, move |gw| {
                        let expected = crate::approvals::statement_for(
                            &row2, approved, &by2, at, &reason2,
                        );
                        check_signed_decision(gw, &row2, &expected, &note2, now)
                    })
                    .await?;
                    (signed, Some(key))
                }
                None if g.config.approvals.require_approver_signature => {
                    return Err(GatewayError::Unprocessable(format!(
                        "this gateway accepts only decisions signed by the approver's own registered key: decide with `ztai approvals {} {id} --key FILE` (or send `decided_at` and `signed_note`)",
                        if approved { "approve" } else { "deny" }
                    )));
                }
                None => (
                    g.approvals.sign_decision(&crate::approvals::statement_for(
                        &row, approved, &by, now, &reason,
                    )),
                    None,
                ),
            };
            let (id2, by2, reason2, sig2, key2) = (
                id.clone(),
                by.clone(),
                reason.clone(),
                signature.clone(),
                approver_key.clone(),
            );
            let decided = blocking(&g, move |gw| {
                gw.store.decide_approval(&id2, approved, &by2, now, &reason2, &sig2, key2.as_deref())
                    .map_err(GatewayError::store)
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
                    outcome: ztai_core::ApprovalStatus::decided(approved).as_str(),
                })
                .inc();
            Ok((
                StatusCode::OK,
                json!({
                    "id": id,
                    "status": ztai_core::ApprovalStatus::decided(approved).as_str(),
                    "decided_by": by,
                    "reason": reason,
                    "signature": signature,
                    "approver_key": approver_key,
                    "verifier_key": g.audit_verifier_key,
                }),
            ))
        },
    )
    .await
}
