//! The MCP proxy: `/mcp/{server}` speaks MCP Streamable HTTP to agents and fronts the servers in
//! `[[mcp.servers]]`, so every tool an agent sees and every call it makes goes through the same
//! decision point as its model calls.
//!
//! What the proxy adds to a plain relay:
//! - **Who**: each request is authenticated like every data-plane request (API key, JWT, task
//!   token, certificate). The session is bound to that identity and its delegation chain; the
//!   caller's credential is never passed to the server.
//! - **What it sees**: `tools/list` shows only tools whose current definition is pinned
//!   (`pins`) and that policy lets the caller call; `resources/list` only resources the
//!   documents catalogue lists and policy lets it read.
//! - **What it does**: every `tools/call` is decided with the tool (`Tool::"<server>/<tool>"`,
//!   so a server cannot shadow another's tool), the inspected arguments, the delegation chain and
//!   the session's taint; permits' obligations (redact, log_full, approval) are carried out;
//!   per-tool rate limits apply.
//! - **What comes back**: results and resources are untrusted content, inspected before the
//!   agent sees them (block, redact or annotate by finding category), and they taint the
//!   session (`untrusted_content`, `confidential_data`, configured labels) for data-flow rules.
//! - **A record** of every request, and of every tool blocked for poisoning or a rug pull.
//!
//! Sessions are sealed ids (`session`) any replica with the shared key can open; taint lives
//! in the store. A replica that opens a session its store has no row for cannot know what the
//! session read elsewhere, so it assumes the worst (`taint_unknown` plus every automatic label).

pub mod pins;
pub mod session;
pub(crate) mod upstream;

use crate::config::mcp::{McpConfig, McpServerConfig};
use crate::error::GatewayError;
use crate::ids::new_request_id;
use crate::proxy::{Authenticated, authenticate, authenticate_traced, read_body, request_context};
use crate::record::{Trace, micros};
use crate::redaction::LazySession;
use crate::state::Gateway;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use session::{SessionClaims, SessionSealer, session_hash};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;
use upstream::{PROTOCOL_VERSIONS, Upstream, UpstreamError};
use ztai_core::{
    Action, Channel, Decision, Finding, FindingCategory, Obligation, PolicyDecision, Resource,
};
use ztai_policy::Verdict;

/// The header carrying the session id.
const SESSION_HEADER: &str = "mcp-session-id";
/// Where a resent call carries its approval ticket: `params._meta["ztai/approval"]`.
pub const APPROVAL_META: &str = "ztai/approval";
/// Tools read from one `tools/list` answer at most.
const MAX_TOOLS: usize = 1_000;
/// Pages of `tools/list` the gateway reads itself when a call names a tool it has not seen.
const MAX_PAGES: usize = 10;

/// Labels the gateway adds on its own.
pub const TAINT_UNTRUSTED: &str = "untrusted_content";
pub const TAINT_CONFIDENTIAL: &str = "confidential_data";
pub const TAINT_UNKNOWN: &str = "taint_unknown";

// JSON-RPC error codes: the standard ones, and ours in the server range.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;
const UPSTREAM_FAILED: i64 = -32000;
const POLICY_DENIED: i64 = -32003;
const APPROVAL_PENDING: i64 = -32004;
const TOOL_BLOCKED: i64 = -32005;
const RATE_LIMITED: i64 = -32029;

/// The fronted servers and the session key.
pub(crate) struct Mcp {
    servers: HashMap<String, (McpServerConfig, Upstream)>,
    sealer: SessionSealer,
}

impl std::fmt::Debug for Mcp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mcp")
            .field("servers", &self.servers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Reads the session key: from the environment variable the configuration names (replicas
/// share it), or from `mcp-session.key` in the data directory, made on first start.
fn session_key(cfg: &McpConfig, data_dir: &std::path::Path) -> Result<Vec<u8>, String> {
    let decode = |text: &str, from: &str| {
        hex::decode(text.trim())
            .ok()
            .filter(|k| k.len() == 32)
            .ok_or_else(|| format!("the MCP session key in {from} must be 64 hex characters"))
    };
    if let Some(var) = &cfg.session_key_env {
        let v = std::env::var(var)
            .map_err(|_| format!("`mcp.session_key_env` names `{var}`, which is not set"))?;
        return decode(&v, &format!("`{var}`"));
    }
    let path = data_dir.join("mcp-session.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => decode(&text, &path.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
            write_private(&path, &hex::encode(key))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(key.to_vec())
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

impl Mcp {
    pub fn new(
        cfg: &McpConfig,
        data_dir: &std::path::Path,
    ) -> Result<Self, crate::error::StartError> {
        let key = session_key(cfg, data_dir).map_err(|message| {
            crate::error::StartError::Config(crate::config::ConfigError {
                key: "mcp.session_key_env".into(),
                message,
            })
        })?;
        let sealer = SessionSealer::new(&key).map_err(|e| {
            crate::error::StartError::Config(crate::config::ConfigError {
                key: "mcp.session_key_env".into(),
                message: e.to_string(),
            })
        })?;
        let mut servers = HashMap::new();
        for s in &cfg.servers {
            servers.insert(s.name.clone(), (s.clone(), Upstream::new(s)?));
        }
        Ok(Mcp { servers, sealer })
    }
}

// ---- answers --------------------------------------------------------------------------------

/// What a request produced.
enum Outcome {
    /// A JSON-RPC message for the client (HTTP 200).
    Message {
        msg: Value,
        /// The MCP session id to hand out after `initialize`.
        mcp_session: Option<String>,
        /// The redaction session a tool call or read redacted in, in a stateful mode.
        redaction_session: Option<String>,
    },
    /// A notification or a client's answer, accepted (HTTP 202, no body).
    Accepted,
}

/// A JSON-RPC error for the client, with what the audit record says of it.
#[derive(Debug)]
struct RpcError {
    code: i64,
    message: String,
    data: Option<Value>,
    /// The HTTP status the record carries (the answer itself is HTTP 200).
    status: u16,
}

impl RpcError {
    fn new(code: i64, status: u16, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            data: None,
            status,
        }
    }

    fn with_code(mut self, code: i64) -> Self {
        self.code = code;
        self
    }

    fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

impl From<GatewayError> for RpcError {
    fn from(e: GatewayError) -> Self {
        let code = match &e {
            GatewayError::Forbidden(_) => POLICY_DENIED,
            GatewayError::RateLimited { .. } => RATE_LIMITED,
            GatewayError::BadRequest(_) | GatewayError::Unprocessable(_) => INVALID_PARAMS,
            GatewayError::UpstreamFailed(_) | GatewayError::UpstreamTimeout(_) => UPSTREAM_FAILED,
            _ => INTERNAL_ERROR,
        };
        let mut data = json!({"code": e.code()});
        if let GatewayError::RateLimited {
            retry_after_secs, ..
        } = &e
        {
            set(&mut data, "retry_after_secs", json!(retry_after_secs));
        }
        RpcError {
            code,
            message: e.message().to_string(),
            data: Some(data),
            status: e.status().as_u16(),
        }
    }
}

impl From<UpstreamError> for RpcError {
    fn from(e: UpstreamError) -> Self {
        let status = match e {
            UpstreamError::Timeout { .. } => 504,
            _ => 502,
        };
        RpcError::new(UPSTREAM_FAILED, status, e.to_string())
            .with_data(json!({"code": "upstream_failed"}))
    }
}

fn rpc_result(id: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn rpc_error(id: &Value, e: &RpcError) -> Value {
    let mut err = json!({"code": e.code, "message": e.message});
    if let Some(d) = &e.data {
        set(&mut err, "data", d.clone());
    }
    json!({"jsonrpc": "2.0", "id": id, "error": err})
}

/// An HTTP-level refusal with a JSON-RPC error body (authentication, sessions, size).
fn http_refusal(e: &GatewayError, id: &Value) -> Response {
    let code = match e {
        GatewayError::BadRequest(_) => PARSE_ERROR,
        GatewayError::NotFound(_) | GatewayError::Unprocessable(_) => INVALID_REQUEST,
        GatewayError::Forbidden(_) => POLICY_DENIED,
        GatewayError::RateLimited { .. } => RATE_LIMITED,
        _ => INTERNAL_ERROR,
    };
    let body = rpc_error(id, &RpcError::from(e.clone()).with_code(code));
    let mut resp = (e.status(), axum::Json(body)).into_response();
    if let GatewayError::RateLimited {
        retry_after_secs, ..
    } = e
        && let Ok(v) = HeaderValue::from_str(&retry_after_secs.max(&1).to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    if matches!(e, GatewayError::Unauthenticated(_)) {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"ztai\""),
        );
    }
    resp
}

/// Sets `key` on a JSON object (no-op on anything else).
pub(crate) fn set(v: &mut Value, key: &str, value: Value) {
    if let Some(m) = v.as_object_mut() {
        m.insert(key.to_string(), value);
    }
}

fn digest_of(v: &Value) -> String {
    hex::encode(Sha256::digest(v.to_string().as_bytes()))
}

fn allowed(reason: String) -> PolicyDecision {
    PolicyDecision {
        decision: Decision::Allow,
        policies: Vec::new(),
        reasons: vec![reason],
        obligations: Vec::new(),
        errors: Vec::new(),
    }
}

// ---- HTTP edges -----------------------------------------------------------------------------

/// `POST /mcp/{server}`: one JSON-RPC message from the client.
pub async fn post(
    State(gw): State<Arc<Gateway>>,
    Path(server): Path<String>,
    req: Request<Body>,
) -> Response {
    let request_id = new_request_id();
    let mut trace = Trace::new(request_id.clone(), "mcp");
    trace.client = crate::conn::ClientAddr::of(req.extensions());
    trace.resource = format!("mcp:{}", crate::approvals::one_line(&server));
    let mut id = Value::Null;
    let outcome = handle(&gw, &server, req, &mut trace, &mut id).await;
    let resp = conclude(&gw, trace, outcome, &id).await;
    crate::proxy::with_request_id(resp, &request_id)
}

/// `GET /mcp/{server}`: the server-to-client stream, which the gateway does not offer (it
/// relays no server-initiated messages).
pub async fn get() -> Response {
    let mut resp = (
        StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(json!({"error": "the ZTAI gateway offers no server-to-client stream; POST requests to this endpoint"})),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST, DELETE"));
    resp
}

/// `DELETE /mcp/{server}`: the client ends its session.
pub async fn delete(
    State(gw): State<Arc<Gateway>>,
    Path(server): Path<String>,
    req: Request<Body>,
) -> Response {
    let request_id = new_request_id();
    let mut trace = Trace::new(request_id.clone(), "mcp:end_session");
    trace.client = crate::conn::ClientAddr::of(req.extensions());
    trace.resource = format!("mcp:{}", crate::approvals::one_line(&server));
    let headers = req.headers().clone();
    let peer = req.extensions().get::<crate::conn::PeerIdentity>().cloned();
    drop(req);
    let result = async {
        let (cfg, up) = gw
            .mcp
            .servers
            .get(&server)
            .ok_or_else(|| unknown_server(&server))?;
        check_origin(&gw, &headers)?;
        let who = authenticate(&gw, &headers, peer.as_ref())?;
        trace.principal = Some(who.principal.clone());
        let s = open_session(&gw, cfg, &headers, &who).await?;
        let g = gw.clone();
        let hash = s.hash.clone();
        tokio::task::spawn_blocking(move || {
            g.store.end_mcp_session(&hash, crate::clock::unix_now_i64())
        })
        .await
        .map_err(crate::GatewayError::store)?
        .map_err(crate::GatewayError::store)?;
        if let Some(up_session) = &s.claims.upstream {
            up.end(&gw, cfg, up_session).await;
        }
        trace.decision = Some(allowed("session ended by its client".into()));
        Ok::<_, GatewayError>(())
    }
    .await;
    let outcome = result.map(|()| Outcome::Accepted).map_err(Failure::Http);
    let resp = conclude(&gw, trace, outcome, &Value::Null).await;
    crate::proxy::with_request_id(resp, &request_id)
}

/// Why a request failed: refused at the HTTP level, or answered with a JSON-RPC error.
enum Failure {
    Http(GatewayError),
    Rpc(RpcError),
}

impl From<GatewayError> for Failure {
    fn from(e: GatewayError) -> Self {
        Failure::Http(e)
    }
}

impl From<RpcError> for Failure {
    fn from(e: RpcError) -> Self {
        Failure::Rpc(e)
    }
}

/// Records the request, then answers. An answer whose record failed is not released.
async fn conclude(
    gw: &Arc<Gateway>,
    mut trace: Trace,
    outcome: Result<Outcome, Failure>,
    id: &Value,
) -> Response {
    let resp = match outcome {
        Ok(Outcome::Message {
            msg,
            mcp_session,
            redaction_session,
        }) => {
            if trace.status == 0 {
                trace.status = 200;
            }
            trace.response_digest = digest_of(&msg);
            let mut resp = (StatusCode::OK, axum::Json(msg)).into_response();
            if let Some(s) = mcp_session.and_then(|s| HeaderValue::from_str(&s).ok()) {
                resp.headers_mut().insert(SESSION_HEADER, s);
            }
            if let Some(s) = redaction_session.and_then(|s| HeaderValue::from_str(&s).ok()) {
                resp.headers_mut()
                    .insert(crate::redaction::SESSION_HEADER, s);
            }
            resp
        }
        Ok(Outcome::Accepted) => {
            trace.status = 202;
            StatusCode::ACCEPTED.into_response()
        }
        Err(Failure::Rpc(e)) => {
            trace.status = e.status;
            if trace.reason.is_empty() {
                trace.reason = e.message.clone();
            }
            let msg = rpc_error(id, &e);
            trace.response_digest = digest_of(&msg);
            (StatusCode::OK, axum::Json(msg)).into_response()
        }
        Err(Failure::Http(e)) => {
            trace.status = e.status().as_u16();
            if trace.reason.is_empty() {
                trace.reason = e.message().to_string();
            }
            http_refusal(&e, id)
        }
    };
    let ok = trace.status < 400;
    match crate::proxy::record_request(gw, "/mcp", trace).await {
        Ok(()) => resp,
        Err(e) if ok => http_refusal(&GatewayError::AuditUnavailable(e.to_string()), id),
        Err(_) => resp,
    }
}

fn unknown_server(server: &str) -> GatewayError {
    GatewayError::NotFound(format!(
        "no MCP server `{}` is configured here ([[mcp.servers]])",
        crate::approvals::one_line(server)
    ))
}

/// Browsers may call only from allowed origins (DNS rebinding defence); other clients send none.
fn check_origin(gw: &Gateway, headers: &http::HeaderMap) -> Result<(), GatewayError> {
    match headers.get(header::ORIGIN) {
        None => Ok(()),
        Some(o) => {
            let o = o.to_str().unwrap_or_default();
            if gw.config.mcp.allowed_origins.contains(o) {
                Ok(())
            } else {
                Err(GatewayError::Forbidden(format!(
                    "requests from the browser origin `{}` are not allowed; add it to [mcp] allowed_origins",
                    crate::approvals::one_line(o)
                )))
            }
        }
    }
}

/// The client must accept JSON answers (the gateway never streams).
fn check_accept(headers: &http::HeaderMap) -> Result<(), GatewayError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let ok = accept.split(',').any(|part| {
        let media = part.split(';').next().unwrap_or("").trim();
        matches!(media, "application/json" | "application/*" | "*/*")
    });
    if ok {
        Ok(())
    } else {
        Err(GatewayError::Unprocessable(
            "the Accept header must allow application/json (send `Accept: application/json, text/event-stream`)".into(),
        ))
    }
}

// ---- sessions -------------------------------------------------------------------------------

/// An open session on this request.
struct OpenSession {
    claims: SessionClaims,
    hash: String,
    taint: BTreeSet<String>,
}

/// Where a task's taint is kept: under its authority block's revocation id, which every token
/// narrowed from it shares (so what a sub-agent read taints the whole task), until the token
/// expires. Callers without a task token have none.
fn task_key(who: &Authenticated) -> Option<(String, i64)> {
    let t = who.task.as_ref()?;
    let id = t.token.revocation_ids.first()?;
    Some((
        format!("task:{id}"),
        i64::try_from(t.token.expires_at).unwrap_or(i64::MAX),
    ))
}

/// What the caller's task has read so far through any MCP session, for decisions made elsewhere
/// (the egress proxy, `POST /v1/authorize`): a data-flow rule such as "after reading
/// confidential data, no egress to non-allowlisted destinations" holds across channels. Empty
/// for callers without a task token. A store failure refuses the request.
pub(crate) async fn task_taint(
    gw: &Arc<Gateway>,
    who: &Authenticated,
) -> Result<BTreeSet<String>, GatewayError> {
    let Some((key, _)) = task_key(who) else {
        return Ok(BTreeSet::new());
    };
    let g = gw.clone();
    let row = tokio::task::spawn_blocking(move || g.store.mcp_session(&key))
        .await
        .map_err(crate::GatewayError::store)?
        .map_err(|e| {
            gw.metrics.fail("store");
            crate::GatewayError::store(e)
        })?;
    Ok(row.map(|r| r.taint).unwrap_or_default())
}

fn identity_of(who: &Authenticated) -> (String, Vec<String>) {
    let p = &who.principal;
    (format!("{}:{}", p.kind, p.id), p.chain())
}

/// Opens the session the request names: sealed by this gateway's key for this server, not
/// expired, opened by the same identity, not ended; with its taint.
async fn open_session(
    gw: &Arc<Gateway>,
    cfg: &McpServerConfig,
    headers: &http::HeaderMap,
    who: &Authenticated,
) -> Result<OpenSession, GatewayError> {
    let Some(id) = headers.get(SESSION_HEADER) else {
        return Err(GatewayError::BadRequest(
            "no Mcp-Session-Id header: send `initialize` first and echo the session id it returns"
                .into(),
        ));
    };
    let id = id.to_str().map_err(|_| {
        GatewayError::NotFound("the session id is not valid text; initialize a new session".into())
    })?;
    let now = crate::clock::unix_now_i64();
    let claims = gw
        .mcp
        .sealer
        .open(id, &cfg.name, now)
        .map_err(|e| GatewayError::NotFound(e.to_string()))?;
    let (principal, chain) = identity_of(who);
    if claims.principal != principal || claims.chain != chain {
        // Not 404: the session exists; this caller is not the one it belongs to.
        return Err(GatewayError::Forbidden(
            "this session was opened by another identity; a session is usable only by the principal (and delegation chain) that initialised it".into(),
        ));
    }
    let hash = session_hash(id);
    let g = gw.clone();
    let (h, c) = (hash.clone(), claims.clone());
    let task = task_key(who);
    let row = tokio::task::spawn_blocking(move || {
        let store = g.store.as_ref();
        let mut row = store.mcp_session(&h)?;
        // What the task read in its other sessions counts here too.
        if let (Some(r), Some((key, _))) = (row.as_mut(), task)
            && let Some(t) = store.mcp_session(&key)?
        {
            r.taint.extend(t.taint);
        }
        match row {
            Some(row) => Ok(Some(row)),
            None if c.instance == g.config.instance => Ok(None),
            None => {
                // Opened by a replica whose store this one does not share: what the session
                // read there is unknown, so assume it read everything that taints.
                let row = ztai_store::McpSessionRow {
                    session_hash: h.clone(),
                    server: c.server.clone(),
                    principal: c.principal.clone(),
                    created_at: c.issued,
                    expires_at: c.expires,
                    ended_at: None,
                    taint: [TAINT_UNKNOWN, TAINT_UNTRUSTED, TAINT_CONFIDENTIAL]
                        .into_iter()
                        .map(String::from)
                        .collect(),
                };
                store.insert_mcp_session(&row)?;
                Ok(Some(row))
            }
        }
    })
    .await
    .map_err(crate::GatewayError::store)?
    .map_err(|e: ztai_store::StoreError| {
        gw.metrics.fail("store");
        crate::GatewayError::store(e)
    })?;
    let Some(row) = row else {
        return Err(GatewayError::NotFound(
            "this session is no longer known here; initialize a new session".into(),
        ));
    };
    if row.ended_at.is_some() {
        return Err(GatewayError::NotFound(
            "this session was ended; initialize a new session".into(),
        ));
    }
    Ok(OpenSession {
        claims,
        hash,
        taint: row.taint,
    })
}

/// Adds labels to the session's taint, in the store (so later requests, on any replica sharing
/// it, see them). Fails closed: a taint that cannot be recorded withholds the result.
async fn add_taint(
    gw: &Arc<Gateway>,
    who: &Authenticated,
    s: &mut OpenSession,
    labels: BTreeSet<String>,
) -> Result<(), GatewayError> {
    if labels.is_subset(&s.taint) {
        return Ok(());
    }
    let g = gw.clone();
    let hash = s.hash.clone();
    let task = task_key(who);
    let principal = identity_of(who).0;
    let known = s.taint.clone();
    s.taint = tokio::task::spawn_blocking(move || {
        let store = g.store.as_ref();
        let mut taint = store.add_mcp_taint(&hash, &labels)?;
        if let Some((key, expires)) = task {
            match store.add_mcp_taint(&key, &labels) {
                Ok(t) => taint.extend(t),
                Err(ztai_store::StoreError::NotFound(_)) => {
                    let now = crate::clock::unix_now_i64();
                    store.insert_mcp_session(&ztai_store::McpSessionRow {
                        session_hash: key,
                        server: "*".into(),
                        principal,
                        created_at: now,
                        expires_at: expires,
                        ended_at: None,
                        taint: labels,
                    })?;
                }
                Err(e) => return Err(e),
            }
        }
        // The task's labels already counted on this request stay counted.
        taint.extend(known);
        Ok(taint)
    })
    .await
    .map_err(crate::GatewayError::store)?
    .map_err(|e| {
        gw.metrics.fail("store");
        GatewayError::StageFailed {
            stage: crate::error::Stage::Store,
            message: format!(
                "recording what the session read failed, so the result was withheld: {e}"
            ),
        }
    })?;
    Ok(())
}

// ---- the request ----------------------------------------------------------------------------

async fn handle(
    gw: &Arc<Gateway>,
    server: &str,
    req: Request<Body>,
    trace: &mut Trace,
    id: &mut Value,
) -> Result<Outcome, Failure> {
    let (cfg, up) = gw
        .mcp
        .servers
        .get(server)
        .ok_or_else(|| unknown_server(server))?;
    check_origin(gw, req.headers())?;
    let who = authenticate_traced(gw, &req, trace)?;
    crate::proxy::principal_limit(gw, &who.principal)?;
    check_accept(req.headers())?;
    let headers = req.headers().clone();
    let bytes = read_body(gw, req).await?;
    trace.request_digest = hex::encode(Sha256::digest(&bytes));
    let msg: Value = serde_json::from_slice(&bytes).map_err(|e| {
        GatewayError::BadRequest(format!("the body is not a JSON-RPC message: {e}"))
    })?;
    let Value::Object(mut msg) = msg else {
        return Err(GatewayError::Unprocessable(
            "send one JSON-RPC message (an object) per request; batches are not part of MCP".into(),
        )
        .into());
    };
    if msg.get("jsonrpc") != Some(&json!("2.0")) {
        return Err(GatewayError::Unprocessable(
            "the message must have \"jsonrpc\": \"2.0\"".into(),
        )
        .into());
    }
    let method = msg
        .get("method")
        .and_then(Value::as_str)
        .map(str::to_string);
    let msg_id = msg.remove("id");
    let params = msg.remove("params");
    let Some(method) = method else {
        // A client's answer to a server request: the gateway relays none, so none is awaited.
        trace.action = "mcp:response";
        open_session(gw, cfg, &headers, &who).await?;
        trace.decision = Some(allowed("client answer accepted (none awaited)".into()));
        return Ok(Outcome::Accepted);
    };
    let Some(msg_id) = msg_id else {
        trace.action = "mcp:notification";
        trace.resource = format!("mcp:{server} {}", crate::approvals::one_line(&method));
        // Notifications are not relayed: the gateway initialised the server itself, and the
        // ids a cancellation names are the client's, which the server never saw.
        open_session(gw, cfg, &headers, &who).await?;
        trace.decision = Some(allowed(format!(
            "notification `{}` accepted",
            crate::approvals::one_line(&method)
        )));
        return Ok(Outcome::Accepted);
    };
    if !(msg_id.is_string() || msg_id.is_i64() || msg_id.is_u64()) {
        return Err(GatewayError::Unprocessable(
            "a request id must be a string or an integer".into(),
        )
        .into());
    }
    *id = msg_id.clone();
    let params = match params {
        None => Value::Object(Map::new()),
        Some(p @ Value::Object(_)) => p,
        Some(_) => {
            return Err(RpcError::new(INVALID_PARAMS, 422, "params must be an object").into());
        }
    };
    let mut redaction_session = None;
    let answer = match method.as_str() {
        "initialize" => {
            trace.action = "mcp:initialize";
            return initialize(gw, cfg, up, &who, params, trace, &msg_id).await;
        }
        "ping" => {
            trace.action = "mcp:ping";
            open_session(gw, cfg, &headers, &who).await?;
            trace.decision = Some(allowed("ping".into()));
            json!({})
        }
        "tools/list" => {
            trace.action = "mcp:tools/list";
            let s = open_session(gw, cfg, &headers, &who).await?;
            list_tools(gw, cfg, up, &who, &s, params, trace).await?
        }
        "tools/call" => {
            trace.action = "call_tool";
            let mut s = open_session(gw, cfg, &headers, &who).await?;
            let mut redaction = redaction_of(gw, &headers, &who, &s)?;
            let answer =
                call_tool(gw, cfg, up, &who, &mut s, &mut redaction, params, trace).await?;
            redaction_session = redaction.id().map(str::to_string);
            answer
        }
        "resources/list" => {
            trace.action = "mcp:resources/list";
            let s = open_session(gw, cfg, &headers, &who).await?;
            list_resources(gw, cfg, up, &who, &s, params, trace).await?
        }
        "resources/read" => {
            trace.action = "read_document";
            let mut s = open_session(gw, cfg, &headers, &who).await?;
            let mut redaction = redaction_of(gw, &headers, &who, &s)?;
            let answer =
                read_resource(gw, cfg, up, &who, &mut s, &mut redaction, params, trace).await?;
            redaction_session = redaction.id().map(str::to_string);
            answer
        }
        "resources/templates/list" => {
            trace.action = "mcp:resources/templates/list";
            open_session(gw, cfg, &headers, &who).await?;
            trace.decision = Some(allowed(
                "templated resources are not offered through the gateway".into(),
            ));
            json!({"resourceTemplates": []})
        }
        other => {
            trace.action = "mcp:unsupported";
            trace.resource = format!("mcp:{server} {}", crate::approvals::one_line(other));
            return Err(RpcError::new(
                METHOD_NOT_FOUND,
                404,
                format!(
                    "`{}` is not offered through the ZTAI gateway (it relays initialize, ping, tools/list, tools/call, resources/list and resources/read)",
                    crate::approvals::one_line(other)
                ),
            )
            .into());
        }
    };
    Ok(Outcome::Message {
        msg: rpc_result(&msg_id, answer),
        mcp_session: None,
        redaction_session,
    })
}

/// The redaction session a tool call or read redacts in: the one the caller names with
/// `x-ztai-session`, else one per MCP session, so placeholders stay numbered and tokens stay
/// revealable across the calls of one session. Opened only if something is redacted.
fn redaction_of<'a>(
    gw: &'a Gateway,
    headers: &http::HeaderMap,
    who: &Authenticated,
    s: &OpenSession,
) -> Result<LazySession<'a>, GatewayError> {
    let requested = headers
        .get(crate::redaction::SESSION_HEADER)
        .cloned()
        .or_else(|| {
            let short = s.hash.get(..32).unwrap_or(&s.hash);
            HeaderValue::from_str(&format!("mcp-{short}")).ok()
        });
    LazySession::new(
        &gw.redaction,
        crate::redaction::owner_of(&who.principal),
        requested,
    )
}

async fn initialize(
    gw: &Arc<Gateway>,
    cfg: &McpServerConfig,
    up: &Upstream,
    who: &Authenticated,
    params: Value,
    trace: &mut Trace,
    id: &Value,
) -> Result<Outcome, Failure> {
    let asked = params
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or(upstream::PROTOCOL_VERSION)
        .to_string();
    // Offer the client's revision when the gateway speaks it, else the newest it does.
    let offered = if PROTOCOL_VERSIONS.contains(&asked.as_str()) {
        asked
    } else {
        upstream::PROTOCOL_VERSION.to_string()
    };
    let mut up_params = params.clone();
    set(&mut up_params, "protocolVersion", json!(offered));
    // The server learns nothing of the client's own capabilities: it can ask nothing of it.
    set(&mut up_params, "capabilities", json!({}));
    let (result, up_session) = up
        .initialize(gw, cfg, up_params)
        .await
        .map_err(RpcError::from)?;
    let agreed = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .filter(|v| PROTOCOL_VERSIONS.contains(v))
        .unwrap_or(upstream::PROTOCOL_VERSION)
        .to_string();
    // Only what the gateway relays is announced.
    let server_caps = result
        .get("capabilities")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let mut caps = Map::new();
    if server_caps.get("tools").is_some() {
        caps.insert("tools".into(), json!({"listChanged": false}));
    }
    if server_caps.get("resources").is_some() {
        caps.insert(
            "resources".into(),
            json!({"listChanged": false, "subscribe": false}),
        );
    }
    let mut out = json!({
        "protocolVersion": agreed,
        "capabilities": caps,
        "serverInfo": result.get("serverInfo").cloned().unwrap_or_else(|| json!({"name": cfg.name, "version": "unknown"})),
    });
    // The server's instructions reach the agent's prompt: they are untrusted text too.
    if let Some(text) = result.get("instructions").and_then(Value::as_str) {
        let findings = gw
            .inspector
            .inspect(text, Channel::Untrusted)
            .map_err(|e| {
                gw.metrics.fail("inspect");
                GatewayError::StageFailed {
                    stage: crate::error::Stage::Inspect,
                    message: format!("inspecting the server's instructions failed: {e}"),
                }
            })?;
        if findings.iter().any(|f| withholds(cfg, f)) {
            trace.findings.extend(findings);
            trace.obligations_done.push("withheld_instructions".into());
        } else {
            set(&mut out, "instructions", json!(text));
        }
    }
    let now = crate::clock::unix_now_i64();
    let (principal, chain) = identity_of(who);
    let claims = SessionClaims {
        server: cfg.name.clone(),
        principal: principal.clone(),
        chain,
        upstream: up_session,
        protocol: agreed,
        issued: now,
        expires: now
            .saturating_add(i64::try_from(gw.config.mcp.session_ttl.as_secs()).unwrap_or(3600)),
        instance: gw.config.instance.clone(),
    };
    let session_id = gw
        .mcp
        .sealer
        .seal(&claims)
        .map_err(|e| GatewayError::StageFailed {
            stage: crate::error::Stage::Gateway,
            message: format!("sealing the session id failed: {e}"),
        })?;
    let row = ztai_store::McpSessionRow {
        session_hash: session_hash(&session_id),
        server: cfg.name.clone(),
        principal,
        created_at: now,
        expires_at: claims.expires,
        ended_at: None,
        taint: BTreeSet::new(),
    };
    let g = gw.clone();
    tokio::task::spawn_blocking(move || {
        let store = g.store.as_ref();
        // Expired sessions are dropped as new ones arrive; a failure here is not the caller's.
        let _ = store.prune_mcp_sessions(now);
        store.insert_mcp_session(&row)
    })
    .await
    .map_err(crate::GatewayError::store)?
    .map_err(crate::GatewayError::store)?;
    trace.decision = Some(allowed(format!("session opened on `{}`", cfg.name)));
    Ok(Outcome::Message {
        msg: rpc_result(id, out),
        mcp_session: Some(session_id),
        redaction_session: None,
    })
}

// ---- tools ----------------------------------------------------------------------------------

fn tool_resource(server: &str, tool: &str) -> Resource {
    Resource::Tool(format!("{server}/{tool}"))
}

/// Reads one tool's pin, records a sighting, and says whether it may be offered. Blocks and
/// changes are recorded as their own audit records.
async fn sight_tool(
    gw: &Arc<Gateway>,
    cfg: &McpServerConfig,
    tool: &Value,
) -> Result<Result<String, String>, GatewayError> {
    let Some(name) = tool.get("name").and_then(Value::as_str) else {
        return Ok(Err("(a tool without a name)".into()));
    };
    if !crate::config::mcp::valid_tool_name(name) {
        return Ok(Err(format!(
            "`{}` (not a valid tool name)",
            crate::approvals::one_line(name)
        )));
    }
    let definition = pins::definition(tool);
    let digest = pins::digest(&definition);
    let text = pins::text_of(&definition);
    let findings = gw
        .inspector
        .inspect(&text, Channel::Untrusted)
        .map_err(|e| {
            gw.metrics.fail("inspect");
            GatewayError::StageFailed {
                stage: crate::error::Stage::Inspect,
                message: format!("inspecting tool `{name}` failed, so it was not offered: {e}"),
            }
        })?;
    let (g, server, tool_name, mode) = (
        gw.clone(),
        cfg.name.clone(),
        name.to_string(),
        gw.config.mcp.tool_approval,
    );
    let sighting = tokio::task::spawn_blocking(move || {
        let store = g.store.as_ref();
        let existing = store.mcp_tool(&server, &tool_name)?;
        let s = pins::sight(
            existing.as_ref(),
            &server,
            &tool_name,
            &definition,
            &digest,
            &findings,
            mode,
            crate::clock::unix_now_i64(),
        );
        match &s {
            pins::Sighting::Blocked { row, event: true } | pins::Sighting::Pinned(row) => {
                store.put_mcp_tool(row)?
            }
            _ => {}
        }
        Ok::<_, ztai_store::StoreError>(s)
    })
    .await
    .map_err(crate::GatewayError::store)?
    .map_err(|e| {
        gw.metrics.fail("store");
        crate::GatewayError::store(e)
    })?;
    let resource = tool_resource(&cfg.name, name).to_string();
    match sighting {
        pins::Sighting::Approved => Ok(Ok(name.to_string())),
        pins::Sighting::Pinned(row) => {
            let rec = crate::record::system_record(
                &gw.config.instance,
                "mcp:pin_tool",
                &resource,
                Decision::Allow,
                format!("{} (digest {})", row.reason, row.seen_digest),
            );
            append_event(gw, rec).await?;
            Ok(Ok(name.to_string()))
        }
        pins::Sighting::Blocked { row, event } => {
            if event {
                let rec = crate::record::system_record(
                    &gw.config.instance,
                    "mcp:block_tool",
                    &resource,
                    Decision::Deny,
                    format!("{} (digest {})", row.reason, row.seen_digest),
                );
                append_event(gw, rec).await?;
            }
            Ok(Err(format!("`{name}` (blocked: {})", row.reason)))
        }
    }
}

async fn append_event(gw: &Arc<Gateway>, rec: ztai_core::AuditRecord) -> Result<(), GatewayError> {
    gw.audit
        .append(rec)
        .await
        .map(|_| ())
        .map_err(|e| GatewayError::AuditUnavailable(e.to_string()))
}

/// The decision for one call of a tool by this caller in this session, with these arguments.
fn decide_tool(
    gw: &Gateway,
    who: &Authenticated,
    resource: &Resource,
    client: &str,
    taint: &BTreeSet<String>,
    arguments: &Value,
    findings: &[Finding],
) -> Result<Verdict, GatewayError> {
    let mut ctx = request_context(gw, "call_tool", client)
        .with_findings(findings.iter())
        .with_arguments(arguments)
        .map_err(|e| GatewayError::Unprocessable(e.to_string()))?;
    ctx.risk_score = gw.observe_risk(&who.principal, std::iter::empty());
    ctx.session_taint = taint.clone();
    let entry = gw.catalogue_entry(resource).unwrap_or_default();
    entry.facts().apply(&mut ctx);
    gw.authorize(who, Action::CallTool, resource, &entry.groups, &ctx)
}

/// Whether a listing offers the tool: a call without arguments would be permitted, or no
/// forbid refuses it whatever the arguments and, for every principal of the chain, either that
/// call is permitted or some permit in scope decides on the arguments (so a call with the right
/// ones may pass; each call is still decided on its own).
fn listable(
    gw: &Gateway,
    who: &Authenticated,
    resource: &Resource,
    client: &str,
    taint: &BTreeSet<String>,
) -> Result<bool, GatewayError> {
    let denial = match decide_tool(gw, who, resource, client, taint, &json!({}), &[])? {
        Verdict::Permit(_) => return Ok(true),
        Verdict::Deny(d) => d,
    };
    let engine = gw.policy.load();
    // A forbid that reads the arguments may not refuse a call with other ones.
    if !denial.policies.iter().all(|id| engine.reads_arguments(id))
        || gw.scope_denial(who, Action::CallTool, resource).is_some()
    {
        return Ok(false);
    }
    let entry = gw.catalogue_entry(resource).unwrap_or_default();
    let chain = match &who.task {
        Some(task) => gw.delegation.chain(&task.token),
        None => vec![who.principal.clone()],
    };
    let mut ctx = request_context(gw, "call_tool", client).with_principal(&who.principal);
    ctx.session_taint = taint.clone();
    entry.facts().apply(&mut ctx);
    for p in &chain {
        let permitted = matches!(
            engine.authorize(p, Action::CallTool, resource, &entry.groups, &ctx),
            Ok(Verdict::Permit(_))
        );
        let by_arguments = engine
            .may_permit_with_arguments(p, Action::CallTool, resource, &entry.groups)
            .map_err(|e| GatewayError::StageFailed {
                stage: crate::error::Stage::Policy,
                message: format!("the policy decision failed: {e}"),
            })?;
        if !permitted && !by_arguments {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn list_tools(
    gw: &Arc<Gateway>,
    cfg: &McpServerConfig,
    up: &Upstream,
    who: &Authenticated,
    s: &OpenSession,
    params: Value,
    trace: &mut Trace,
) -> Result<Value, RpcError> {
    let result = ask(gw, cfg, up, s, "tools/list", page_of(&params)).await?;
    let tools = result
        .get("tools")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total = tools.len();
    let mut listed = Vec::new();
    let mut hidden = Vec::new();
    let t = Instant::now();
    for tool in tools.into_iter().take(MAX_TOOLS) {
        match sight_tool(gw, cfg, &tool).await? {
            Err(why) => hidden.push(why),
            Ok(name) => {
                let resource = tool_resource(&cfg.name, &name);
                if listable(gw, who, &resource, &trace.client, &s.taint)? {
                    let mut t = tool;
                    if let Some(m) = t.as_object_mut() {
                        m.remove("_meta");
                    }
                    listed.push(t);
                } else {
                    hidden.push(format!("`{name}` (not permitted)"));
                }
            }
        }
    }
    trace.timings.authorize_us = micros(t);
    trace.reason = format!("listed {} of {total} tools", listed.len());
    if !hidden.is_empty() {
        trace
            .reason
            .push_str(&format!("; hidden: {}", hidden.join(", ")));
    }
    trace.decision = Some(allowed(trace.reason.clone()));
    let mut out = json!({"tools": listed});
    if let Some(c) = result.get("nextCursor").filter(|c| c.is_string()) {
        set(&mut out, "nextCursor", c.clone());
    }
    Ok(out)
}

/// Sends a request to the session's server and returns its result, or the error it becomes.
async fn ask(
    gw: &Arc<Gateway>,
    cfg: &McpServerConfig,
    up: &Upstream,
    s: &OpenSession,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    upstream_result(
        up.request(
            gw,
            cfg,
            s.claims.upstream.as_deref(),
            &s.claims.protocol,
            method,
            Some(params),
        )
        .await,
    )
}

/// The parameters of a list request passed on: only its cursor.
fn page_of(params: &Value) -> Value {
    let mut p = Map::new();
    if let Some(c) = params.get("cursor") {
        p.insert("cursor".into(), c.clone());
    }
    Value::Object(p)
}

/// An upstream answer as the client's result, or the error it becomes.
fn upstream_result(r: Result<Result<Value, Value>, UpstreamError>) -> Result<Value, RpcError> {
    match r {
        Err(e) => Err(e.into()),
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(RpcError::new(
            e.get("code")
                .and_then(Value::as_i64)
                .unwrap_or(UPSTREAM_FAILED),
            502,
            format!(
                "the MCP server refused: {}",
                e.get("message")
                    .and_then(Value::as_str)
                    .map(|m| m.chars().take(300).collect::<String>())
                    .unwrap_or_default()
            ),
        )),
    }
}

/// Makes sure the gateway has seen `tool` (listing the server itself if not) and that its
/// pinned definition is approved.
async fn pinned(
    gw: &Arc<Gateway>,
    cfg: &McpServerConfig,
    up: &Upstream,
    s: &OpenSession,
    tool: &str,
) -> Result<(), RpcError> {
    let read = |gw: Arc<Gateway>, server: String, tool: String| async move {
        tokio::task::spawn_blocking(move || gw.store.mcp_tool(&server, &tool))
            .await
            .map_err(crate::GatewayError::store)?
            .map_err(crate::GatewayError::store)
    };
    let mut row = read(gw.clone(), cfg.name.clone(), tool.to_string()).await?;
    if row.is_none() {
        let mut cursor: Option<Value> = None;
        for _ in 0..MAX_PAGES {
            let page = match cursor.take() {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let result = ask(gw, cfg, up, s, "tools/list", page).await?;
            for t in result
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .take(MAX_TOOLS)
            {
                if t.get("name").and_then(Value::as_str) == Some(tool) {
                    // Whether it may be offered is read back from the store below.
                    let _offered = sight_tool(gw, cfg, t).await?;
                }
            }
            match result.get("nextCursor") {
                Some(c) if c.is_string() => cursor = Some(c.clone()),
                _ => break,
            }
        }
        row = read(gw.clone(), cfg.name.clone(), tool.to_string()).await?;
    }
    match row {
        None => Err(RpcError::new(
            INVALID_PARAMS,
            404,
            format!("server `{}` offers no tool `{tool}`", cfg.name),
        )),
        Some(r) if r.status == ztai_store::ToolStatus::Approved => Ok(()),
        Some(r) => Err(RpcError::new(
            TOOL_BLOCKED,
            403,
            format!("tool `{tool}` is blocked: {}", r.reason),
        )
        .with_data(json!({"code": "tool_blocked", "digest": r.seen_digest}))),
    }
}

/// Every string of a result, by JSON pointer, for inspection.
fn strings(value: &Value, pointer: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::String(s) => out.push((pointer.to_string(), s.clone())),
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                strings(v, &format!("{pointer}/{i}"), out);
            }
        }
        Value::Object(m) => {
            for (k, v) in m {
                // Binary content is base64; it cannot carry text a model reads as instructions.
                if k == "blob" || k == "data" || k == "_meta" {
                    continue;
                }
                strings(
                    v,
                    &format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        _ => {}
    }
}

/// What inspecting untrusted content decided.
struct Screened {
    /// The content to hand over (redacted if need be), or `None` when it is withheld.
    content: Option<Value>,
    findings: Vec<Finding>,
    /// The finding types that withheld it.
    blocking: BTreeSet<String>,
}

/// Inspects every string of `value` as untrusted content: findings in a blocking category
/// withhold it, findings in a redacting category are redacted (as `inspect.redaction` says, in
/// the call's redaction session), others are annotated.
fn screen(
    gw: &Gateway,
    cfg: &McpServerConfig,
    value: &Value,
    redaction: &mut LazySession<'_>,
) -> Result<Screened, GatewayError> {
    let mut parts = Vec::new();
    strings(value, "", &mut parts);
    let mut out = value.clone();
    let mut all = Vec::new();
    let mut blocking = BTreeSet::new();
    for (pointer, text) in &parts {
        let f = gw
            .inspector
            .inspect(text, Channel::Untrusted)
            .map_err(|e| {
                gw.metrics.fail("inspect");
                GatewayError::StageFailed {
                    stage: crate::error::Stage::Inspect,
                    message: format!("inspecting the result failed, so it was withheld: {e}"),
                }
            })?;
        if f.is_empty() {
            continue;
        }
        for x in &f {
            if withholds(cfg, x) {
                blocking.insert(x.kind.clone());
            }
        }
        if f.iter().any(|x| cfg.result_redact.contains(&x.category))
            && let Some(slot) = out.pointer_mut(pointer)
        {
            *slot =
                Value::String(redaction.redact(text, &f, &cfg.result_redact, Instant::now())?);
        }
        all.extend(f);
    }
    Ok(Screened {
        content: blocking.is_empty().then_some(out),
        findings: all,
        blocking,
    })
}

fn findings_meta(findings: &[Finding]) -> Value {
    let mut kinds: Vec<Value> = findings
        .iter()
        .map(|f| json!({"type": f.kind, "category": f.category.as_str(), "severity": f.severity.as_str()}))
        .collect();
    kinds.dedup();
    Value::Array(kinds)
}

/// The labels reading this content adds.
fn taint_of(
    cfg: &McpServerConfig,
    extra: &BTreeSet<String>,
    classification: &str,
    findings: &[Finding],
) -> BTreeSet<String> {
    let mut labels = extra.clone();
    if cfg.untrusted
        || findings
            .iter()
            .any(|f| f.category == FindingCategory::PromptInjection)
    {
        labels.insert(TAINT_UNTRUSTED.into());
    }
    if matches!(classification, "confidential" | "restricted") {
        labels.insert(TAINT_CONFIDENTIAL.into());
    }
    labels
}

#[allow(clippy::too_many_arguments)]
async fn call_tool(
    gw: &Arc<Gateway>,
    cfg: &McpServerConfig,
    up: &Upstream,
    who: &Authenticated,
    s: &mut OpenSession,
    redaction: &mut LazySession<'_>,
    params: Value,
    trace: &mut Trace,
) -> Result<Value, RpcError> {
    let name = params
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| crate::config::mcp::valid_tool_name(n))
        .ok_or_else(|| RpcError::new(INVALID_PARAMS, 422, "params.name must be a tool name"))?
        .to_string();
    let arguments = match params.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(a @ Value::Object(_)) => a.clone(),
        Some(_) => {
            return Err(RpcError::new(
                INVALID_PARAMS,
                422,
                "params.arguments must be an object",
            ));
        }
    };
    let ticket = params
        .pointer(&format!("/_meta/{}", APPROVAL_META.replace('/', "~1")))
        .and_then(Value::as_str)
        .map(str::to_string);
    let resource = tool_resource(&cfg.name, &name);
    trace.resource = resource.to_string();
    // What an approval binds: the tool and its arguments, not the JSON-RPC envelope (whose id
    // changes when the call is sent again with its ticket).
    trace.request_digest = hex::encode(Sha256::digest(
        pins::canonical(&json!({"server": cfg.name, "tool": name, "arguments": arguments}))
            .as_bytes(),
    ));

    pinned(gw, cfg, up, s, &name).await?;

    let (per_minute, extra_taint) = cfg.tool(&name);
    let key = format!(
        "mcp:{}:{}:{}/{}",
        who.principal.kind, who.principal.id, cfg.name, name
    );
    gw.limiter
        .take(
            &key,
            crate::limits::Rate::per_minute(per_minute, per_minute),
            1.0,
            "tool calls",
            Instant::now(),
        )
        .map_err(|e| GatewayError::RateLimited {
            message: format!(
                "more than {per_minute} calls of `{name}` a minute; retry in {} s",
                e.retry_after_secs
            ),
            retry_after_secs: e.retry_after_secs,
        })
        .map_err(RpcError::from)?;

    let t = Instant::now();
    let mut inspected = Vec::new();
    crate::decision_api::inspect_arguments(gw, &arguments, "", &mut inspected)?;
    for (_, _, f) in &inspected {
        trace.findings.extend(f.iter().cloned());
    }
    trace.timings.inspect_input_us = micros(t);
    let t = Instant::now();
    gw.observe_risk(&who.principal, trace.findings.iter());
    let verdict = decide_tool(
        gw,
        who,
        &resource,
        &trace.client,
        &s.taint,
        &arguments,
        &trace.findings,
    )?;
    trace.timings.authorize_us = micros(t);
    let permit = match verdict {
        Verdict::Permit(p) => {
            trace.decision = Some(p.decision().clone());
            p
        }
        Verdict::Deny(d) => {
            let msg = d.denial_message();
            trace.decision = Some(d.clone());
            let mut data = json!({"code": "policy_denied", "policies": d.policies});
            if !s.taint.is_empty() {
                set(&mut data, "session_taint", json!(s.taint));
            }
            return Err(RpcError::new(
                POLICY_DENIED,
                403,
                format!("the call of `{name}` was denied: {msg}"),
            )
            .with_data(data));
        }
    };
    let mut forward = arguments.clone();
    let mut log_full = false;
    for o in &permit.decision().obligations {
        match o {
            Obligation::Redact { categories } => {
                crate::decision_api::redact_arguments(
                    &inspected,
                    categories,
                    &mut forward,
                    redaction,
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
                    "action": "call_tool",
                    "resource": trace.resource,
                    "server": cfg.name,
                    "argument_paths": inspected.iter().map(|(p, _, _)| p.clone()).collect::<Vec<_>>(),
                    "session_taint": s.taint,
                });
                if let Some(pending) = crate::approvals::carry_out(
                    gw,
                    trace,
                    &who.principal,
                    Action::CallTool,
                    group,
                    *timeout_secs,
                    ticket.clone(),
                    summary,
                )
                .await?
                {
                    let body = axum::body::to_bytes(pending.into_body(), 64 * 1024)
                        .await
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                        .unwrap_or_else(|| json!({}));
                    let approval = body.get("approval").cloned().unwrap_or_else(|| json!({}));
                    let ticket_id = approval
                        .get("id")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    return Err(RpcError::new(
                        APPROVAL_PENDING,
                        202,
                        format!(
                            "the call of `{name}` needs approval by `{group}` (ticket {ticket_id}); once approved, call it again with the same arguments and params._meta[\"{APPROVAL_META}\"] = \"{ticket_id}\""
                        ),
                    )
                    .with_data(json!({"code": "approval_pending", "approval": approval})));
                }
            }
        }
    }

    let mut up_params = json!({"name": name, "arguments": forward});
    if let Some(Value::Object(meta)) = params.get("_meta") {
        let meta: Map<String, Value> = meta
            .iter()
            .filter(|(k, _)| !k.starts_with("ztai/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !meta.is_empty() {
            set(&mut up_params, "_meta", Value::Object(meta));
        }
    }
    let t = Instant::now();
    let result = ask(gw, cfg, up, s, "tools/call", up_params).await;
    trace.timings.upstream_us = micros(t);
    let result = match result {
        Ok(r) => r,
        Err(mut e) => {
            // The server's own message is untrusted text as well.
            let screened = screen(gw, cfg, &json!(e.message), redaction)?;
            if screened.content.is_none() {
                trace.findings.extend(screened.findings);
                e.message = "the MCP server refused the call; its error message was withheld (it carries injected instructions)".into();
            }
            return Err(e);
        }
    };
    let t = Instant::now();
    let screened = screen(gw, cfg, &result, redaction)?;
    trace.timings.inspect_output_us = micros(t);
    trace.findings.extend(screened.findings.iter().cloned());
    let classification = gw
        .catalogue_entry(&resource)
        .unwrap_or_default()
        .classification;
    add_taint(
        gw,
        who,
        s,
        taint_of(cfg, &extra_taint, &classification, &screened.findings),
    )
    .await?;
    let out = match screened.content {
        None => {
            let kinds: Vec<&str> = screened.blocking.iter().map(String::as_str).collect();
            trace.reason = format!("the result was withheld: it carries {}", kinds.join(", "));
            trace.obligations_done.push("withheld_result".into());
            json!({
                "content": [{"type": "text", "text": format!(
                    "ZTAI withheld the result of `{name}`: it carries content that reads as instructions ({}). Treat the tool's output as unavailable.",
                    kinds.join(", ")
                )}],
                "isError": true,
                "_meta": {"ztai/findings": findings_meta(&screened.findings), "ztai/withheld": true},
            })
        }
        Some(mut v) => {
            if !screened.findings.is_empty()
                && let Some(m) = v.as_object_mut()
            {
                let meta = m.entry("_meta").or_insert_with(|| json!({}));
                if let Some(meta) = meta.as_object_mut() {
                    meta.insert("ztai/findings".into(), findings_meta(&screened.findings));
                }
            }
            v
        }
    };
    if log_full {
        trace.content = Some(
            json!({"request": {"tool": trace.resource, "arguments": arguments}, "response": out}),
        );
    }
    Ok(out)
}

// ---- resources ------------------------------------------------------------------------------

async fn list_resources(
    gw: &Arc<Gateway>,
    cfg: &McpServerConfig,
    up: &Upstream,
    who: &Authenticated,
    s: &OpenSession,
    params: Value,
    trace: &mut Trace,
) -> Result<Value, RpcError> {
    let result = ask(gw, cfg, up, s, "resources/list", page_of(&params)).await?;
    let resources: Vec<Value> = result
        .get("resources")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .take(crate::retrieval::MAX_CANDIDATES)
        .collect();
    let uris: Vec<(String, Vec<Finding>)> = resources
        .iter()
        .map(|r| {
            (
                r.get("uri")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                Vec::new(),
            )
        })
        .collect();
    let g = gw.clone();
    let client = trace.client.clone();
    let who2 = who.clone();
    let taint = s.taint.clone();
    let outcomes = tokio::task::spawn_blocking(move || {
        let mut base =
            request_context(&g, "resources/list", &client).with_principal(&who2.principal);
        base.risk_score = g.observe_risk(&who2.principal, std::iter::empty());
        base.session_taint = taint;
        let engine = g.policy.load_full();
        crate::retrieval::decide_batch(&g, &engine, &who2, &base, &uris).map(|(o, _)| o)
    })
    .await
    .map_err(|e| GatewayError::StageFailed {
        stage: crate::error::Stage::Policy,
        message: format!("deciding the resources failed: {e}"),
    })??;
    let total = resources.len();
    let listed: Vec<Value> = resources
        .into_iter()
        .zip(outcomes)
        .filter(|(_, o)| matches!(o, crate::retrieval::Outcome::Permitted { .. }))
        .map(|(r, _)| r)
        .collect();
    trace.reason = format!("listed {} of {total} resources", listed.len());
    trace.decision = Some(allowed(trace.reason.clone()));
    let mut out = json!({"resources": listed});
    if let Some(c) = result.get("nextCursor").filter(|c| c.is_string()) {
        set(&mut out, "nextCursor", c.clone());
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn read_resource(
    gw: &Arc<Gateway>,
    cfg: &McpServerConfig,
    up: &Upstream,
    who: &Authenticated,
    s: &mut OpenSession,
    redaction: &mut LazySession<'_>,
    params: Value,
    trace: &mut Trace,
) -> Result<Value, RpcError> {
    let uri = params
        .get("uri")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty() && u.len() <= 256 && !u.chars().any(char::is_control))
        .ok_or_else(|| {
            RpcError::new(
                INVALID_PARAMS,
                422,
                "params.uri must be a resource URI of 1 to 256 characters",
            )
        })?
        .to_string();
    let resource = Resource::Document(uri.clone());
    trace.resource = resource.to_string();
    let Some(entry) = gw.catalogue_entry(&resource) else {
        return Err(RpcError::new(
            POLICY_DENIED,
            403,
            format!(
                "resource `{uri}` is not in the documents catalogue; only catalogued documents can be read"
            ),
        ));
    };
    let mut ctx = request_context(gw, "resources/read", &trace.client);
    ctx.risk_score = gw.observe_risk(&who.principal, std::iter::empty());
    ctx.session_taint = s.taint.clone();
    entry.facts().apply(&mut ctx);
    match gw.authorize(who, Action::ReadDocument, &resource, &entry.groups, &ctx)? {
        Verdict::Permit(p) => {
            if p.decision()
                .obligations
                .iter()
                .any(|o| matches!(o, Obligation::Approval { .. }))
            {
                trace.decision = Some(p.decision().clone());
                return Err(RpcError::new(
                    POLICY_DENIED,
                    403,
                    "reading this resource needs a human approval; ask for it with POST /v1/authorize",
                ));
            }
            trace.decision = Some(p.decision().clone());
        }
        Verdict::Deny(d) => {
            let msg = d.denial_message();
            trace.decision = Some(d);
            return Err(RpcError::new(
                POLICY_DENIED,
                403,
                format!("reading `{uri}` was denied: {msg}"),
            ));
        }
    }
    let t = Instant::now();
    let result = ask(gw, cfg, up, s, "resources/read", json!({"uri": uri})).await?;
    trace.timings.upstream_us = micros(t);
    let screened = screen(gw, cfg, &result, redaction)?;
    trace.findings.extend(screened.findings.iter().cloned());
    add_taint(
        gw,
        who,
        s,
        taint_of(cfg, &cfg.taint, &entry.classification, &screened.findings),
    )
    .await?;
    match screened.content {
        None => {
            let kinds: Vec<&str> = screened.blocking.iter().map(String::as_str).collect();
            trace.reason = format!("the resource was withheld: it carries {}", kinds.join(", "));
            Err(RpcError::new(
                POLICY_DENIED,
                403,
                format!(
                    "ZTAI withheld `{uri}`: it carries content that reads as instructions ({})",
                    kinds.join(", ")
                ),
            )
            .with_data(
                json!({"code": "content_withheld", "findings": findings_meta(&screened.findings)}),
            ))
        }
        Some(v) => Ok(v),
    }
}

/// Whether a finding withholds what it was found in. Prompt injection withholds only at high
/// severity: the rules' verdicts are high, while the classifier's and the task-instruction
/// heuristic's medium findings annotate the result and taint the session but do not withhold it
/// (a tool's output routinely holds imperative sentences).
fn withholds(cfg: &McpServerConfig, f: &ztai_core::Finding) -> bool {
    cfg.result_block.contains(&f.category)
        && (f.category != ztai_core::FindingCategory::PromptInjection
            || f.severity >= ztai_core::Severity::High)
}

#[cfg(test)]
mod tests;
