//! The data plane: OpenAI-compatible endpoints running the full enforcement path.
//!
//! Each request runs on its own task (`pipeline::detached`), so a client that disconnects cannot
//! cancel the pipeline half-way: the request is still recorded. Forwarding needs a `Permit`, which only the
//! policy engine can produce, so no code path can reach an upstream without authorisation.

use crate::clock::unix_now;
use crate::error::GatewayError;
use crate::ids::new_request_id;
use crate::limits::Rate;
use crate::metrics::{FindingLabels, Outcome, RouteStatus};
use crate::record::{Trace, micros};
use crate::sse::SseParser;
use crate::state::Gateway;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::FutureExt;
use http_body_util::{BodyExt, Full, Limited};
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;
use ztai_core::{Action, Channel, Finding, FindingCategory, Obligation, Principal, Resource};
use ztai_inspect::StreamRedactor;
use ztai_policy::{Permit, RequestContext, Verdict};

/// Which OpenAI endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Chat,
    Completion,
    Embedding,
}

impl Operation {
    fn route(self) -> &'static str {
        match self {
            Operation::Chat => "/v1/chat/completions",
            Operation::Completion => "/v1/completions",
            Operation::Embedding => "/v1/embeddings",
        }
    }

    /// The route label of a streamed answer (embeddings never stream).
    fn stream_route(self) -> &'static str {
        match self {
            Operation::Chat => "/v1/chat/completions(stream)",
            Operation::Completion | Operation::Embedding => "/v1/completions(stream)",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::Completion => "completion",
            Operation::Embedding => "embedding",
        }
    }

    fn upstream_path(self) -> &'static str {
        match self {
            Operation::Chat => "/chat/completions",
            Operation::Completion => "/completions",
            Operation::Embedding => "/embeddings",
        }
    }
}

pub(crate) fn with_request_id(mut resp: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

// ---- handlers -------------------------------------------------------------------------------

pub async fn chat(State(gw): State<Arc<Gateway>>, req: Request<Body>) -> Response {
    run(gw, Operation::Chat, req).await
}

pub async fn completions(State(gw): State<Arc<Gateway>>, req: Request<Body>) -> Response {
    run(gw, Operation::Completion, req).await
}

pub async fn embeddings(State(gw): State<Arc<Gateway>>, req: Request<Body>) -> Response {
    run(gw, Operation::Embedding, req).await
}

async fn run(gw: Arc<Gateway>, op: Operation, req: Request<Body>) -> Response {
    // Already on a detached task (`pipeline::detached`): a client that disconnects cannot cancel
    // the pipeline before it is recorded. A panic is caught here, where the trace still names
    // the principal and what was found, so its record is as full as any other.
    let request_id = new_request_id();
    let mut trace = Trace::new(request_id.clone(), Action::Invoke.cedar_id());
    trace.client = crate::conn::ClientAddr::of(req.extensions());
    let result = AssertUnwindSafe(pipeline(&gw, op, req, &mut trace))
        .catch_unwind()
        .await
        .unwrap_or_else(|payload| {
            let panic = crate::pipeline::panic_message(payload.as_ref());
            gw.metrics.fail("panic");
            tracing::error!(request_id = %trace.request_id, panic = %panic, "the request panicked; answered 500 and recorded");
            trace.reason = format!("internal error: the request panicked ({panic})");
            Err(crate::pipeline::panic_error())
        });
    let resp = finish(&gw, op.route(), trace, result).await;
    with_request_id(resp, &request_id)
}

/// Records the request and produces the answer. A buffered answer is released only after its
/// record is durable; a streamed one records before its final event (see `StreamTask::run`).
pub(crate) async fn finish(
    gw: &Gateway,
    route: &'static str,
    mut trace: Trace,
    result: Result<Answer, GatewayError>,
) -> Response {
    let (resp, streaming) = match result {
        Ok(Answer::Buffered(resp, digest)) => {
            trace.status = resp.status().as_u16();
            trace.response_digest = digest;
            (resp, false)
        }
        Ok(Answer::Streaming(resp)) => (resp, true),
        Err(e) => {
            trace.status = e.status().as_u16();
            if trace.reason.is_empty() {
                trace.reason = e.message().to_string();
            }
            let resp = e.into_response();
            (resp, false)
        }
    };
    if streaming {
        // The stream task records and counts it when it ends.
        return resp;
    }
    let ok = resp.status().as_u16() < 400;
    match record_request(gw, route, trace).await {
        Ok(()) => resp,
        // Fail closed: an answer that could not be recorded is not released.
        Err(e) if ok => GatewayError::AuditUnavailable(e.to_string()).into_response(),
        Err(_) => resp,
    }
}

/// The last stage of every request: count it, log it, and append its record, timing the append
/// and the whole request. An append failure is counted and logged here; what it means for the
/// answer is the caller's decision.
pub(crate) async fn record_request(
    gw: &Gateway,
    route: &'static str,
    trace: Trace,
) -> Result<(), ztai_audit::AuditError> {
    gw.metrics
        .requests
        .get_or_create(&RouteStatus {
            route,
            status: trace.status,
        })
        .inc();
    if let Some(p) = &trace.principal {
        // Input findings were counted before authorisation; what the model answered counts now.
        let output = trace
            .findings
            .iter()
            .filter(|f| f.channel == ztai_core::Channel::Output);
        if output.clone().next().is_some() {
            gw.observe_risk(p, output);
        }
    }
    let started = trace.started;
    let record = gw.record_of(trace);
    log_request(&record);
    let t = Instant::now();
    let appended = gw.audit.append(record).await;
    gw.metrics
        .observe_stage(crate::metrics::TimedStage::Record, t.elapsed());
    gw.metrics
        .request_seconds
        .observe(started.elapsed().as_secs_f64());
    appended.map(|_| ()).map_err(|e| {
        gw.metrics.fail("audit");
        tracing::error!(error = %e, "audit append failed; the request was refused or cut short");
        e
    })
}

/// Logs the request as recorded, so a pseudonymised principal stays pseudonymous in logs too.
fn log_request(record: &ztai_core::AuditRecord) {
    tracing::info!(
        request_id = %record.id,
        principal = %record.principal,
        resource = %record.resource,
        status = record.status,
        findings = record.findings.len(),
        total_us = record.timings.total_us,
        "request"
    );
}

/// What the pipeline produced for the client.
pub(crate) enum Answer {
    /// A complete answer and the SHA-256 of its body.
    Buffered(Response, String),
    /// A stream whose task records it.
    Streaming(Response),
}

// ---- stages ---------------------------------------------------------------------------------

/// Who is asking: the verified principal and, for an agent's task token, the token itself, whose
/// blocks are asked again for every resource the request touches.
#[derive(Debug, Clone)]
pub(crate) struct Authenticated {
    pub principal: Principal,
    pub task: Option<Arc<ztai_identity::task_token::CachedTaskToken>>,
}

/// `authenticate` the request's credential, timed into `trace`, which then names the principal.
pub(crate) fn authenticate_traced<B>(
    gw: &Gateway,
    req: &Request<B>,
    trace: &mut Trace,
) -> Result<Authenticated, GatewayError> {
    let t = Instant::now();
    let who = authenticate(
        gw,
        req.headers(),
        req.extensions().get::<crate::conn::PeerIdentity>(),
    )?;
    trace.timings.authenticate_us = micros(t);
    trace.principal = Some(who.principal.clone());
    Ok(who)
}

pub(crate) fn authenticate(
    gw: &Gateway,
    headers: &HeaderMap,
    peer: Option<&crate::conn::PeerIdentity>,
) -> Result<Authenticated, GatewayError> {
    let presented = match (headers.get(header::AUTHORIZATION), headers.get("x-api-key")) {
        (Some(v), _) => {
            let v = v.to_str().map_err(|_| {
                GatewayError::Unauthenticated("the Authorization header is not valid text".into())
            })?;
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .ok_or_else(|| {
                    GatewayError::Unauthenticated(
                        "the Authorization header must be `Bearer <credential>` (an API key, a JWT or a task token)".into(),
                    )
                })?
                .trim()
                .to_string()
        }
        (None, Some(v)) => v
            .to_str()
            .map_err(|_| {
                GatewayError::Unauthenticated("the x-api-key header is not valid text".into())
            })?
            .trim()
            .to_string(),
        (None, None) => {
            let Some(peer) = peer else {
                return Err(GatewayError::Unauthenticated(
                    ztai_identity::AuthError::Missing.to_string(),
                ));
            };
            // No header credential: the verified client certificate is the credential.
            if gw.config.spiffe.is_empty() {
                return Err(GatewayError::Unauthenticated(
                    "the client certificate was verified, but this gateway maps no certificate to a principal (`[identity.spiffe]`); send a credential in the Authorization header".into(),
                ));
            }
            let principal = gw
                .config
                .spiffe
                .principal(&peer.0)
                .map_err(|e| GatewayError::Unauthenticated(e.to_string()))?;
            gw.delegation.check_principal(&principal)?;
            return Ok(Authenticated {
                principal,
                task: None,
            });
        }
    };
    let principal = if presented.starts_with("eyJ") && presented.matches('.').count() == 2 {
        // A JWT is three base64url parts whose header starts `{"` (`eyJ`).
        if gw.jwt.is_empty() {
            return Err(GatewayError::Unauthenticated(
                "this gateway trusts no JWT issuer; present an API key, or ask an administrator to add your identity provider (`[[identity.jwt]]`)".into(),
            ));
        }
        gw.jwt
            .verify(&presented)
            .map_err(|e| GatewayError::Unauthenticated(e.to_string()))?
    } else if presented.starts_with("ztai_") {
        let keys = gw.keys.read().unwrap_or_else(|p| p.into_inner());
        keys.authenticate(&presented)
            .map_err(|e| GatewayError::Unauthenticated(e.to_string()))?
    } else {
        // Anything else must be a task token: a base64url Biscuit, never short.
        let looks_like_token = presented.len() >= 100
            && presented
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b));
        if !looks_like_token {
            return Err(GatewayError::Unauthenticated(
                "the credential is neither a ZTAI API key (`ztai_<id>_<secret>`), a JWT nor a task token; check what you send in the Authorization header".into(),
            ));
        }
        let (principal, task) = gw.delegation.authenticate(&presented, unix_now())?;
        return Ok(Authenticated {
            principal,
            task: Some(task),
        });
    };
    gw.delegation.check_principal(&principal)?;
    Ok(Authenticated {
        principal,
        task: None,
    })
}

/// The per-principal request limit (`[limits] requests_per_minute`, `request_burst`), one bucket
/// per principal shared by every data-plane path, taken before a body is read.
pub(crate) fn principal_limit(gw: &Gateway, principal: &Principal) -> Result<(), GatewayError> {
    let limits = &gw.config.limits;
    let principal_key = format!("{}:{}", principal.kind, principal.id);
    gw.limiter
        .take(
            &format!("req|{principal_key}"),
            Rate::per_minute(limits.requests_per_minute, limits.request_burst),
            1.0,
            "requests",
            Instant::now(),
        )
        .map_err(|e| GatewayError::RateLimited {
            message: format!(
                "request rate limit reached for `{principal_key}`; retry after {} s",
                e.retry_after_secs
            ),
            retry_after_secs: e.retry_after_secs,
        })
}

pub(crate) async fn read_body(gw: &Gateway, req: Request<Body>) -> Result<Bytes, GatewayError> {
    let max = gw.config.max_body_bytes;
    let too_large = || {
        GatewayError::TooLarge(format!(
            "the request body is larger than the limit of {max} bytes"
        ))
    };
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max as u64
    {
        return Err(too_large());
    }
    let limited = Limited::new(req.into_body(), max);
    match tokio::time::timeout(gw.config.body_read_timeout, limited.collect()).await {
        Err(_) => Err(GatewayError::RequestTimeout(format!(
            "the request body did not arrive within {} ms",
            gw.config.body_read_timeout.as_millis()
        ))),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(too_large())
            } else {
                Err(GatewayError::BadRequest(format!(
                    "could not read the request body: {e}"
                )))
            }
        }
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Where a piece of inspected text lives in the request JSON, so redaction can write it back.
#[derive(Debug, Clone)]
enum TextSlot {
    /// `messages[i].content` (a string)
    Message(usize),
    /// `messages[i].content[j].text`
    MessagePart(usize, usize),
    /// `prompt` / `input` as a string
    Whole(&'static str),
    /// `prompt[i]` / `input[i]`
    Item(&'static str, usize),
    /// `messages[i].tool_calls[k].function.arguments`
    ToolArguments(usize, usize),
    /// Any other string the upstream renders into the prompt (a message's `name`, a tool's or a
    /// schema's descriptions), by JSON pointer.
    Pointer(String),
}

/// Schema keys whose string values an upstream shows the model (OpenAI renders tool and
/// response-format schemas, descriptions included, into the prompt).
const RENDERED_SCHEMA_KEYS: [&str; 2] = ["description", "title"];

/// How deep into a tool or response schema the walk goes; JSON parsing already stops at 128.
const MAX_SCHEMA_DEPTH: usize = 64;

/// A JSON pointer segment (RFC 6901: `~` as `~0`, `/` as `~1`).
fn pointer_segment(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Every rendered string (`description`, `title`) in the JSON schema at `pointer`, at any depth.
fn schema_texts(
    root: &Value,
    pointer: String,
    channel: Channel,
    texts: &mut Vec<(TextSlot, String, Channel)>,
) -> Result<(), GatewayError> {
    let mut stack = vec![(pointer, 0usize)];
    while let Some((at, depth)) = stack.pop() {
        if depth > MAX_SCHEMA_DEPTH {
            return Err(GatewayError::Unprocessable(format!(
                "the schema at `{at}` is nested deeper than {MAX_SCHEMA_DEPTH} levels"
            )));
        }
        match root.pointer(&at) {
            Some(Value::Object(o)) => {
                for (k, v) in o {
                    let here = format!("{at}/{}", pointer_segment(k));
                    match v {
                        Value::String(t) if RENDERED_SCHEMA_KEYS.contains(&k.as_str()) => {
                            texts.push((TextSlot::Pointer(here), t.clone(), channel));
                        }
                        Value::Object(_) | Value::Array(_) => stack.push((here, depth + 1)),
                        _ => {}
                    }
                }
            }
            Some(Value::Array(a)) => {
                for (i, v) in a.iter().enumerate() {
                    if v.is_object() || v.is_array() {
                        stack.push((format!("{at}/{i}"), depth + 1));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The tool definitions of a chat request (`tools[].function`, and the older `functions[]`):
/// their descriptions and parameter schemas are read by the model, and they
/// often come from elsewhere (an MCP server, a plug-in registry), so they are inspected as
/// untrusted content, as the MCP proxy inspects a server's tool list.
fn tool_texts(
    body: &Value,
    texts: &mut Vec<(TextSlot, String, Channel)>,
) -> Result<(), GatewayError> {
    for (field, function) in [("tools", "/function"), ("functions", "")] {
        let Some(list) = body.get(field) else {
            continue;
        };
        let Some(list) = list.as_array() else {
            if list.is_null() {
                continue;
            }
            return Err(GatewayError::Unprocessable(format!(
                "`{field}` must be an array"
            )));
        };
        for i in 0..list.len() {
            schema_texts(
                body,
                format!("/{field}/{i}{function}"),
                Channel::Untrusted,
                texts,
            )?;
        }
    }
    Ok(())
}

#[derive(Debug)]
struct ParsedRequest {
    body: Value,
    model: String,
    stream: bool,
    texts: Vec<(TextSlot, String, Channel)>,
    max_tokens: u64,
}

/// What a request that names no output budget is charged for, in tokens.
const DEFAULT_MAX_TOKENS: u64 = 256;

/// The largest output budget a request may ask for. No model answers with more than a few
/// hundred thousand tokens; the bound keeps every sum over budgets far from overflow.
pub const MAX_OUTPUT_TOKENS: u64 = 1 << 24;

/// `max_completion_tokens` (or the older `max_tokens`), bounded here so that no arithmetic on it
/// downstream can overflow.
fn max_tokens_of(obj: &serde_json::Map<String, Value>) -> Result<u64, GatewayError> {
    let (field, value) = match (obj.get("max_completion_tokens"), obj.get("max_tokens")) {
        (Some(v), _) if !v.is_null() => ("max_completion_tokens", v),
        (_, Some(v)) if !v.is_null() => ("max_tokens", v),
        _ => return Ok(DEFAULT_MAX_TOKENS),
    };
    let n = value.as_u64().ok_or_else(|| {
        GatewayError::Unprocessable(format!("`{field}` must be a non-negative integer"))
    })?;
    if n > MAX_OUTPUT_TOKENS {
        return Err(GatewayError::BadRequest(format!(
            "`{field}` is {n}, above this gateway's limit of {MAX_OUTPUT_TOKENS} tokens; ask for fewer"
        )));
    }
    Ok(n)
}

fn parse_request(op: Operation, bytes: &[u8]) -> Result<ParsedRequest, GatewayError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(GatewayError::BadRequest(
            "the request body is not valid UTF-8".into(),
        ));
    }
    let body: Value = serde_json::from_slice(bytes).map_err(|e| {
        GatewayError::BadRequest(format!("the request body is not valid JSON: {e}"))
    })?;
    let obj = body.as_object().ok_or_else(|| {
        GatewayError::Unprocessable("the request body must be a JSON object".into())
    })?;
    let model = match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => m.clone(),
        Some(_) => {
            return Err(GatewayError::Unprocessable(
                "`model` must be a non-empty string".into(),
            ));
        }
        None => return Err(GatewayError::Unprocessable("`model` is required".into())),
    };
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(GatewayError::Unprocessable(
                "`stream` must be true or false".into(),
            ));
        }
    };
    if stream && op == Operation::Embedding {
        return Err(GatewayError::Unprocessable(
            "embeddings cannot be streamed".into(),
        ));
    }
    let max_tokens = max_tokens_of(obj)?;
    let mut texts = Vec::new();
    match op {
        Operation::Chat => {
            let messages = match obj.get("messages") {
                Some(Value::Array(m)) if !m.is_empty() => m,
                Some(Value::Array(_)) => {
                    return Err(GatewayError::Unprocessable(
                        "`messages` must not be empty".into(),
                    ));
                }
                Some(_) => {
                    return Err(GatewayError::Unprocessable(
                        "`messages` must be an array".into(),
                    ));
                }
                None => return Err(GatewayError::Unprocessable("`messages` is required".into())),
            };
            for (i, m) in messages.iter().enumerate() {
                let role = m.get("role").and_then(Value::as_str).ok_or_else(|| {
                    GatewayError::Unprocessable(format!(
                        "`messages[{i}].role` is required and must be a string"
                    ))
                })?;
                let channel = match role {
                    "system" | "developer" | "user" | "assistant" => Channel::Input,
                    // Tool and function results are data from elsewhere: never instructions.
                    "tool" | "function" => Channel::Untrusted,
                    other => {
                        return Err(GatewayError::Unprocessable(format!(
                            "`messages[{i}].role` `{other}` is not one of system, developer, user, assistant, tool, function"
                        )));
                    }
                };
                match m.get("content") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) => {
                        texts.push((TextSlot::Message(i), s.clone(), channel))
                    }
                    Some(Value::Array(parts)) => {
                        for (j, p) in parts.iter().enumerate() {
                            match p.get("type").and_then(Value::as_str) {
                                Some("text") => {
                                    let t =
                                        p.get("text").and_then(Value::as_str).ok_or_else(|| {
                                            GatewayError::Unprocessable(format!(
                                                "`messages[{i}].content[{j}].text` must be a string"
                                            ))
                                        })?;
                                    texts.push((
                                        TextSlot::MessagePart(i, j),
                                        t.to_string(),
                                        channel,
                                    ));
                                }
                                Some(other) => {
                                    // Content we cannot inspect is refused rather than waved through.
                                    return Err(GatewayError::Unprocessable(format!(
                                        "`messages[{i}].content[{j}]` has type `{other}`, which this gateway cannot inspect; send text parts only"
                                    )));
                                }
                                None => {
                                    return Err(GatewayError::Unprocessable(format!(
                                        "`messages[{i}].content[{j}].type` is required"
                                    )));
                                }
                            }
                        }
                    }
                    Some(_) => {
                        return Err(GatewayError::Unprocessable(format!(
                            "`messages[{i}].content` must be a string, an array of parts, or null"
                        )));
                    }
                }
                match m.get("name") {
                    None | Some(Value::Null) => {}
                    // Upstreams render a participant's name into the prompt beside its words.
                    Some(Value::String(n)) => texts.push((
                        TextSlot::Pointer(format!("/messages/{i}/name")),
                        n.clone(),
                        channel,
                    )),
                    Some(_) => {
                        return Err(GatewayError::Unprocessable(format!(
                            "`messages[{i}].name` must be a string"
                        )));
                    }
                }
                if let Some(Value::Array(calls)) = m.get("tool_calls") {
                    // Arguments of earlier tool calls are inspected as input too.
                    for (k, c) in calls.iter().enumerate() {
                        if let Some(a) = c.pointer("/function/arguments").and_then(Value::as_str) {
                            texts.push((
                                TextSlot::ToolArguments(i, k),
                                a.to_string(),
                                Channel::Input,
                            ));
                        }
                    }
                }
            }
            tool_texts(&body, &mut texts)?;
            // The caller's own answer format: its descriptions are instructions it gives.
            if body.get("response_format").is_some() {
                schema_texts(&body, "/response_format".into(), Channel::Input, &mut texts)?;
            }
        }
        Operation::Completion | Operation::Embedding => {
            let field = if op == Operation::Completion {
                "prompt"
            } else {
                "input"
            };
            match obj.get(field) {
                Some(Value::String(s)) => {
                    texts.push((TextSlot::Whole(field), s.clone(), Channel::Input))
                }
                Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
                    for (i, v) in items.iter().enumerate() {
                        if let Some(s) = v.as_str() {
                            texts.push((TextSlot::Item(field, i), s.to_string(), Channel::Input));
                        }
                    }
                }
                Some(Value::Array(_)) => {
                    return Err(GatewayError::Unprocessable(format!(
                        "`{field}` must be a string or an array of strings; token-id input cannot be inspected"
                    )));
                }
                Some(_) => {
                    return Err(GatewayError::Unprocessable(format!(
                        "`{field}` must be a string or an array of strings"
                    )));
                }
                None => {
                    return Err(GatewayError::Unprocessable(format!(
                        "`{field}` is required"
                    )));
                }
            }
        }
    }
    Ok(ParsedRequest {
        body,
        model,
        stream,
        texts,
        max_tokens,
    })
}

/// Validates an OpenAI request body the way the data plane does, without serving it: the entry
/// point for fuzzing and for tools that want to pre-check requests.
pub fn check_request(op: Operation, bytes: &[u8]) -> Result<(), GatewayError> {
    parse_request(op, bytes).map(|_| ())
}

fn write_text(body: &mut Value, slot: &TextSlot, text: String) {
    let target = match slot {
        TextSlot::Message(i) => body
            .get_mut("messages")
            .and_then(|m| m.get_mut(*i))
            .and_then(|m| m.get_mut("content")),
        TextSlot::MessagePart(i, j) => body
            .get_mut("messages")
            .and_then(|m| m.get_mut(*i))
            .and_then(|m| m.get_mut("content"))
            .and_then(|c| c.get_mut(*j))
            .and_then(|p| p.get_mut("text")),
        TextSlot::Whole(f) => body.get_mut(*f),
        TextSlot::Item(f, i) => body.get_mut(*f).and_then(|v| v.get_mut(*i)),
        TextSlot::ToolArguments(i, k) => body
            .get_mut("messages")
            .and_then(|m| m.get_mut(*i))
            .and_then(|m| m.get_mut("tool_calls"))
            .and_then(|c| c.get_mut(*k))
            .and_then(|c| c.pointer_mut("/function/arguments")),
        TextSlot::Pointer(p) => body.pointer_mut(p),
    };
    if let Some(t) = target {
        *t = Value::String(text);
    }
}

/// The per-request output leak checks of a chat request: its system and developer text (so an
/// answer that repeats it is caught), and, when `inspect.canary` is on, a fresh canary placed in
/// a system message of its own at the start of the conversation.
fn prompt_leak_checks(gw: &Gateway, body: &mut Value) -> Arc<ztai_inspect::PromptLeakChecks> {
    let canary = gw.config.inspect.canary.then(|| {
        let mut random = [0u8; 16];
        rand::rng().fill_bytes(&mut random);
        ztai_inspect::Canary::new(random)
    });
    let messages = body.get_mut("messages").and_then(Value::as_array_mut);
    let mut system = String::new();
    if let Some(messages) = messages {
        for m in messages.iter() {
            let role = m.get("role").and_then(Value::as_str).unwrap_or_default();
            if matches!(role, "system" | "developer") {
                match m.get("content") {
                    Some(Value::String(t)) => system.push_str(t),
                    Some(Value::Array(parts)) => {
                        for p in parts
                            .iter()
                            .filter_map(|p| p.get("text").and_then(Value::as_str))
                        {
                            system.push_str(p);
                            system.push('\n');
                        }
                    }
                    _ => {}
                }
                system.push('\n');
            }
        }
        if let Some(c) = &canary {
            messages.insert(
                0,
                serde_json::json!({"role": "system", "content": c.system_line()}),
            );
        }
    }
    Arc::new(ztai_inspect::PromptLeakChecks::new(canary, &system))
}

pub(crate) fn categories_of(names: &[String]) -> Vec<FindingCategory> {
    names
        .iter()
        .filter_map(|c| FindingCategory::parse(c))
        .collect()
}

async fn pipeline(
    gw: &Arc<Gateway>,
    op: Operation,
    req: Request<Body>,
    trace: &mut Trace,
) -> Result<Answer, GatewayError> {
    // 1. authenticate
    let t = Instant::now();
    let who = authenticate(
        gw,
        req.headers(),
        req.extensions().get::<crate::conn::PeerIdentity>(),
    );
    trace.timings.authenticate_us = micros(t);
    gw.metrics
        .observe_stage(crate::metrics::TimedStage::Authenticate, t.elapsed());
    let who = who?;
    let principal = &who.principal;
    trace.principal = Some(principal.clone());
    let principal_key = format!("{}:{}", principal.kind, principal.id);

    // 2a. per-principal request limit, before the body is read
    let limits = &gw.config.limits;
    let now = Instant::now();
    principal_limit(gw, principal)?;
    // The limit stage is the two limit checks alone; reading and parsing the body between them
    // is not.
    let mut limit_time = now.elapsed();

    let ticket = req
        .headers()
        .get(crate::approvals::TICKET_HEADER)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let session = gw.redaction.open(
        &crate::redaction::owner_of(principal),
        req.headers().get(crate::redaction::SESSION_HEADER),
        now,
    )?;
    let bytes = read_body(gw, req).await?;
    trace.request_digest = hex::encode(Sha256::digest(&bytes));
    let mut parsed = parse_request(op, &bytes)?;
    let model = gw
        .models
        .get(&parsed.model)
        .ok_or_else(|| {
            GatewayError::ModelNotFound(format!(
                "the model `{}` does not exist or you do not have access to it",
                parsed.model
            ))
        })?
        .clone();
    trace.resource = Resource::Model(model.name.clone()).to_string();

    // 2b. per-model limits
    let t = Instant::now();
    let chars: usize = parsed.texts.iter().map(|(_, t, _)| t.chars().count()).sum();
    // Saturating: the estimate is a charge against a budget, never worth a panic.
    let estimated_prompt = u64::try_from(chars).unwrap_or(u64::MAX).div_ceil(4);
    let token_cost = estimated_prompt.saturating_add(if op == Operation::Embedding {
        0
    } else {
        parsed.max_tokens
    }) as f64;
    let token_rate = Rate::per_minute(
        model.tokens_per_minute.unwrap_or(limits.tokens_per_minute),
        model.tokens_per_minute.unwrap_or(limits.tokens_per_minute),
    );
    let token_key = format!("tok|{principal_key}|{}", model.name);
    if let Some(rpm) = model.requests_per_minute {
        gw.limiter
            .take(
                &format!("req|{principal_key}|{}", model.name),
                Rate::per_minute(rpm, rpm),
                1.0,
                "requests",
                now,
            )
            .map_err(|e| GatewayError::RateLimited {
                message: format!(
                    "request rate limit for model `{}` reached; retry after {} s",
                    model.name, e.retry_after_secs
                ),
                retry_after_secs: e.retry_after_secs,
            })?;
    }
    gw.limiter
        .take(&token_key, token_rate, token_cost, "tokens", now)
        .map_err(|e| GatewayError::RateLimited {
            message: format!(
                "token rate limit for model `{}` reached; retry after {} s",
                model.name, e.retry_after_secs
            ),
            retry_after_secs: e.retry_after_secs,
        })?;
    limit_time += t.elapsed();
    trace.timings.limit_us = u64::try_from(limit_time.as_micros()).unwrap_or(u64::MAX);
    gw.metrics
        .observe_stage(crate::metrics::TimedStage::Limit, limit_time);

    // 3. inspect input
    let t = Instant::now();
    let mut per_text: Vec<Vec<Finding>> = Vec::with_capacity(parsed.texts.len());
    for (_, text, channel) in &parsed.texts {
        let f = gw.inspector.inspect(text, *channel).map_err(|e| {
            gw.metrics.fail("inspect");
            match e {
                ztai_inspect::InspectError::TooLarge { .. } => {
                    GatewayError::TooLarge(e.to_string())
                }
                _ => GatewayError::StageFailed {
                    stage: crate::error::Stage::Inspect,
                    message: format!("inspection failed, so the request was refused: {e}"),
                },
            }
        })?;
        per_text.push(f);
    }
    for f in &per_text {
        for finding in f {
            gw.metrics
                .findings
                .get_or_create(&FindingLabels {
                    category: finding.category.as_str(),
                    channel: finding.channel.as_str(),
                })
                .inc();
        }
        trace.findings.extend(f.iter().cloned());
    }
    trace.timings.inspect_input_us = micros(t);
    gw.metrics
        .observe_stage(crate::metrics::TimedStage::InspectInput, t.elapsed());

    // 4. authorise
    let t = Instant::now();
    let mut ctx =
        request_context(gw, op.name(), &trace.client).with_findings(trace.findings.iter());
    ctx.data_classification = model.classification.clone();
    ctx.risk_score = gw.observe_risk(principal, trace.findings.iter());
    ctx.stream = parsed.stream;
    ctx.estimated_tokens = i64::try_from(estimated_prompt).unwrap_or(i64::MAX);
    let verdict = gw.authorize(
        &who,
        Action::Invoke,
        &Resource::Model(model.name.clone()),
        &model.groups,
        &ctx,
    );
    trace.timings.authorize_us = micros(t);
    gw.metrics
        .observe_stage(crate::metrics::TimedStage::Authorize, t.elapsed());
    let permit: Permit = match verdict? {
        Verdict::Permit(p) => {
            gw.metrics
                .decisions
                .get_or_create(&Outcome { outcome: "allow" })
                .inc();
            trace.decision = Some(p.decision().clone());
            p
        }
        Verdict::Deny(d) => {
            gw.metrics
                .decisions
                .get_or_create(&Outcome { outcome: "deny" })
                .inc();
            let msg = d.denial_message();
            trace.reason = msg.clone();
            trace.decision = Some(d);
            return Err(GatewayError::Forbidden(msg));
        }
    };

    // Obligations of the permit.
    let mut log_full = false;
    for o in &permit.decision().obligations {
        match o {
            Obligation::Redact { categories } => {
                let cats = categories_of(categories);
                for ((slot, text, _), f) in parsed.texts.iter().zip(per_text.iter()) {
                    if f.iter()
                        .any(|x| cats.is_empty() || cats.contains(&x.category))
                    {
                        let redacted = session
                            .redactor
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .redact(text, f, &cats);
                        write_text(&mut parsed.body, slot, redacted);
                    }
                }
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
                let summary = json!({"model": model.name, "operation": op.name()});
                if let Some(pending) = crate::approvals::carry_out(
                    gw,
                    trace,
                    principal,
                    Action::Invoke,
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
        trace.content = Some(json!({"request": parsed.body.clone()}));
    }

    // 5. forward
    let mut answer = forward(
        gw,
        op,
        &permit,
        &model,
        parsed,
        trace,
        token_key,
        token_rate,
        token_cost,
        log_full,
        &session.redactor,
    )
    .await?;
    match &mut answer {
        Answer::Buffered(resp, _) | Answer::Streaming(resp) => session.tag(resp),
    }
    Ok(answer)
}

/// The facts every decision gets: the operation, the client's address and its network zone,
/// and the time.
pub(crate) fn request_context(gw: &Gateway, operation: &str, client: &str) -> RequestContext {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let mut ctx = RequestContext::new(operation).at_unix_time(now);
    if let Ok(addr) = client.parse::<std::net::SocketAddr>() {
        // Zones are written in IPv4 for IPv4 clients, whatever socket they came through.
        let ip = addr.ip().to_canonical();
        ctx.client_ip = ip;
        if let Some(zone) = gw.config.zone_of(ip) {
            ctx.network_zone = zone.name.clone();
        }
    }
    ctx
}

fn upstream_error(status: StatusCode, upstream: &str, body: &[u8]) -> GatewayError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .map(|m| m.chars().take(300).collect::<String>())
        .unwrap_or_default();
    match status.as_u16() {
        401 | 403 => GatewayError::UpstreamFailed(format!(
            "upstream `{upstream}` refused the gateway's credential (HTTP {status}); an operator must fix the upstream key"
        )),
        429 => GatewayError::RateLimited {
            message: format!("upstream `{upstream}` is rate limiting; retry later"),
            retry_after_secs: 1,
        },
        400..=499 => GatewayError::Unprocessable(format!(
            "upstream `{upstream}` rejected the request (HTTP {status}): {message}"
        )),
        _ => GatewayError::UpstreamFailed(format!("upstream `{upstream}` failed (HTTP {status})")),
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "the forward stage needs the permit, the model, the parsed request, the trace and the token settlement; bundling them would only rename the list"
)]
async fn forward(
    gw: &Arc<Gateway>,
    op: Operation,
    _permit: &Permit,
    model: &crate::config::ModelConfig,
    mut parsed: ParsedRequest,
    trace: &mut Trace,
    token_key: String,
    token_rate: Rate,
    token_cost: f64,
    log_full: bool,
    redactor: &crate::redaction::SharedRedactor,
) -> Result<Answer, GatewayError> {
    let upstream = gw
        .config
        .upstreams
        .iter()
        .find(|u| u.name == model.upstream)
        .ok_or_else(|| GatewayError::StageFailed {
            stage: crate::error::Stage::Gateway,
            message: format!("model `{}` names a missing upstream", model.name),
        })?;
    // The deployment gate: a registry-gated model goes only to its deployed version.
    let upstream_model = if model.registry {
        match gw.model_routes.load().route(&model.name) {
            crate::model_gate::Route::To {
                version,
                upstream_model,
                fallback,
            } => {
                trace.obligations_done.push(if fallback {
                    format!("model_version:{version}:fallback")
                } else {
                    format!("model_version:{version}")
                });
                upstream_model
            }
            crate::model_gate::Route::Refused(why) => {
                return Err(GatewayError::ModelUnavailable(why));
            }
        }
    } else {
        model.upstream_model.clone()
    };
    if let Some(obj) = parsed.body.as_object_mut() {
        obj.insert("model".into(), Value::String(upstream_model));
    }
    let leak_checks = (op == Operation::Chat).then(|| prompt_leak_checks(gw, &mut parsed.body));
    let out_bytes = serde_json::to_vec(&parsed.body).map_err(|e| GatewayError::StageFailed {
        stage: crate::error::Stage::Gateway,
        message: format!("cannot encode the upstream request: {e}"),
    })?;
    let uri = format!("{}{}", upstream.base_url, op.upstream_path());
    let mut builder = http::Request::builder()
        .method(http::Method::POST)
        .uri(&uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::ACCEPT,
            if parsed.stream {
                "text/event-stream"
            } else {
                "application/json"
            },
        );
    // The client's credential is never forwarded; the upstream's own is injected.
    if let Some(Some(auth)) = gw.upstream_auth.get(&upstream.name) {
        builder = builder.header(header::AUTHORIZATION, auth.clone());
    }
    let up_req = builder
        .body(Full::new(Bytes::from(out_bytes)))
        .map_err(|e| GatewayError::StageFailed {
            stage: crate::error::Stage::Gateway,
            message: format!("cannot build the upstream request: {e}"),
        })?;

    let client =
        gw.upstream_clients
            .get(&upstream.name)
            .ok_or_else(|| GatewayError::StageFailed {
                stage: crate::error::Stage::Gateway,
                message: format!("upstream `{}` has no client", upstream.name),
            })?;
    let t = Instant::now();
    let resp = match tokio::time::timeout(upstream.first_byte_timeout, client.request(up_req)).await
    {
        Err(_) => {
            gw.metrics.fail("upstream");
            return Err(GatewayError::UpstreamTimeout(format!(
                "upstream `{}` did not answer within {} ms",
                upstream.name,
                upstream.first_byte_timeout.as_millis()
            )));
        }
        Ok(Err(e)) => {
            gw.metrics.fail("upstream");
            let cause = if e.is_connect() {
                "is unreachable"
            } else {
                "failed"
            };
            tracing::warn!(upstream = %upstream.name, error = %e, "upstream request failed");
            return Err(GatewayError::UpstreamFailed(format!(
                "upstream `{}` {cause}",
                upstream.name
            )));
        }
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    if !status.is_success() {
        let body = read_upstream(resp.into_body(), 64 * 1024, upstream.idle_timeout)
            .await
            .unwrap_or_default();
        gw.metrics.fail("upstream");
        return Err(upstream_error(status, &upstream.name, &body));
    }

    let mut redact_cats = gw.config.inspect.redact_output.clone();
    for c in &gw.config.inspect.block_output {
        if !redact_cats.contains(c) {
            redact_cats.push(*c);
        }
    }

    if parsed.stream {
        let is_sse = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            gw.metrics.fail("upstream");
            return Err(GatewayError::UpstreamFailed(format!(
                "upstream `{}` answered a streaming request without an event stream",
                upstream.name
            )));
        }
        trace.timings.upstream_us = micros(t);
        // Nothing is released unrecorded: a stream gets a durable "opened" record before its
        // first byte, and its final record (status, output findings, digest) when it ends.
        let mut opened = trace.clone();
        opened.status = 200;
        opened.reason = "stream opened; the final record follows when it ends".into();
        opened.content = None;
        let t_rec = Instant::now();
        let appended = gw.audit.append(gw.record_of(opened)).await;
        gw.metrics
            .observe_stage(crate::metrics::TimedStage::Record, t_rec.elapsed());
        if let Err(e) = appended {
            gw.metrics.fail("audit");
            return Err(GatewayError::AuditUnavailable(e.to_string()));
        }
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(32);
        let task = StreamTask {
            gw: gw.clone(),
            trace: std::mem::replace(trace, Trace::new(String::new(), "")),
            redact_cats,
            leak_checks,
            tx,
            idle: upstream.idle_timeout,
            upstream_name: upstream.name.clone(),
            token_key,
            token_rate,
            token_cost,
            log_full,
            redactor: redactor.clone(),
            route: op.stream_route(),
        };
        tokio::spawn(task.run(resp.into_body()));
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| {
                (
                    Ok::<_, std::convert::Infallible>(http_body::Frame::data(b)),
                    rx,
                )
            })
        });
        let body = Body::new(http_body_util::StreamBody::new(stream));
        let resp = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .header("x-accel-buffering", "no")
            .body(body)
            .map_err(|e| GatewayError::StageFailed {
                stage: crate::error::Stage::Gateway,
                message: e.to_string(),
            })?;
        return Ok(Answer::Streaming(resp));
    }

    let body = read_upstream(
        resp.into_body(),
        upstream.max_response_bytes,
        upstream.idle_timeout,
    )
    .await
    .map_err(|e| {
        gw.metrics.fail("upstream");
        match e {
            ReadError::Timeout => GatewayError::UpstreamTimeout(format!(
                "upstream `{}` stalled while sending its answer",
                upstream.name
            )),
            ReadError::TooLarge => GatewayError::UpstreamFailed(format!(
                "upstream `{}` sent an answer larger than {} bytes",
                upstream.name, upstream.max_response_bytes
            )),
            ReadError::Broken(m) => GatewayError::UpstreamFailed(format!(
                "upstream `{}` broke off its answer: {m}",
                upstream.name
            )),
        }
    })?;
    trace.timings.upstream_us = micros(t);
    let mut answer: Value = serde_json::from_slice(&body).map_err(|_| {
        gw.metrics.fail("upstream");
        GatewayError::UpstreamFailed(format!(
            "upstream `{}` sent an answer that is not JSON",
            upstream.name
        ))
    })?;

    // 6. inspect output
    let t = Instant::now();
    if let Some(usage) = answer
        .get("usage")
        .and_then(|u| u.get("total_tokens"))
        .and_then(Value::as_u64)
    {
        gw.limiter
            .settle(&token_key, token_rate, usage as f64 - token_cost);
    }
    let mut changed = false;
    if op != Operation::Embedding {
        let choices = answer.get_mut("choices").and_then(Value::as_array_mut);
        if let Some(choices) = choices {
            for choice in choices {
                let slot = if op == Operation::Chat {
                    "/message/content"
                } else {
                    "/text"
                };
                let Some(text) = choice
                    .pointer(slot)
                    .and_then(Value::as_str)
                    .map(str::to_string)
                else {
                    continue;
                };
                let inspected = match &leak_checks {
                    Some(checks) => {
                        gw.inspector
                            .inspect_with(&text, Channel::Output, checks.as_ref())
                    }
                    None => gw.inspector.inspect(&text, Channel::Output),
                };
                let findings = inspected.map_err(|e| {
                    gw.metrics.fail("inspect");
                    GatewayError::StageFailed {
                        stage: crate::error::Stage::Inspect,
                        message: format!(
                            "output inspection failed, so the answer was withheld: {e}"
                        ),
                    }
                })?;
                for f in &findings {
                    gw.metrics
                        .findings
                        .get_or_create(&FindingLabels {
                            category: f.category.as_str(),
                            channel: "output",
                        })
                        .inc();
                }
                if let Some(blocked) = findings.iter().find(|f| {
                    gw.config.inspect.block_output.contains(&f.category)
                        && f.severity >= gw.config.inspect.output_min_severity
                }) {
                    let msg = format!(
                        "the answer was blocked because it contains {} ({})",
                        blocked.category, blocked.kind
                    );
                    trace.findings.extend(findings.iter().cloned());
                    trace.reason = msg.clone();
                    return Err(GatewayError::Forbidden(msg));
                }
                let relevant: Vec<Finding> = findings
                    .iter()
                    .filter(|f| {
                        redact_cats.contains(&f.category)
                            && f.severity >= gw.config.inspect.output_min_severity
                    })
                    .cloned()
                    .collect();
                if !relevant.is_empty()
                    && let Some(target) = choice.pointer_mut(slot)
                {
                    let redacted = redactor.lock().unwrap_or_else(|p| p.into_inner()).redact(
                        &text,
                        &relevant,
                        &redact_cats,
                    );
                    *target = Value::String(redacted);
                    changed = true;
                }
                trace.findings.extend(findings);
            }
        }
    }
    trace.timings.inspect_output_us = micros(t);
    gw.metrics
        .observe_stage(crate::metrics::TimedStage::InspectOutput, t.elapsed());
    if log_full && let Some(c) = trace.content.as_mut() {
        c["response"] = answer.clone();
    }
    // An answer inspection left alone is released as the upstream's own bytes.
    let out = if changed {
        serde_json::to_vec(&answer).map_err(|e| GatewayError::StageFailed {
            stage: crate::error::Stage::Gateway,
            message: format!("cannot encode the answer: {e}"),
        })?
    } else {
        body
    };
    json_answer(out)
}

/// A 200 JSON answer with the digest its audit record carries.
pub(crate) fn json_answer(out: Vec<u8>) -> Result<Answer, GatewayError> {
    let digest = hex::encode(Sha256::digest(&out));
    let resp = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(out))
        .map_err(|e| GatewayError::StageFailed {
            stage: crate::error::Stage::Gateway,
            message: e.to_string(),
        })?;
    Ok(Answer::Buffered(resp, digest))
}

enum ReadError {
    Timeout,
    TooLarge,
    Broken(String),
}

async fn read_upstream(
    mut body: hyper::body::Incoming,
    max: usize,
    idle: std::time::Duration,
) -> Result<Vec<u8>, ReadError> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(ReadError::Timeout),
            Ok(None) => return Ok(out),
            Ok(Some(Err(e))) => return Err(ReadError::Broken(e.to_string())),
            Ok(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    if out.len() + d.len() > max {
                        return Err(ReadError::TooLarge);
                    }
                    out.extend_from_slice(d);
                }
            }
        }
    }
}

// ---- streaming ------------------------------------------------------------------------------

struct StreamTask {
    gw: Arc<Gateway>,
    trace: Trace,
    redact_cats: Vec<FindingCategory>,
    /// This request's canary and system-prompt echo checks (chat only).
    leak_checks: Option<Arc<ztai_inspect::PromptLeakChecks>>,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    idle: std::time::Duration,
    upstream_name: String,
    token_key: String,
    token_rate: Rate,
    token_cost: f64,
    log_full: bool,
    /// The request's redaction session, shared with its other requests.
    redactor: crate::redaction::SharedRedactor,
    /// What its record and metrics name it.
    route: &'static str,
}

/// Decrements the active-stream gauge however the task ends.
struct ActiveStream<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl Drop for ActiveStream<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

enum StreamEnd {
    Done,
    ClientGone,
    Failed(GatewayError),
}

impl StreamTask {
    async fn run(mut self, body: hyper::body::Incoming) {
        let gw = self.gw.clone();
        gw.metrics.streams_active.inc();
        let _active = ActiveStream(&gw.metrics.streams_active);
        let mut hasher = Sha256::new();
        let mut released_text = String::new();
        let mut redactors = std::collections::BTreeMap::new();
        let end = self
            .pump(body, &mut hasher, &mut released_text, &mut redactors)
            .await;
        // However the stream ended (done, blocked, failed, abandoned), its record holds every
        // finding on what was released, as a buffered answer's record holds all of its own.
        self.collect_findings(&redactors);
        let t_out = Instant::now();
        let (status, final_frame) = match &end {
            StreamEnd::Done => (200, Some(Bytes::from_static(b"data: [DONE]\n\n"))),
            StreamEnd::ClientGone => (499, None),
            StreamEnd::Failed(e) => {
                self.trace.reason = e.message().to_string();
                (
                    e.status().as_u16(),
                    Some(Bytes::from(format!("data: {}\n\n", e.body()))),
                )
            }
        };
        self.trace.status = status;
        self.trace.timings.inspect_output_us += micros(t_out);
        if self.log_full
            && let Some(c) = self.trace.content.as_mut()
        {
            c["response"] = Value::String(released_text);
        }
        let mut trace = std::mem::replace(&mut self.trace, Trace::new(String::new(), ""));
        if let Some(f) = &final_frame {
            hasher.update(f);
        }
        trace.response_digest = hex::encode(hasher.finalize_reset());
        // The final event is released only once the stream's record is durable.
        match record_request(&gw, self.route, trace).await {
            Ok(()) => {
                if let Some(f) = final_frame {
                    let _ = self.tx.send(f).await;
                }
            }
            Err(e) => {
                let err = GatewayError::AuditUnavailable(e.to_string());
                let _ = self
                    .tx
                    .send(Bytes::from(format!("data: {}\n\n", err.body())))
                    .await;
            }
        }
    }

    async fn send(&self, hasher: &mut Sha256, frame: Bytes) -> bool {
        hasher.update(&frame);
        self.tx.send(frame).await.is_ok()
    }

    async fn pump(
        &mut self,
        mut body: hyper::body::Incoming,
        hasher: &mut Sha256,
        released_text: &mut String,
        redactors: &mut std::collections::BTreeMap<u64, StreamRedactor>,
    ) -> StreamEnd {
        let gw = self.gw.clone();
        let mut parser = SseParser::new(1024 * 1024);
        let mut events = Vec::new();
        let mut last_template: Option<Value> = None;
        let window = gw.config.inspect.stream_window_bytes;
        loop {
            let frame = tokio::select! {
                _ = self.tx.closed() => return StreamEnd::ClientGone,
                f = tokio::time::timeout(self.idle, body.frame()) => f,
            };
            let data = match frame {
                Err(_) => {
                    gw.metrics.fail("upstream");
                    return StreamEnd::Failed(GatewayError::UpstreamTimeout(format!(
                        "upstream `{}` stopped sending for {} ms mid-stream",
                        self.upstream_name,
                        self.idle.as_millis()
                    )));
                }
                Ok(None) => {
                    gw.metrics.fail("upstream");
                    return StreamEnd::Failed(GatewayError::UpstreamFailed(format!(
                        "upstream `{}` ended the stream without [DONE]",
                        self.upstream_name
                    )));
                }
                Ok(Some(Err(e))) => {
                    gw.metrics.fail("upstream");
                    return StreamEnd::Failed(GatewayError::UpstreamFailed(format!(
                        "upstream `{}` broke off the stream: {e}",
                        self.upstream_name
                    )));
                }
                Ok(Some(Ok(f))) => match f.into_data() {
                    Ok(d) => d,
                    Err(_) => continue,
                },
            };
            if let Err(e) = parser.feed(&data, &mut events) {
                gw.metrics.fail("upstream");
                return StreamEnd::Failed(GatewayError::UpstreamFailed(format!(
                    "upstream `{}` sent a malformed stream: {e}",
                    self.upstream_name
                )));
            }
            for ev in events.drain(..) {
                if ev.data.trim() == "[DONE]" {
                    // Flush what is held, in one last content event per choice.
                    for (index, r) in redactors.iter_mut() {
                        let rest = match r.finish(&gw.inspector) {
                            Ok(s) => s,
                            Err(e) => return StreamEnd::Failed(inspect_failed(&gw, e)),
                        };
                        if let Some(end) = self.check_block(r) {
                            return end;
                        }
                        if !rest.is_empty() {
                            released_text.push_str(&rest);
                            let ev = content_event(last_template.as_ref(), *index, &rest);
                            if !self
                                .send(hasher, Bytes::from(format!("data: {ev}\n\n")))
                                .await
                            {
                                return StreamEnd::ClientGone;
                            }
                        }
                    }
                    return StreamEnd::Done;
                }
                let mut v: Value = match serde_json::from_str(&ev.data) {
                    Ok(v) => v,
                    Err(_) => {
                        gw.metrics.fail("upstream");
                        return StreamEnd::Failed(GatewayError::UpstreamFailed(format!(
                            "upstream `{}` sent a stream event that is not JSON",
                            self.upstream_name
                        )));
                    }
                };
                if v.get("error").is_some() {
                    return StreamEnd::Failed(GatewayError::UpstreamFailed(format!(
                        "upstream `{}` reported an error mid-stream",
                        self.upstream_name
                    )));
                }
                if let Some(total) = v.pointer("/usage/total_tokens").and_then(Value::as_u64) {
                    gw.limiter.settle(
                        &self.token_key,
                        self.token_rate,
                        total as f64 - self.token_cost,
                    );
                }
                let mut skip = true;
                if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
                    for choice in choices.iter_mut() {
                        let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let finishing = choice.get("finish_reason").is_some_and(|f| !f.is_null());
                        let pointer = if choice.get("delta").is_some() {
                            "/delta/content"
                        } else {
                            "/text"
                        };
                        let text = choice
                            .pointer(pointer)
                            .and_then(Value::as_str)
                            .map(str::to_string);
                        let r = redactors.entry(index).or_insert_with(|| {
                            let r = StreamRedactor::new(self.redact_cats.clone(), Channel::Output)
                                .with_window(window)
                                .with_min_severity(gw.config.inspect.output_min_severity)
                                .with_redactor(self.redactor.clone());
                            match &self.leak_checks {
                                Some(c) => r.with_extra(c.clone()),
                                None => r,
                            }
                        });
                        let mut released = match &text {
                            Some(t) => match r.push(&gw.inspector, t) {
                                Ok(s) => s,
                                Err(e) => return StreamEnd::Failed(inspect_failed(&gw, e)),
                            },
                            None => String::new(),
                        };
                        if finishing {
                            match r.finish(&gw.inspector) {
                                Ok(s) => released.push_str(&s),
                                Err(e) => return StreamEnd::Failed(inspect_failed(&gw, e)),
                            }
                        }
                        if let Some(end) = self.check_block(r) {
                            return end;
                        }
                        if text.is_some() {
                            if let Some(target) = choice.pointer_mut(pointer) {
                                *target = Value::String(released.clone());
                            }
                        } else if !released.is_empty() {
                            // Held text flushed on an event that carried none.
                            if let Some(delta) =
                                choice.get_mut("delta").and_then(Value::as_object_mut)
                            {
                                delta.insert("content".into(), Value::String(released.clone()));
                            }
                        }
                        let has_other = choice
                            .get("delta")
                            .and_then(Value::as_object)
                            .is_some_and(|d| d.keys().any(|k| k != "content"));
                        if !released.is_empty()
                            || finishing
                            || has_other
                            || text.as_deref() == Some("")
                        {
                            skip = false;
                        }
                        released_text.push_str(&released);
                    }
                } else {
                    skip = false;
                }
                if last_template.is_none() {
                    last_template = Some(v.clone());
                }
                if skip {
                    continue;
                }
                let line = format!("data: {v}\n\n");
                if !self.send(hasher, Bytes::from(line)).await {
                    return StreamEnd::ClientGone;
                }
            }
        }
    }

    /// The same test a buffered answer gets: a finding of a blocked category at or above the
    /// output severity floor ends the stream.
    fn check_block(&mut self, r: &StreamRedactor) -> Option<StreamEnd> {
        let inspect = &self.gw.config.inspect;
        r.findings()
            .iter()
            .find(|f| {
                inspect.block_output.contains(&f.category)
                    && f.severity >= inspect.output_min_severity
            })
            .map(|f| {
                StreamEnd::Failed(GatewayError::Forbidden(format!(
                    "the answer was blocked because it contains {} ({})",
                    f.category, f.kind
                )))
            })
    }

    fn collect_findings(&mut self, redactors: &std::collections::BTreeMap<u64, StreamRedactor>) {
        for r in redactors.values() {
            for f in r.findings() {
                self.gw
                    .metrics
                    .findings
                    .get_or_create(&FindingLabels {
                        category: f.category.as_str(),
                        channel: "output",
                    })
                    .inc();
                self.trace.findings.push(f.clone());
            }
        }
    }
}

fn inspect_failed(gw: &Gateway, e: ztai_inspect::InspectError) -> GatewayError {
    gw.metrics.fail("inspect");
    GatewayError::StageFailed {
        stage: crate::error::Stage::Inspect,
        message: format!("output inspection failed, so the stream was cut: {e}"),
    }
}

/// A content-only event shaped like the upstream's own events.
fn content_event(template: Option<&Value>, index: u64, text: &str) -> Value {
    let mut v = template
        .cloned()
        .unwrap_or_else(|| json!({"object": "chat.completion.chunk"}));
    let is_chat = v.pointer("/choices/0/delta").is_some()
        || v.get("object").and_then(Value::as_str) == Some("chat.completion.chunk");
    let choice = if is_chat {
        json!({"index": index, "delta": {"content": text}, "finish_reason": null})
    } else {
        json!({"index": index, "text": text, "finish_reason": null})
    };
    if let Some(obj) = v.as_object_mut() {
        obj.insert("choices".into(), Value::Array(vec![choice]));
        obj.remove("usage");
    }
    v
}

// ---- models list ----------------------------------------------------------------------------

pub(crate) async fn list_models(
    State(gw): State<Arc<Gateway>>,
    crate::admin::Caller {
        headers,
        client,
        peer,
    }: crate::admin::Caller,
) -> Response {
    let request_id = new_request_id();
    let mut trace = Trace::new(request_id.clone(), Action::ListModel.cedar_id());
    trace.client = client;
    trace.resource = "Model::*".into();
    let result = (|| -> Result<Answer, GatewayError> {
        let t = Instant::now();
        let who = authenticate(&gw, &headers, peer.as_ref())?;
        trace.timings.authenticate_us = micros(t);
        trace.principal = Some(who.principal.clone());
        let t = Instant::now();
        let mut ctx = request_context(&gw, "list", &trace.client);
        let mut data = Vec::new();
        let mut held_back = Vec::new();
        let mut names: Vec<&String> = gw.models.keys().collect();
        names.sort();
        let routes = gw.model_routes.load();
        for name in names {
            let Some(m) = gw.models.get(name) else {
                continue;
            };
            // Clients (and chat UIs) often pick the first model listed: list only what can be
            // served now. Why a gated model is held back stays in this record and in the
            // registry's admin view.
            if m.registry
                && let crate::model_gate::Route::Refused(why) = routes.route(&m.name)
            {
                held_back.push(format!("{} ({why})", m.name));
                continue;
            }
            ctx.data_classification.clone_from(&m.classification);
            let v = gw.authorize(
                &who,
                Action::ListModel,
                &Resource::Model(m.name.clone()),
                &m.groups,
                &ctx,
            )?;
            if matches!(v, Verdict::Permit(_)) {
                data.push(json!({"id": m.name, "object": "model", "created": 0, "owned_by": format!("ztai:{}", m.upstream)}));
            }
        }
        trace.timings.authorize_us = micros(t);
        trace.reason = if held_back.is_empty() {
            format!("{} model(s) listed", data.len())
        } else {
            format!(
                "{} model(s) listed; not servable now, so not listed: {}",
                data.len(),
                held_back.join("; ")
            )
        };
        trace.decision = Some(ztai_core::PolicyDecision {
            decision: ztai_core::Decision::Allow,
            policies: vec![],
            reasons: vec![],
            obligations: vec![],
            errors: vec![],
        });
        let out = serde_json::to_vec(&json!({"object": "list", "data": data})).map_err(|e| {
            GatewayError::StageFailed {
                stage: crate::error::Stage::Gateway,
                message: e.to_string(),
            }
        })?;
        json_answer(out)
    })();
    let resp = finish(&gw, "/v1/models", trace, result).await;
    with_request_id(resp, &request_id)
}

/// Any other path: a JSON 404 in the OpenAI shape.
pub async fn not_found() -> Response {
    GatewayError::NotFound("no such endpoint; the gateway serves /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models, /v1/authorize, /v1/retrieval/authorize, /v1/reveal, /v1/tokens, /v1/approvals/{id} and /mcp/{server}".into())
        .into_response()
}

#[cfg(test)]
mod tests;
