//! `POST /v1/tokens`: a user mints a task token for an agent to act for them.
//!
//! The user's own credential (an API key or their identity provider's JWT) is the consent, and
//! its groups are the user's rights the token carries — no administrator states them. Policy
//! decides which users may delegate to which agents (`Action::"delegate"` on the agent, in its
//! registered groups); the agent's ceiling and the token lifetime bound what can be asked for.
//! Agents cannot mint: a holder narrows its token offline instead.

use crate::delegation::MintRequest;
use crate::error::GatewayError;
use crate::ids::new_request_id;
use crate::proxy::{Answer, authenticate_traced, finish, json_answer, read_body, with_request_id};
use crate::record::{Trace, micros};
use crate::state::Gateway;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::Request;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Instant;
use ztai_core::{Action, PrincipalKind, Resource};
use ztai_policy::Verdict;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DelegateRequest {
    agent: String,
    #[serde(default)]
    models: Vec<String>,
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    ttl_secs: Option<u64>,
    #[serde(default)]
    task: Option<String>,
}

pub async fn delegate(State(gw): State<Arc<Gateway>>, req: Request<Body>) -> Response {
    let request_id = new_request_id();
    let mut trace = Trace::new(request_id.clone(), Action::Delegate.cedar_id());
    trace.client = crate::conn::ClientAddr::of(req.extensions());
    let result = mint(&gw, req, &mut trace).await;
    let resp = finish(&gw, "/v1/tokens", trace, result).await;
    with_request_id(resp, &request_id)
}

async fn mint(
    gw: &Arc<Gateway>,
    req: Request<Body>,
    trace: &mut Trace,
) -> Result<Answer, GatewayError> {
    let who = authenticate_traced(gw, &req, trace)?;
    if who.principal.kind != PrincipalKind::User || who.task.is_some() {
        return Err(GatewayError::Forbidden(format!(
            "only a user can delegate to an agent, and `{}:{}` is not one; an agent hands its task on by narrowing its own token (`ztai token attenuate`)",
            who.principal.kind, who.principal.id
        )));
    }
    let bytes = read_body(gw, req).await?;
    let body: DelegateRequest = serde_json::from_slice(&bytes).map_err(|e| {
        GatewayError::Unprocessable(format!(
            "expected {{\"agent\", \"models\", \"tools\", \"resources\", \"ttl_secs\", \"task\"}}: {e}"
        ))
    })?;
    trace.resource = Resource::Agent(body.agent.clone()).to_string();
    let agent = gw.delegation.agent(&body.agent).ok_or_else(|| {
        GatewayError::NotFound(format!(
            "agent `{}` is not registered; ask an administrator to register it",
            body.agent
        ))
    })?;
    let t = Instant::now();
    let verdict = gw.authorize(
        &who,
        Action::Delegate,
        &Resource::Agent(body.agent.clone()),
        &agent.row.groups,
        &crate::proxy::request_context(gw, "delegate", &trace.client),
    )?;
    trace.timings.authorize_us = micros(t);
    match verdict {
        Verdict::Permit(p) => trace.decision = Some(p.decision().clone()),
        Verdict::Deny(d) => {
            let msg = d.denial_message();
            trace.reason = msg.clone();
            trace.decision = Some(d);
            return Err(GatewayError::Forbidden(msg));
        }
    }
    let minted = gw.delegation.mint(
        MintRequest {
            agent: body.agent,
            user: who.principal.id.clone(),
            user_groups: who.principal.groups.clone(),
            models: body.models,
            tools: body.tools,
            resources: body.resources,
            ttl_secs: body.ttl_secs,
            task: body.task,
        },
        gw.config.tokens.max_ttl.as_secs(),
    )?;
    trace.credential = Some(ztai_core::CredentialEvent {
        operation: ztai_core::CredentialOperation::Issue,
        credential_id: minted
            .json
            .get("credential_id")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string(),
        subject: minted
            .json
            .get("principal")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string(),
        groups: who.principal.groups.clone(),
    });
    let out = serde_json::to_vec(&minted.json).map_err(|e| GatewayError::StageFailed {
        stage: crate::error::Stage::Gateway,
        message: e.to_string(),
    })?;
    let answer = json_answer(out)?;
    // A new credential: 201, like the admin API's.
    Ok(match answer {
        Answer::Buffered(mut resp, digest) => {
            *resp.status_mut() = http::StatusCode::CREATED;
            Answer::Buffered(resp, digest)
        }
        other => other,
    })
}
