//! `POST /v1/authorize`: the decision point for enforcement points outside the gateway — an
//! agent framework about to call a tool, a retriever about to read a document, a worker about to
//! reach a destination.
//!
//! It asks exactly what the gateway's own paths ask: the caller is authenticated the same way
//! (keys, JWTs, task tokens with their scope and the agent's ceiling, certificates), the tool
//! arguments are inspected and shown to policy (`context.arguments`), the risk score, address,
//! zone and clock are in the context, and the permit's obligations are carried out here —
//! `approval` holds the call like a model request (202 and a ticket, or a wait), `redact` answers
//! with the arguments to use instead, `log_full` records them. Every question is recorded. The
//! caller must then do only what was allowed; the MCP proxy (issue 7) will enforce it itself.

use crate::error::GatewayError;
use crate::ids::new_request_id;
use crate::proxy::{
    Answer, authenticate_traced, finish, read_body, request_context, with_request_id,
};
use crate::record::{Trace, micros};
use crate::redaction::LazySession;
use crate::state::Gateway;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;
use ztai_core::{Action, Channel, Finding, Obligation, Resource};
use ztai_policy::Verdict;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthorizeRequest {
    /// `call_tool`, `read_document` or `egress`.
    action: String,
    /// `tool:<name>`, `document:<id>` or `destination:<host>`.
    resource: String,
    /// The tool call's arguments (a JSON object); only for `call_tool`.
    #[serde(default)]
    arguments: Option<Value>,
}

pub async fn authorize(State(gw): State<Arc<Gateway>>, req: Request<Body>) -> Response {
    let request_id = new_request_id();
    let mut trace = Trace::new(request_id.clone(), "authorize");
    trace.client = crate::conn::ClientAddr::of(req.extensions());
    let result = decide(&gw, req, &mut trace).await;
    let resp = finish(&gw, "/v1/authorize", trace, result).await;
    with_request_id(resp, &request_id)
}

/// Inspects every string in the arguments; findings by JSON pointer.
pub(crate) fn inspect_arguments(
    gw: &Gateway,
    value: &Value,
    pointer: &str,
    out: &mut Vec<(String, String, Vec<Finding>)>,
) -> Result<(), GatewayError> {
    match value {
        Value::String(s) => {
            let f = gw.inspector.inspect(s, Channel::Input).map_err(|e| {
                gw.metrics.fail("inspect");
                GatewayError::StageFailed {
                    stage: crate::error::Stage::Inspect,
                    message: format!(
                        "inspecting the arguments failed, so the call was refused: {e}"
                    ),
                }
            })?;
            out.push((pointer.to_string(), s.clone(), f));
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                inspect_arguments(gw, v, &format!("{pointer}/{i}"), out)?;
            }
        }
        Value::Object(m) => {
            for (k, v) in m {
                let key = k.replace('~', "~0").replace('/', "~1");
                inspect_arguments(gw, v, &format!("{pointer}/{key}"), out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Carries out a `redact` obligation on tool arguments: every inspected string with a finding in
/// one of `categories` (all categories when none are named) is redacted in place, as
/// `inspect.redaction` says, within the caller's redaction session.
pub(crate) fn redact_arguments(
    inspected: &[(String, String, Vec<Finding>)],
    categories: &[String],
    arguments: &mut Value,
    session: &mut LazySession<'_>,
) -> Result<(), GatewayError> {
    let cats = crate::proxy::categories_of(categories);
    for (pointer, text, findings) in inspected {
        if findings
            .iter()
            .any(|f| cats.is_empty() || cats.contains(&f.category))
            && let Some(slot) = arguments.pointer_mut(pointer)
        {
            *slot = Value::String(session.redact(text, findings, &cats, Instant::now())?);
        }
    }
    Ok(())
}

async fn decide(
    gw: &Arc<Gateway>,
    req: Request<Body>,
    trace: &mut Trace,
) -> Result<Answer, GatewayError> {
    let who = authenticate_traced(gw, &req, trace)?;
    crate::proxy::principal_limit(gw, &who.principal)?;
    let ticket = req
        .headers()
        .get(crate::approvals::TICKET_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let redaction_header = req.headers().get(crate::redaction::SESSION_HEADER).cloned();
    let bytes = read_body(gw, req).await?;
    trace.request_digest = hex::encode(Sha256::digest(&bytes));
    let body: AuthorizeRequest = serde_json::from_slice(&bytes).map_err(|e| {
        GatewayError::Unprocessable(format!(
            "expected {{\"action\": \"call_tool\"|\"read_document\"|\"egress\", \"resource\": \"tool:<name>\", \"arguments\": {{…}}}}: {e}"
        ))
    })?;
    let action = match body.action.as_str() {
        "call_tool" => Action::CallTool,
        "read_document" => Action::ReadDocument,
        "egress" => Action::Egress,
        other => {
            return Err(GatewayError::Unprocessable(format!(
                "`{}` cannot be asked here: use call_tool, read_document or egress (models are reached through /v1/chat/completions and the other model endpoints)",
                crate::approvals::one_line(other)
            )));
        }
    };
    let resource = Resource::parse(&body.resource)
        .filter(|r| !r.id().is_empty() && r.id().len() <= 256)
        .filter(|r| {
            matches!(
                (action, r),
                (Action::CallTool, Resource::Tool(_))
                    | (Action::ReadDocument, Resource::Document(_))
                    | (Action::Egress, Resource::Destination(_))
            )
        })
        .ok_or_else(|| {
            GatewayError::Unprocessable(format!(
                "`{}` is not a resource for `{}`: write tool:<name>, document:<id> or destination:<host> to match the action",
                crate::approvals::one_line(&body.resource),
                body.action
            ))
        })?;
    trace.action = action.cedar_id();
    trace.resource = resource.to_string();
    if body.arguments.is_some() && action != Action::CallTool {
        return Err(GatewayError::Unprocessable(
            "only call_tool takes arguments".into(),
        ));
    }

    // Inspect the arguments' text.
    let t = Instant::now();
    let arguments = body.arguments.unwrap_or_else(|| json!({}));
    let mut inspected = Vec::new();
    inspect_arguments(gw, &arguments, "", &mut inspected)?;
    for (_, _, f) in &inspected {
        trace.findings.extend(f.iter().cloned());
    }
    trace.timings.inspect_input_us = micros(t);

    let t = Instant::now();
    let mut ctx = request_context(gw, body.action.as_str(), &trace.client)
        .with_findings(trace.findings.iter())
        .with_arguments(&arguments)
        .map_err(|e| GatewayError::Unprocessable(e.to_string()))?;
    ctx.risk_score = gw.observe_risk(&who.principal, trace.findings.iter());
    // What the caller's task has read through MCP sessions, for data-flow rules.
    ctx.session_taint = crate::mcp::task_taint(gw, &who).await?;
    // The catalogue places the resource in its groups and says what data it holds; a resource
    // it does not list has neither, and only a policy naming it directly can allow it.
    let entry = gw.catalogue_entry(&resource).unwrap_or_default();
    entry.facts().apply(&mut ctx);
    let verdict = gw.authorize(&who, action, &resource, &entry.groups, &ctx)?;
    trace.timings.authorize_us = micros(t);
    let permit = match verdict {
        Verdict::Permit(p) => {
            trace.decision = Some(p.decision().clone());
            p
        }
        Verdict::Deny(d) => {
            let msg = d.denial_message();
            trace.reason = msg.clone();
            trace.decision = Some(d);
            return Err(GatewayError::Forbidden(msg));
        }
    };

    let mut answer_arguments = arguments.clone();
    // Arguments are redacted in the caller's redaction session, which it names with
    // `x-ztai-session` (tokens it gets back can then be revealed to the user it acts for).
    let mut redaction = LazySession::new(
        &gw.redaction,
        crate::redaction::owner_of(&who.principal),
        redaction_header,
    )?;
    let mut log_full = false;
    for o in &permit.decision().obligations {
        match o {
            Obligation::Redact { categories } => {
                redact_arguments(
                    &inspected,
                    categories,
                    &mut answer_arguments,
                    &mut redaction,
                )?;
                trace.obligations_done.push(o.label());
            }
            Obligation::LogFull => {
                log_full = true;
                trace.obligations_done.push(o.label());
            }
            Obligation::Approval {
                group,
                timeout_secs,
            } => {
                let summary = json!({
                    "action": action.cedar_id(),
                    "resource": trace.resource,
                    "argument_paths": ctx.arguments.keys().collect::<Vec<_>>(),
                });
                if let Some(pending) = crate::approvals::carry_out(
                    gw,
                    trace,
                    &who.principal,
                    action,
                    group,
                    *timeout_secs,
                    ticket.clone(),
                    summary,
                )
                .await?
                {
                    return Ok(Answer::Buffered(pending, String::new()));
                }
            }
        }
    }
    if log_full {
        trace.content = Some(
            json!({"request": {"action": body.action, "resource": body.resource, "arguments": arguments}}),
        );
    }
    let d = permit.decision();
    let out = json!({
        "decision": "allow",
        "policies": d.policies,
        "reasons": d.reasons,
        "obligations": trace.obligations_done,
        "arguments": answer_arguments,
    });
    let text = out.to_string();
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    let mut resp = (StatusCode::OK, axum::Json(out)).into_response();
    redaction.tag(&mut resp);
    Ok(Answer::Buffered(resp, digest))
}
