//! `POST /v1/retrieval/authorize`: of these candidate documents, which may the caller read?
//!
//! A retriever (a RAG pipeline, an agent framework) sends the ids its search returned, with the
//! chunk text when it has it, and gets back only the ones policy permits, each chunk inspected
//! as untrusted content (indirect prompt injection, secrets, PII) with its findings. What a
//! document is comes from the documents catalogue, never from the caller: its collections,
//! classification, owner, readers and labels. A document the catalogue does not list is
//! withheld, as is one whose permit needs a human approval (a retrieval cannot wait for one).
//!
//! Search results are large (hundreds to thousands of candidates) and the answer is needed
//! before the model call, so the batch is decided by equivalence class: policy cannot tell two
//! documents apart except by the catalogue facts in the question or by naming one of them
//! literally (`PolicyEngine::names`), so each distinct set of facts is decided once and named
//! documents one by one. The task token's scope and the agent's ceiling, which can name
//! documents, are checked for every candidate. One policy set answers the whole batch even if a
//! reload lands meanwhile. The batch is one audit record: who asked, how many candidates, how
//! many were permitted, the findings, and the digests of the question and the answer.

use crate::error::GatewayError;
use crate::ids::new_request_id;
use crate::proxy::{
    Answer, Authenticated, authenticate_traced, finish, read_body, request_context, with_request_id,
};
use crate::record::{Trace, micros};
use crate::state::Gateway;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Instant;
use ztai_core::{Action, Channel, Decision, Finding, Obligation, PolicyDecision, Resource};
use ztai_policy::{BatchDecider, PolicyEngine, RequestContext, Verdict};

/// More candidates than this in one question are refused: split the batch.
pub const MAX_CANDIDATES: usize = 10_000;
/// A candidate's chunk text longer than this (bytes) is refused.
pub const MAX_CHUNK_BYTES: usize = 64 * 1024;
const MAX_ID_BYTES: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetrievalRequest {
    documents: Vec<Candidate>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Candidate {
    id: String,
    /// The chunk the retriever would hand to the model.
    #[serde(default)]
    text: Option<String>,
}

pub async fn authorize(State(gw): State<Arc<Gateway>>, req: Request<Body>) -> Response {
    let request_id = new_request_id();
    let mut trace = Trace::new(request_id.clone(), "read_document");
    trace.client = crate::conn::ClientAddr::of(req.extensions());
    let result = decide(&gw, req, &mut trace).await;
    let resp = finish(&gw, "/v1/retrieval/authorize", trace, result).await;
    with_request_id(resp, &request_id)
}

fn findings_json(findings: &[Finding]) -> Value {
    Value::Array(
        findings
            .iter()
            .map(|f| {
                json!({"type": f.kind, "category": f.category.as_str(), "severity": f.severity.as_str(),
                       "start": f.span.start, "end": f.span.end})
            })
            .collect(),
    )
}

/// One candidate's outcome.
pub(crate) enum Outcome {
    Permitted { obligations: Vec<Obligation> },
    Withheld(String),
}

/// Decides every candidate with one policy set. Pure CPU: run it off the async threads.
pub(crate) fn decide_batch(
    gw: &Gateway,
    engine: &PolicyEngine,
    who: &Authenticated,
    base: &RequestContext,
    candidates: &[(String, Vec<Finding>)],
) -> Result<(Vec<Outcome>, Option<PolicyDecision>), GatewayError> {
    let mut batch = BatchDecider::new(engine);
    // One catalogue for the whole batch, as one policy set.
    let documents = gw.documents.load_full();
    let mut outcomes = Vec::with_capacity(candidates.len());
    let mut first_permit: Option<PolicyDecision> = None;
    let mut first_denial: Option<PolicyDecision> = None;
    for (id, findings) in candidates {
        let resource = Resource::Document(id.clone());
        let Some(entry) = documents.get(id) else {
            outcomes.push(Outcome::Withheld(
                "not in the documents catalogue; only catalogued documents can be released".into(),
            ));
            continue;
        };
        if let Some(denial) = gw.scope_denial(who, Action::ReadDocument, &resource) {
            outcomes.push(Outcome::Withheld(denial.denial_message()));
            continue;
        }
        let facts = entry.facts();
        let verdict = batch.decide(&resource, &facts, findings, || {
            let mut ctx = base.clone().with_findings(findings.iter());
            facts.apply(&mut ctx);
            gw.policy_verdict(
                engine,
                who,
                Action::ReadDocument,
                &resource,
                &entry.groups,
                &ctx,
            )
        })?;
        outcomes.push(match verdict {
            Verdict::Permit(p) => {
                let d = p.decision();
                if d
                    .obligations
                    .iter()
                    .any(|o| matches!(o, Obligation::Approval { .. }))
                {
                    Outcome::Withheld(
                        "reading it needs a human approval, which a retrieval cannot wait for; ask for it with POST /v1/authorize".into(),
                    )
                } else {
                    first_permit.get_or_insert_with(|| d.clone());
                    Outcome::Permitted {
                        obligations: d.obligations.clone(),
                    }
                }
            }
            Verdict::Deny(d) => {
                let msg = d.denial_message();
                first_denial.get_or_insert(d);
                Outcome::Withheld(msg)
            }
        });
    }
    Ok((outcomes, first_permit.or(first_denial)))
}

async fn decide(
    gw: &Arc<Gateway>,
    req: Request<Body>,
    trace: &mut Trace,
) -> Result<Answer, GatewayError> {
    let who = authenticate_traced(gw, &req, trace)?;
    crate::proxy::principal_limit(gw, &who.principal)?;
    let bytes = read_body(gw, req).await?;
    trace.request_digest = hex::encode(Sha256::digest(&bytes));
    let body: RetrievalRequest = serde_json::from_slice(&bytes).map_err(|e| {
        GatewayError::Unprocessable(format!(
            "expected {{\"documents\": [{{\"id\": \"<document id>\", \"text\": \"<chunk, optional>\"}}, …]}}: {e}"
        ))
    })?;
    let n = body.documents.len();
    if n > MAX_CANDIDATES {
        return Err(GatewayError::Unprocessable(format!(
            "{n} candidates is more than {MAX_CANDIDATES} in one question; split the batch"
        )));
    }
    for (i, c) in body.documents.iter().enumerate() {
        if c.id.is_empty() || c.id.len() > MAX_ID_BYTES || c.id.chars().any(char::is_control) {
            return Err(GatewayError::Unprocessable(format!(
                "documents[{i}].id must be 1 to {MAX_ID_BYTES} bytes without control characters"
            )));
        }
        if c.text.as_ref().is_some_and(|t| t.len() > MAX_CHUNK_BYTES) {
            return Err(GatewayError::Unprocessable(format!(
                "documents[{i}].text is longer than {MAX_CHUNK_BYTES} bytes; send smaller chunks"
            )));
        }
    }
    trace.resource = format!("document:* ({n} candidates)");

    let g = gw.clone();
    let client = trace.client.clone();
    let (outcomes, decision, candidates, timings) = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let mut candidates = Vec::with_capacity(n);
        for c in body.documents {
            let findings = match &c.text {
                Some(text) => g.inspector.inspect(text, Channel::Untrusted).map_err(|e| {
                    g.metrics.fail("inspect");
                    GatewayError::StageFailed {
                        stage: crate::error::Stage::Inspect,
                        message: format!(
                            "inspecting document `{}` failed, so the batch was refused: {e}",
                            c.id
                        ),
                    }
                })?,
                None => Vec::new(),
            };
            candidates.push((c.id, findings));
        }
        let inspect_us = micros(t);
        let t = Instant::now();
        // The caller's risk is read, not raised: what a document says is its author's doing.
        let mut base = request_context(&g, "retrieval", &client).with_principal(&who.principal);
        base.risk_score = g.observe_risk(&who.principal, std::iter::empty());
        let engine = g.policy.load_full();
        let (outcomes, decision) = decide_batch(&g, &engine, &who, &base, &candidates)?;
        Ok::<_, GatewayError>((outcomes, decision, candidates, (inspect_us, micros(t))))
    })
    .await
    .map_err(|e| GatewayError::StageFailed {
        stage: crate::error::Stage::Policy,
        message: format!("the retrieval decision failed, so the batch was refused: {e}"),
    })??;
    trace.timings.inspect_input_us = timings.0;
    trace.timings.authorize_us = timings.1;

    let mut permitted = Vec::new();
    let mut withheld = Vec::new();
    for ((id, findings), outcome) in candidates.iter().zip(outcomes) {
        trace.findings.extend(findings.iter().cloned());
        match outcome {
            Outcome::Permitted { obligations } => permitted.push(json!({
                "id": id,
                "obligations": obligations.iter().map(Obligation::label).collect::<Vec<_>>(),
                "findings": findings_json(findings),
            })),
            Outcome::Withheld(reason) => withheld.push(json!({
                "id": id,
                "reason": reason,
                "findings": findings_json(findings),
            })),
        }
    }
    trace.reason = format!("{} of {n} candidate documents permitted", permitted.len());
    trace.decision = Some(match decision {
        Some(mut d) if !permitted.is_empty() => {
            d.decision = Decision::Allow;
            d
        }
        Some(d) => d,
        None => PolicyDecision {
            decision: Decision::Deny,
            policies: Vec::new(),
            reasons: vec![trace.reason.clone()],
            obligations: Vec::new(),
            errors: Vec::new(),
        },
    });
    let out = json!({
        "permitted": permitted,
        "withheld": withheld,
    });
    let text = out.to_string();
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    Ok(Answer::Buffered(
        (StatusCode::OK, axum::Json(out)).into_response(),
        digest,
    ))
}
