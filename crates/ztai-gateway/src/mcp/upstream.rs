//! The two ways the gateway reaches an MCP server: Streamable HTTP, and a stdio program it
//! starts itself.
//!
//! Both speak JSON-RPC with the gateway's own request ids (the client's id goes back on the
//! answer), so ids can never collide between clients sharing a stdio server. Replies are read
//! whole and bounded: a result is inspected before any of it reaches the agent, so nothing is
//! streamed through. Messages the server sends that are not the awaited answer (progress and
//! log notifications, requests for sampling or elicitation) are not relayed: the agent sees
//! only answers the gateway has inspected. A stdio server is started on first use, shared by
//! every session on this replica, and started again if it exits; it gets only the environment
//! its configuration names.

use super::set;
use crate::config::mcp::{McpServerConfig, McpTransport};
use crate::sse::{SseEvent, SseParser};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Mutex, oneshot};

/// The largest message accepted from a server (and so the most text one inspection sees).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// The protocol revision the gateway asks for when it initialises a stdio server itself.
pub const PROTOCOL_VERSION: &str = "2025-11-25";
/// Revisions a client may agree on with the gateway.
pub const PROTOCOL_VERSIONS: [&str; 3] = ["2025-11-25", "2025-06-18", "2025-03-26"];

/// Why a server could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("MCP server `{server}` did not answer within {secs} s")]
    Timeout { server: String, secs: u64 },
    #[error("MCP server `{server}` failed: {message}")]
    Failed { server: String, message: String },
    #[error("MCP server `{server}` no longer knows this session; initialize a new one")]
    SessionGone { server: String },
}

/// One server's connection.
pub(crate) enum Upstream {
    Http {
        url: http::Uri,
        auth: Option<http::HeaderValue>,
    },
    Stdio(Stdio),
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Http { url, .. } => write!(f, "Http({url})"),
            Upstream::Stdio(_) => f.write_str("Stdio"),
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

fn failed(server: &str, message: impl std::fmt::Display) -> UpstreamError {
    UpstreamError::Failed {
        server: server.into(),
        message: message.to_string(),
    }
}

impl Upstream {
    /// The connection for a configured server (a stdio program is started on first use).
    pub fn new(cfg: &McpServerConfig) -> Result<Self, crate::config::ConfigError> {
        Ok(match &cfg.transport {
            McpTransport::Http { url, auth_env } => {
                let auth = match auth_env {
                    Some(var) => {
                        let key = std::env::var(var).map_err(|_| crate::config::ConfigError {
                            key: format!("mcp.servers.{}.api_key_env", cfg.name),
                            message: format!("the environment variable `{var}` is not set"),
                        })?;
                        let mut v = http::HeaderValue::from_str(&format!("Bearer {}", key.trim()))
                            .map_err(|_| crate::config::ConfigError {
                                key: format!("mcp.servers.{}.api_key_env", cfg.name),
                                message: "the key holds characters not allowed in a header".into(),
                            })?;
                        v.set_sensitive(true);
                        Some(v)
                    }
                    None => None,
                };
                Upstream::Http {
                    url: url.clone(),
                    auth,
                }
            }
            McpTransport::Stdio { .. } => Upstream::Stdio(Stdio {
                conn: Mutex::new(None),
            }),
        })
    }

    /// Opens a session: for HTTP the client's `initialize` goes to the server (which may hand
    /// out its own session id); a stdio server was initialised by the gateway when started, and
    /// its answer is reused. Returns the `initialize` result and the server's session id.
    pub async fn initialize(
        &self,
        gw: &crate::state::Gateway,
        cfg: &McpServerConfig,
        params: Value,
    ) -> Result<(Value, Option<String>), UpstreamError> {
        match self {
            Upstream::Http { .. } => {
                let protocol = params
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .unwrap_or(PROTOCOL_VERSION)
                    .to_string();
                let (reply, session) = self
                    .http_call(gw, cfg, None, &protocol, "initialize", Some(params), true)
                    .await?;
                let result = answer(cfg, reply)?;
                if let Some(s) = &session {
                    let agreed = result
                        .get("protocolVersion")
                        .and_then(Value::as_str)
                        .unwrap_or(&protocol)
                        .to_string();
                    self.http_call(
                        gw,
                        cfg,
                        Some(s),
                        &agreed,
                        "notifications/initialized",
                        None,
                        false,
                    )
                    .await?;
                } else {
                    self.http_call(
                        gw,
                        cfg,
                        None,
                        &protocol,
                        "notifications/initialized",
                        None,
                        false,
                    )
                    .await?;
                }
                Ok((result, session))
            }
            Upstream::Stdio(s) => Ok((s.connection(cfg).await?.initialized.clone(), None)),
        }
    }

    /// Sends a request and returns its answer: the server's `result`, or its JSON-RPC `error`
    /// object as `Err(Ok(error))`.
    pub async fn request(
        &self,
        gw: &crate::state::Gateway,
        cfg: &McpServerConfig,
        session: Option<&str>,
        protocol: &str,
        method: &str,
        params: Option<Value>,
    ) -> Result<Result<Value, Value>, UpstreamError> {
        let reply = match self {
            Upstream::Http { .. } => {
                self.http_call(gw, cfg, session, protocol, method, params, true)
                    .await?
                    .0
            }
            Upstream::Stdio(s) => {
                let conn = s.connection(cfg).await?;
                match conn.call(cfg, method, params).await {
                    Err(e) => {
                        // A server that stopped answering is started afresh next time.
                        s.forget(&conn).await;
                        return Err(e);
                    }
                    Ok(v) => v,
                }
            }
        };
        match reply.get("error") {
            Some(e) => Ok(Err(e.clone())),
            None => Ok(Ok(answer(cfg, reply)?)),
        }
    }

    /// Tells the server a session ended (HTTP servers with sessions only).
    pub async fn end(&self, gw: &crate::state::Gateway, cfg: &McpServerConfig, session: &str) {
        if let Upstream::Http { url, auth } = self {
            let mut req = http::Request::delete(url.clone()).header("mcp-session-id", session);
            if let Some(a) = auth {
                req = req.header(http::header::AUTHORIZATION, a.clone());
            }
            if let Ok(req) = req.body(Full::new(Bytes::new())) {
                let _ = tokio::time::timeout(cfg.timeout, gw.client.request(req)).await;
            }
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the connection, the gateway's client, the server's settings, the session, the revision, the message and whether an answer is awaited"
    )]
    async fn http_call(
        &self,
        gw: &crate::state::Gateway,
        cfg: &McpServerConfig,
        session: Option<&str>,
        protocol: &str,
        method: &str,
        params: Option<Value>,
        expect_answer: bool,
    ) -> Result<(Value, Option<String>), UpstreamError> {
        let Upstream::Http { url, auth } = self else {
            return Err(failed(&cfg.name, "not an HTTP server"));
        };
        let id = next_id();
        let mut msg = json!({"jsonrpc": "2.0", "method": method});
        if expect_answer {
            set(&mut msg, "id", json!(id));
        }
        if let Some(p) = params {
            set(&mut msg, "params", p);
        }
        let mut req = http::Request::post(url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json, text/event-stream")
            .header("mcp-protocol-version", protocol);
        if let Some(s) = session {
            req = req.header("mcp-session-id", s);
        }
        if let Some(a) = auth {
            req = req.header(http::header::AUTHORIZATION, a.clone());
        }
        let req = req
            .body(Full::new(Bytes::from(msg.to_string())))
            .map_err(|e| failed(&cfg.name, e))?;
        let timeout = || UpstreamError::Timeout {
            server: cfg.name.clone(),
            secs: cfg.timeout.as_secs(),
        };
        let deadline = tokio::time::Instant::now() + cfg.timeout;
        let resp = tokio::time::timeout_at(deadline, gw.client.request(req))
            .await
            .map_err(|_| timeout())?
            .map_err(|e| failed(&cfg.name, format!("cannot reach {url}: {e}")))?;
        let status = resp.status();
        if status == http::StatusCode::NOT_FOUND && session.is_some() {
            return Err(UpstreamError::SessionGone {
                server: cfg.name.clone(),
            });
        }
        let new_session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                !v.is_empty() && v.len() <= 1024 && v.bytes().all(|b| (0x21..=0x7e).contains(&b))
            })
            .map(str::to_string);
        if !expect_answer {
            return if status.is_success() {
                Ok((Value::Null, new_session))
            } else {
                Err(failed(
                    &cfg.name,
                    format!("answered {status} to `{method}`"),
                ))
            };
        }
        let sse = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !status.is_success() {
            return Err(failed(
                &cfg.name,
                format!("answered {status} to `{method}`"),
            ));
        }
        let mut body = resp.into_body();
        let mut parser = SseParser::new(MAX_MESSAGE_BYTES);
        let mut buf = Vec::new();
        let mut events: Vec<SseEvent> = Vec::new();
        loop {
            let frame = tokio::time::timeout_at(deadline, body.frame())
                .await
                .map_err(|_| timeout())?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| failed(&cfg.name, format!("reading the answer: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if sse {
                parser
                    .feed(&data, &mut events)
                    .map_err(|e| failed(&cfg.name, e))?;
                for ev in events.drain(..) {
                    let Ok(m) = serde_json::from_str::<Value>(&ev.data) else {
                        continue;
                    };
                    if m.get("id") == Some(&json!(id))
                        && (m.get("result").is_some() || m.get("error").is_some())
                    {
                        return Ok((m, new_session));
                    }
                }
            } else {
                if buf.len() + data.len() > MAX_MESSAGE_BYTES {
                    return Err(failed(
                        &cfg.name,
                        format!("its answer is larger than {MAX_MESSAGE_BYTES} bytes"),
                    ));
                }
                buf.extend_from_slice(&data);
            }
        }
        if sse {
            return Err(failed(
                &cfg.name,
                "the event stream ended without an answer",
            ));
        }
        let m: Value = serde_json::from_slice(&buf)
            .map_err(|e| failed(&cfg.name, format!("its answer is not JSON: {e}")))?;
        if m.get("id") != Some(&json!(id)) {
            return Err(failed(&cfg.name, "its answer is for another request"));
        }
        Ok((m, new_session))
    }
}

/// The `result` of an answer, which must be an object.
fn answer(cfg: &McpServerConfig, reply: Value) -> Result<Value, UpstreamError> {
    match reply {
        Value::Object(mut m) => match m.remove("result") {
            Some(r @ Value::Object(_)) => Ok(r),
            Some(_) => Err(failed(&cfg.name, "its result is not an object")),
            None => match m.get("error") {
                Some(e) => Err(failed(
                    &cfg.name,
                    format!(
                        "it answered with an error: {}",
                        e.get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("(no message)")
                    ),
                )),
                None => Err(failed(&cfg.name, "its answer has neither result nor error")),
            },
        },
        _ => Err(failed(&cfg.name, "its answer is not a JSON object")),
    }
}

// ---- stdio ----------------------------------------------------------------------------------

/// A stdio server, started on first use.
pub(crate) struct Stdio {
    conn: Mutex<Option<Arc<StdioConn>>>,
}

type Pending = std::sync::Mutex<HashMap<u64, oneshot::Sender<Value>>>;

pub(crate) struct StdioConn {
    stdin: Arc<Mutex<tokio::process::ChildStdin>>,
    pending: Arc<Pending>,
    alive: Arc<std::sync::atomic::AtomicBool>,
    /// The server's answer to the gateway's `initialize`.
    initialized: Value,
    _child: tokio::process::Child,
}

impl Stdio {
    async fn connection(&self, cfg: &McpServerConfig) -> Result<Arc<StdioConn>, UpstreamError> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref()
            && c.alive.load(Ordering::Relaxed)
        {
            return Ok(c.clone());
        }
        let conn = Arc::new(StdioConn::start(cfg).await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    async fn forget(&self, conn: &Arc<StdioConn>) {
        let mut slot = self.conn.lock().await;
        if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *slot = None;
        }
    }
}

impl StdioConn {
    async fn start(cfg: &McpServerConfig) -> Result<Self, UpstreamError> {
        let McpTransport::Stdio { command, args, env } = &cfg.transport else {
            return Err(failed(&cfg.name, "not a stdio server"));
        };
        let mut cmd = tokio::process::Command::new(command);
        cmd.args(args)
            .env_clear()
            .envs(env)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        // The program finds its interpreter and libraries, and nothing of the gateway's.
        if !env.contains_key("PATH")
            && let Some(path) = std::env::var_os("PATH")
        {
            cmd.env("PATH", path);
        }
        let mut child = cmd.spawn().map_err(|e| {
            failed(
                &cfg.name,
                format!("cannot start `{}`: {e}", command.display()),
            )
        })?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| failed(&cfg.name, "no stdin"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| failed(&cfg.name, "no stdout"))?;
        if let Some(stderr) = child.stderr.take() {
            let name = cfg.name.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let line: String = line.chars().take(512).collect();
                    tracing::debug!(server = %name, "{line}");
                }
            });
        }
        let pending: Arc<Pending> = Arc::default();
        let alive = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let stdin = Arc::new(Mutex::new(stdin));
        tokio::spawn(read_loop(
            cfg.name.clone(),
            BufReader::new(stdout),
            stdin.clone(),
            pending.clone(),
            alive.clone(),
        ));
        let mut conn = StdioConn {
            stdin,
            pending,
            alive,
            initialized: Value::Null,
            _child: child,
        };
        let init = conn
            .call(
                cfg,
                "initialize",
                Some(json!({
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {},
                    "clientInfo": {"name": "ztai-gateway", "version": env!("CARGO_PKG_VERSION")},
                })),
            )
            .await?;
        conn.initialized = answer(cfg, init)?;
        conn.send(
            cfg,
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await?;
        tracing::info!(server = %cfg.name, "started the stdio MCP server");
        Ok(conn)
    }

    async fn send(&self, cfg: &McpServerConfig, msg: &Value) -> Result<(), UpstreamError> {
        let mut line = msg.to_string();
        line.push('\n');
        let mut stdin = self.stdin.lock().await;
        stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| failed(&cfg.name, format!("writing to it: {e}")))?;
        stdin
            .flush()
            .await
            .map_err(|e| failed(&cfg.name, format!("writing to it: {e}")))
    }

    async fn call(
        &self,
        cfg: &McpServerConfig,
        method: &str,
        params: Option<Value>,
    ) -> Result<Value, UpstreamError> {
        if !self.alive.load(Ordering::Relaxed) {
            return Err(failed(&cfg.name, "the program has exited"));
        }
        let id = next_id();
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        let mut msg = json!({"jsonrpc": "2.0", "id": id, "method": method});
        if let Some(p) = params {
            set(&mut msg, "params", p);
        }
        let sent = self.send(cfg, &msg).await;
        let outcome = match sent {
            Err(e) => Err(e),
            Ok(()) => match tokio::time::timeout(cfg.timeout, rx).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(_)) => Err(failed(&cfg.name, "the program exited before answering")),
                Err(_) => Err(UpstreamError::Timeout {
                    server: cfg.name.clone(),
                    secs: cfg.timeout.as_secs(),
                }),
            },
        };
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        outcome
    }
}

/// Reads the program's stdout: answers go to their waiters; requests from the server are
/// refused (the gateway does not relay sampling or elicitation); anything else is dropped. A
/// line longer than the bound, or the end of output, ends the connection.
async fn read_loop(
    name: String,
    mut out: BufReader<tokio::process::ChildStdout>,
    stdin: Arc<Mutex<tokio::process::ChildStdin>>,
    pending: Arc<Pending>,
    alive: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = u64::try_from(MAX_MESSAGE_BYTES).unwrap_or(u64::MAX) + 1;
        let n = match (&mut out).take(limit).read_until(b'\n', &mut line).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(server = %name, error = %e, "reading the stdio MCP server failed");
                break;
            }
        };
        if n == 0 {
            break;
        }
        if line.len() > MAX_MESSAGE_BYTES {
            tracing::warn!(server = %name, "the stdio MCP server sent a message over {MAX_MESSAGE_BYTES} bytes; stopping it");
            break;
        }
        let Ok(msg) = serde_json::from_slice::<Value>(&line) else {
            tracing::debug!(server = %name, "skipping a line that is not JSON");
            continue;
        };
        let id = msg.get("id").and_then(Value::as_u64);
        let is_answer = msg.get("result").is_some() || msg.get("error").is_some();
        if let (Some(id), true) = (id, is_answer) {
            let tx = pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            if let Some(tx) = tx {
                let _ = tx.send(msg);
            }
        } else if let (Some(id), Some(method)) = (msg.get("id"), msg.get("method")) {
            tracing::debug!(server = %name, method = %method, "refusing a request from the stdio MCP server");
            let mut refusal = json!({"jsonrpc": "2.0", "id": id, "error": {
                "code": -32601,
                "message": "the ZTAI gateway does not relay requests from servers to clients",
            }})
            .to_string();
            refusal.push('\n');
            let mut w = stdin.lock().await;
            if w.write_all(refusal.as_bytes()).await.is_err() || w.flush().await.is_err() {
                break;
            }
        }
    }
    alive.store(false, Ordering::Relaxed);
    // Waiters see their sender dropped: "exited before answering".
    pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
    tracing::warn!(server = %name, "the stdio MCP server's output ended; it will be started again on next use");
}

#[cfg(test)]
pub(crate) fn settings_for_test(name: &str, transport: McpTransport) -> McpServerConfig {
    McpServerConfig {
        name: name.into(),
        transport,
        timeout: std::time::Duration::from_secs(5),
        untrusted: true,
        taint: Default::default(),
        result_block: vec![ztai_core::FindingCategory::PromptInjection],
        result_redact: vec![],
        calls_per_minute: 60,
        tools: Default::default(),
    }
}
