//! Human approval: requests whose permit carries `@obligation("approval")` are held until a
//! person entitled to approve them decides.
//!
//! A held request becomes an approval ticket in the store, bound to exactly what was asked (the
//! principal, its delegation chain, the action, the resource and the digest of the body), so an
//! approval can only ever release that request, once. Depending on `[approvals] mode` the caller
//! waits (up to `wait_secs`) or gets `202 Accepted` with the ticket at once; after approval it
//! resends the same request with `ztai-approval: <ticket>`. Silence until the policy's timeout
//! is a denial. Decisions are made through the admin API by a principal that policy permits to
//! `approve` the ticket and that is not in the request's own chain. Each decision is a signed
//! note over `ztai_core::DecisionStatement`: signed by the approver's own registered key (on
//! their machine, so a stolen bearer credential alone cannot approve when signatures are
//! required), then countersigned with the gateway's signing key (the checkpoint key), stored
//! with the ticket and recorded in the audit log.
//!
//! Waiters in this process are woken at once; the store is also polled, so a decision made
//! through another replica is seen within a poll interval.

use crate::error::GatewayError;
use crate::state::Gateway;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};
pub(crate) use ztai_core::approval::one_line;
use ztai_core::{ApprovalStatus, DecisionStatement};
use ztai_store::ApprovalRow;

/// The request header that carries an approval ticket when a request is resent.
pub(crate) const TICKET_HEADER: &str = "ztai-approval";

const POLL: Duration = Duration::from_millis(500);
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// One request waiting on a decision; its entry in the waiter map goes when it is dropped.
struct Waiter<'a> {
    approvals: &'a Approvals,
    id: String,
    rx: tokio::sync::watch::Receiver<bool>,
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        self.approvals.forget(&self.id);
    }
}

/// In-process waiters and the key that signs decisions.
pub(crate) struct Approvals {
    waiters: Mutex<HashMap<String, tokio::sync::watch::Sender<bool>>>,
    signer: ztai_audit::checkpoint::CheckpointSigner,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals").finish_non_exhaustive()
    }
}

/// What holding a request produced.
pub(crate) enum Held {
    /// Approved: go on, recording the ticket.
    Proceed(String),
    /// Still pending: answer this (202 with the ticket).
    Pending(Response),
}

/// What is being asked, for binding and for approvers to read.
pub(crate) struct HoldRequest<'a> {
    pub requester: String,
    pub chain: Vec<String>,
    pub action: &'a str,
    pub resource: String,
    pub body_digest: &'a str,
    pub approver_group: &'a str,
    pub timeout_secs: u64,
    pub ticket: Option<String>,
    /// Shown to approvers: model, operation, policies, finding types.
    pub summary: Value,
}

impl Approvals {
    pub fn new(signer: ztai_audit::checkpoint::CheckpointSigner) -> Self {
        Approvals {
            waiters: Mutex::new(HashMap::new()),
            signer,
        }
    }

    /// Wakes whoever waits on `id` in this process.
    pub fn notify(&self, id: &str) {
        if let Some(tx) = self
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
        {
            let _ = tx.send(true);
        }
    }

    /// Waits on `id` until the returned guard is dropped, however the wait ends (a decision, an
    /// error returned with `?`, or the request task cancelled).
    fn subscribe(&self, id: &str) -> Waiter<'_> {
        let mut map = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        let rx = map
            .entry(id.to_string())
            .or_insert_with(|| tokio::sync::watch::channel(false).0)
            .subscribe();
        Waiter {
            approvals: self,
            id: id.to_string(),
            rx,
        }
    }

    /// How many requests wait on a decision in this process.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn forget(&self, id: &str) {
        self.waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// A decision signed by the gateway alone (when approver signatures are optional and the
    /// approver sent none).
    pub fn sign_decision(&self, statement: &DecisionStatement<'_>) -> String {
        self.signer.sign_note(&statement.text())
    }

    /// The gateway's countersignature added to a note the approver signed (and that has been
    /// verified against the approver's key).
    pub fn countersign(&self, note: &str) -> Result<String, GatewayError> {
        self.signer
            .cosign(note)
            .map_err(|e| GatewayError::Unprocessable(format!("the signed decision: {e}")))
    }
}

/// The statement a decision on `row` signs.
pub(crate) fn statement_for<'a>(
    row: &'a ApprovalRow,
    approved: bool,
    by: &'a str,
    at: i64,
    reason: &'a str,
) -> DecisionStatement<'a> {
    DecisionStatement {
        approval_id: &row.approval_id,
        approved,
        approver: by,
        requester: &row.requester,
        resource: &row.resource,
        request_digest: &row.request_digest,
        decided_at: at,
        reason,
    }
}

/// Where a ticket stands at a given moment, as callers and approvers see it: the stored status,
/// except that a pending request past its deadline has expired and an approval already spent
/// is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TicketState {
    Pending,
    Approved,
    Used,
    Denied,
    Expired,
}

impl TicketState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            TicketState::Pending => "pending",
            TicketState::Approved => "approved",
            TicketState::Used => "used",
            TicketState::Denied => "denied",
            TicketState::Expired => "expired",
        }
    }
}

/// The state a row is in at `now`.
pub(crate) fn effective_status(row: &ApprovalRow, now: i64) -> TicketState {
    match row.status {
        ApprovalStatus::Pending if now >= row.expires_at => TicketState::Expired,
        ApprovalStatus::Pending => TicketState::Pending,
        ApprovalStatus::Approved if row.used_at.is_some() => TicketState::Used,
        ApprovalStatus::Approved => TicketState::Approved,
        ApprovalStatus::Denied => TicketState::Denied,
        ApprovalStatus::Expired => TicketState::Expired,
    }
}

/// How long an approved ticket stays spendable: the policy's timeout again, from the decision.
fn spend_deadline(row: &ApprovalRow) -> i64 {
    let window = row.expires_at.saturating_sub(row.created_at).max(1);
    row.decided_at
        .unwrap_or(row.created_at)
        .saturating_add(window)
}

/// What an approval is bound to. Every part is length-prefixed (and the chain counted), so no
/// two different requests hash alike by moving bytes between parts. The approver group is in it:
/// a policy change that moves the approval to another group voids earlier tickets.
fn binding(req: &HoldRequest<'_>) -> String {
    let mut h = Sha256::new();
    h.update(b"ztai-approval-binding/v2\n");
    h.update((req.chain.len() as u64).to_le_bytes());
    let parts = std::iter::once(req.requester.as_str())
        .chain(req.chain.iter().map(String::as_str))
        .chain([
            req.action,
            req.resource.as_str(),
            req.body_digest,
            req.approver_group,
        ]);
    for part in parts {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

fn new_ticket() -> String {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    format!("apr_{}", hex::encode(b))
}

async fn load(gw: &Arc<Gateway>, id: &str) -> Result<Option<ApprovalRow>, GatewayError> {
    let (g, id) = (gw.clone(), id.to_string());
    tokio::task::spawn_blocking(move || g.store.get_approval(&id))
        .await
        .map_err(GatewayError::store)?
        .map_err(GatewayError::store)
}

async fn spend(gw: &Arc<Gateway>, row: &ApprovalRow) -> Result<bool, GatewayError> {
    let (g, id, until) = (gw.clone(), row.approval_id.clone(), spend_deadline(row));
    tokio::task::spawn_blocking(move || {
        g.store
            .use_approval(&id, crate::clock::unix_now_i64(), until)
    })
    .await
    .map_err(GatewayError::store)?
    .map_err(GatewayError::store)
}

fn denied(row: &ApprovalRow) -> GatewayError {
    GatewayError::Forbidden(format!(
        "approval `{}` was denied by {}: {}",
        row.approval_id,
        row.decided_by.as_deref().unwrap_or("an approver"),
        row.reason.as_deref().unwrap_or("no reason given")
    ))
}

fn expired(row: &ApprovalRow) -> GatewayError {
    GatewayError::Forbidden(format!(
        "approval `{}` timed out: no one in `{}` decided within {} s, and silence means deny; send the request again to ask anew",
        row.approval_id,
        row.approver_group,
        row.expires_at.saturating_sub(row.created_at)
    ))
}

/// The 202 answer for a pending ticket.
fn pending(row: &ApprovalRow) -> Response {
    let expires = UNIX_EPOCH + Duration::from_secs(u64::try_from(row.expires_at).unwrap_or(0));
    let body = json!({
        "approval": {
            "id": row.approval_id,
            "status": "pending",
            "approver_group": row.approver_group,
            "expires_at": crate::record::rfc3339(expires),
            "poll": format!("/v1/approvals/{}", row.approval_id),
        },
        "message": format!(
            "this request needs approval by `{}`; poll {} and, once approved, send the same request again with the header `{TICKET_HEADER}: {}`",
            row.approver_group,
            format_args!("/v1/approvals/{}", row.approval_id),
            row.approval_id
        ),
    });
    let mut resp = (StatusCode::ACCEPTED, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&row.approval_id) {
        resp.headers_mut().insert(TICKET_HEADER, v);
    }
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    resp
}

/// Holds a request for approval, or releases it on an approved ticket.
pub(crate) async fn hold(gw: &Arc<Gateway>, req: HoldRequest<'_>) -> Result<Held, GatewayError> {
    let digest = binding(&req);
    if let Some(ticket) = &req.ticket {
        let row = load(gw, ticket).await?.ok_or_else(|| {
            GatewayError::Forbidden(format!(
                "approval ticket `{}` is unknown; send the request without it to ask for approval",
                one_line(ticket)
            ))
        })?;
        if row.request_digest != digest {
            return Err(GatewayError::Forbidden(format!(
                "approval ticket `{}` was issued for a different request (another caller, chain, resource, body or approver group); resend exactly the request it was issued for",
                row.approval_id
            )));
        }
        return match effective_status(&row, crate::clock::unix_now_i64()) {
            TicketState::Pending => Ok(Held::Pending(pending(&row))),
            TicketState::Expired => Err(expired(&row)),
            TicketState::Denied => Err(denied(&row)),
            TicketState::Approved if spend(gw, &row).await? => Ok(Held::Proceed(row.approval_id)),
            TicketState::Approved | TicketState::Used => Err(GatewayError::Forbidden(format!(
                "approval ticket `{}` has already been used or its window has passed; an approval releases one request",
                row.approval_id
            ))),
        };
    }

    let now = crate::clock::unix_now_i64();
    let timeout = i64::try_from(req.timeout_secs.max(1)).unwrap_or(i64::MAX);
    let row = ApprovalRow {
        approval_id: new_ticket(),
        status: ApprovalStatus::Pending,
        requester: req.requester.clone(),
        chain: req.chain.clone(),
        action: req.action.to_string(),
        resource: req.resource.clone(),
        approver_group: req.approver_group.to_string(),
        request_digest: digest,
        summary: req.summary.clone(),
        created_at: now,
        expires_at: now.saturating_add(timeout),
        decided_by: None,
        decided_at: None,
        reason: None,
        signature: None,
        used_at: None,
        approver_key: None,
    };
    let mut waiter = gw.approvals.subscribe(&row.approval_id);
    let inserted = {
        let (g, r) = (gw.clone(), row.clone());
        tokio::task::spawn_blocking(move || g.store.insert_approval(&r))
            .await
            .map_err(GatewayError::store)
            .and_then(|r| r.map_err(GatewayError::store))
    };
    if let Err(e) = inserted {
        gw.metrics.fail("store");
        return Err(e);
    }
    gw.metrics
        .approvals
        .get_or_create(&crate::metrics::Outcome {
            outcome: "requested",
        })
        .inc();
    notify_webhook(gw, &row);

    if gw.config.approvals.mode == crate::config::ApprovalMode::Ticket {
        return Ok(Held::Pending(pending(&row)));
    }
    // Wait mode: until a decision, the wait, or the policy's timeout, whichever comes first.
    let wait = gw
        .config
        .approvals
        .wait
        .min(Duration::from_secs(req.timeout_secs.max(1)));
    let deadline = tokio::time::Instant::now() + wait;
    let outcome = loop {
        let current = load(gw, &row.approval_id).await?;
        let current = current.unwrap_or_else(|| row.clone());
        match effective_status(&current, crate::clock::unix_now_i64()) {
            TicketState::Approved => {
                break if spend(gw, &current).await? {
                    Ok(Held::Proceed(current.approval_id))
                } else {
                    Err(GatewayError::Forbidden(format!(
                        "approval `{}` was already used",
                        current.approval_id
                    )))
                };
            }
            TicketState::Denied => break Err(denied(&current)),
            TicketState::Expired => break Err(expired(&current)),
            TicketState::Pending | TicketState::Used => {}
        }
        if tokio::time::Instant::now() >= deadline {
            break if crate::clock::unix_now_i64() >= current.expires_at {
                Err(expired(&current))
            } else {
                Ok(Held::Pending(pending(&current)))
            };
        }
        let _ = tokio::time::timeout(
            POLL.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
            waiter.rx.changed(),
        )
        .await;
    };
    drop(waiter);
    outcome
}

/// Carries out an approval obligation for a request being traced: holds it, or lets it go on
/// an approved ticket (recorded among the obligations carried out as `approval:<group>:<ticket>`).
/// `Some(answer)` means the caller is answered with it now (202, still pending). `summary` holds
/// what approvers should see of this kind of request; the policies and finding types are added.
#[expect(
    clippy::too_many_arguments,
    reason = "the traced request, who asks, what for, the obligation's two settings, the ticket and what approvers see are all distinct inputs"
)]
pub(crate) async fn carry_out(
    gw: &Arc<Gateway>,
    trace: &mut crate::record::Trace,
    principal: &ztai_core::Principal,
    action: ztai_core::Action,
    group: &str,
    timeout_secs: u64,
    ticket: Option<String>,
    mut summary: Value,
) -> Result<Option<Response>, GatewayError> {
    if let Some(obj) = summary.as_object_mut() {
        let policies = trace
            .decision
            .as_ref()
            .map(|d| d.policies.clone())
            .unwrap_or_default();
        let finding_types: std::collections::BTreeSet<String> =
            trace.findings.iter().map(|f| f.kind.clone()).collect();
        obj.insert("policies".into(), json!(policies));
        obj.insert("finding_types".into(), json!(finding_types));
    }
    let held = hold(
        gw,
        HoldRequest {
            requester: format!("{}:{}", principal.kind, principal.id),
            chain: principal.chain(),
            action: action.cedar_id(),
            resource: trace.resource.clone(),
            body_digest: &trace.request_digest,
            approver_group: group,
            timeout_secs,
            ticket,
            summary,
        },
    )
    .await?;
    match held {
        Held::Proceed(id) => {
            trace
                .obligations_done
                .push(format!("approval:{group}:{id}"));
            Ok(None)
        }
        Held::Pending(resp) => {
            trace.reason = format!("held for approval by `{group}`");
            Ok(Some(resp))
        }
    }
}

/// Posts a notification of a new approval request, in the background: a slow or failing
/// receiver never holds up the request, and its failures are counted and logged.
fn notify_webhook(gw: &Arc<Gateway>, row: &ApprovalRow) {
    let Some(url) = gw.config.approvals.webhook_url.clone() else {
        return;
    };
    let body = json!({
        "type": "ztai.approval.requested",
        "approval": public_view(row, crate::clock::unix_now_i64()),
        "decide": {
            "approve": format!("POST /api/v1/approvals/{}/approve", row.approval_id),
            "deny": format!("POST /api/v1/approvals/{}/deny", row.approval_id),
        },
    });
    let gw = gw.clone();
    tokio::spawn(async move {
        let result = async {
            let req = http::Request::post(url.as_str())
                .header(header::CONTENT_TYPE, "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(
                    body.to_string(),
                )))
                .map_err(|e| e.to_string())?;
            let resp = tokio::time::timeout(WEBHOOK_TIMEOUT, gw.client.request(req))
                .await
                .map_err(|_| format!("no answer within {} s", WEBHOOK_TIMEOUT.as_secs()))?
                .map_err(|e| e.to_string())?;
            if resp.status().is_success() {
                Ok(())
            } else {
                Err(format!("answered {}", resp.status()))
            }
        }
        .await;
        if let Err(e) = result {
            gw.metrics.fail("approval_webhook");
            tracing::warn!(error = %e, "the approval webhook was not delivered; approvers can still list pending approvals");
        }
    });
}

/// What callers and approvers see of a ticket (never the signature key, always the status as of
/// `now`).
pub(crate) fn public_view(row: &ApprovalRow, now: i64) -> Value {
    let t = |s: i64| {
        crate::record::rfc3339(UNIX_EPOCH + Duration::from_secs(u64::try_from(s).unwrap_or(0)))
    };
    json!({
        "id": row.approval_id,
        "status": effective_status(row, now).as_str(),
        "requester": row.requester,
        "chain": row.chain,
        "action": row.action,
        "resource": row.resource,
        "approver_group": row.approver_group,
        "summary": row.summary,
        "created_at": t(row.created_at),
        "expires_at": t(row.expires_at),
        "decided_by": row.decided_by,
        "decided_at": row.decided_at.map(t),
        "reason": row.reason,
        "request_digest": row.request_digest,
        "signature": row.signature,
        "approver_key": row.approver_key,
    })
}

/// `GET /v1/approvals/{id}`: the requester polls its ticket. Anyone else is told it does not
/// exist, so tickets cannot be probed.
pub async fn poll(
    axum::extract::State(gw): axum::extract::State<Arc<Gateway>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: http::HeaderMap,
    client: Option<axum::Extension<crate::conn::ClientAddr>>,
    peer: Option<axum::Extension<crate::conn::PeerIdentity>>,
) -> Response {
    let request_id = crate::ids::new_request_id();
    let mut trace = crate::record::Trace::new(request_id.clone(), "approval_status");
    trace.client = client
        .map(|axum::Extension(c)| c.0.to_string())
        .unwrap_or_default();
    trace.resource = ztai_core::Resource::Approval(one_line(&id)).to_string();
    let peer = peer.map(|axum::Extension(p)| p);
    let result = status_of(&gw, &id, &headers, peer.as_ref(), &mut trace).await;
    let resp = crate::proxy::finish(&gw, "/v1/approvals", trace, result).await;
    crate::proxy::with_request_id(resp, &request_id)
}

async fn status_of(
    gw: &Arc<Gateway>,
    id: &str,
    headers: &http::HeaderMap,
    peer: Option<&crate::conn::PeerIdentity>,
    trace: &mut crate::record::Trace,
) -> Result<crate::proxy::Answer, GatewayError> {
    let who = crate::proxy::authenticate(gw, headers, peer)?;
    trace.principal = Some(who.principal.clone());
    let me = format!("{}:{}", who.principal.kind, who.principal.id);
    let chain = who.principal.chain();
    let row = load(gw, id)
        .await?
        .filter(|r| r.requester == me && r.chain == chain)
        .ok_or_else(|| {
            GatewayError::NotFound(format!(
                "approval `{}` does not exist (or was not requested by you)",
                one_line(id)
            ))
        })?;
    let body = public_view(&row, crate::clock::unix_now_i64());
    let digest = hex::encode(Sha256::digest(body.to_string().as_bytes()));
    Ok(crate::proxy::Answer::Buffered(
        (StatusCode::OK, axum::Json(body)).into_response(),
        digest,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn request<'a>(chain: Vec<String>, group: &'a str) -> HoldRequest<'a> {
        HoldRequest {
            requester: "agent:bot".into(),
            chain,
            action: "call_tool",
            resource: "Tool::\"t\"".into(),
            body_digest: "d",
            approver_group: group,
            timeout_secs: 60,
            ticket: None,
            summary: Value::Null,
        }
    }

    #[tokio::test]
    async fn a_waiter_is_forgotten_however_its_wait_ends() {
        let (_, signer) = ztai_audit::checkpoint::CheckpointSigner::generate("test").unwrap();
        let a = Approvals::new(signer);
        // Dropped at the end of a scope, as after an error returned with `?`.
        {
            let _w = a.subscribe("t1");
            let _w2 = a.subscribe("t2");
            assert_eq!(a.waiting(), 2);
        }
        assert_eq!(a.waiting(), 0);
        // Dropped with a cancelled task (a client that went away mid-wait).
        let a = std::sync::Arc::new(a);
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let task = {
            let a = a.clone();
            tokio::spawn(async move {
                let mut w = a.subscribe("t3");
                let _ = started_tx.send(());
                let _ = w.rx.changed().await;
            })
        };
        started_rx.await.unwrap();
        assert_eq!(a.waiting(), 1);
        task.abort();
        let _ = task.await;
        assert_eq!(a.waiting(), 0);
    }

    #[test]
    fn a_binding_changes_with_every_part_of_the_request() {
        let base = binding(&request(
            vec!["user:a".into(), "agent:bot".into()],
            "approvers",
        ));
        assert_eq!(
            base,
            binding(&request(
                vec!["user:a".into(), "agent:bot".into()],
                "approvers"
            ))
        );
        // Another approver group, or the same text split differently across the chain.
        assert_ne!(
            base,
            binding(&request(
                vec!["user:a".into(), "agent:bot".into()],
                "admins"
            ))
        );
        assert_ne!(
            base,
            binding(&request(vec!["user:a,agent:bot".into()], "approvers"))
        );
        assert_ne!(base, binding(&request(vec!["user:a".into()], "approvers")));
    }
}
