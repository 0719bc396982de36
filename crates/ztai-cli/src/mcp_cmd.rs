//! `ztai mcp tools|approve|block`: the MCP tools the gateway has seen and their pins, through
//! the running gateway's admin API; `ztai mcp list|call`: a minimal MCP client that talks to
//! `/mcp/{server}` as an agent would, to try policies from a shell.
//!
//! `approve` shows the definition it is about to approve and sends its digest, so a server that
//! changes the tool between the look and the approval gets a refusal, not an approval. `call`
//! exits 0 on a result, 2 when the tool's result was an error (or withheld by the gateway), 3
//! when policy denied the call, 4 when it is held for approval, 1 on anything else.

use crate::admin_client::AdminArgs;
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;

/// Where the gateway's MCP endpoints are and the caller's credential.
#[derive(Debug, Clone, clap::Args)]
pub struct McpClientArgs {
    /// The gateway's MCP base URL (servers are `<url>/<server>`; `ztai up` writes it to
    /// quickstart.env).
    #[arg(
        long,
        env = "ZTAI_MCP_URL",
        default_value = "http://127.0.0.1:8080/mcp"
    )]
    pub mcp_url: String,
    /// Your credential: an API key, a JWT or an agent's task token.
    #[arg(long, env = "ZTAI_API_KEY", hide_env_values = true)]
    pub api_key: String,
}

#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// List the tools a server offers you through the gateway (what policy lets you call).
    List {
        #[command(flatten)]
        client: McpClientArgs,
        server: String,
        #[arg(long)]
        json: bool,
    },
    /// Call one tool through the gateway, as an agent would.
    Call {
        #[command(flatten)]
        client: McpClientArgs,
        server: String,
        tool: String,
        /// The arguments, a JSON object.
        #[arg(default_value = "{}")]
        arguments: String,
        /// An approval ticket for a call that was held (`apr_…`).
        #[arg(long)]
        approval: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Tools seen on the fronted MCP servers, with their status and why a blocked one is blocked.
    Tools {
        #[command(flatten)]
        admin: AdminArgs,
        /// Only this server's tools.
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Approve a tool's current definition (pin it), after reading it.
    Approve {
        #[command(flatten)]
        admin: AdminArgs,
        server: String,
        tool: String,
        /// The digest you reviewed (`seen_digest`); without it, the current one is shown and
        /// approved.
        #[arg(long)]
        digest: Option<String>,
    },
    /// Block a tool until it is approved again.
    Block {
        #[command(flatten)]
        admin: AdminArgs,
        server: String,
        tool: String,
        #[arg(long)]
        reason: String,
    },
}

/// Server and tool names go into URL paths: only the characters their rules allow.
fn segment(s: &str) -> anyhow::Result<&str> {
    if !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        && s != "."
        && s != ".."
    {
        Ok(s)
    } else {
        anyhow::bail!("`{s}` is not a server or tool name (letters, digits, `_`, `-`, `.`)")
    }
}

/// One MCP session with the gateway, over plain HTTP.
struct Session {
    url: String,
    credential: String,
    id: Option<String>,
    runtime: tokio::runtime::Runtime,
    next: u64,
}

impl Session {
    fn open(args: &McpClientArgs, server: &str) -> anyhow::Result<Self> {
        if !args.mcp_url.starts_with("http://") {
            anyhow::bail!(
                "the MCP URL `{}` must start with http:// for this command",
                args.mcp_url
            );
        }
        let mut s = Session {
            url: format!(
                "{}/{}",
                args.mcp_url.trim_end_matches('/'),
                segment(server)?
            ),
            credential: args.api_key.trim().to_string(),
            id: None,
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            next: 1,
        };
        let init = s.request(
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "ztai-cli", "version": env!("CARGO_PKG_VERSION")}}),
        )?;
        if let Some(e) = init.get("error") {
            anyhow::bail!(
                "the gateway refused the session: {}",
                e.get("message").and_then(Value::as_str).unwrap_or("")
            );
        }
        s.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        Ok(s)
    }

    fn post(&mut self, msg: &Value) -> anyhow::Result<Value> {
        use http_body_util::BodyExt;
        let mut req = hyper::Request::post(&self.url)
            .header("authorization", format!("Bearer {}", self.credential))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(id) = &self.id {
            req = req.header("mcp-session-id", id);
        }
        let req = req.body(http_body_util::Full::new(bytes::Bytes::from(
            msg.to_string(),
        )))?;
        let url = self.url.clone();
        let (status, session, body) = self.runtime.block_on(async {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http();
            // Long enough for a call held in wait mode to be approved.
            let resp =
                tokio::time::timeout(std::time::Duration::from_secs(330), client.request(req))
                    .await
                    .map_err(|_| anyhow::anyhow!("no answer from {url} within 330 s"))?
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "cannot reach {url}: {e}; is the gateway running (`ztai up`)?"
                        )
                    })?;
            let status = resp.status();
            let session = resp
                .headers()
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, session, body))
        })?;
        if let Some(s) = session {
            self.id = Some(s);
        }
        if status == hyper::StatusCode::ACCEPTED {
            return Ok(Value::Null);
        }
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = json
                .pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            anyhow::bail!("the gateway refused ({status}): {message}");
        }
        Ok(json)
    }

    fn request(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next;
        self.next += 1;
        self.post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
    }
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
fn client_command(cmd: McpCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        McpCommand::List {
            client,
            server,
            json,
        } => {
            let mut s = Session::open(&client, &server)?;
            let answer = s.request("tools/list", json!({}))?;
            if let Some(e) = answer.get("error") {
                anyhow::bail!("{}", e.get("message").and_then(Value::as_str).unwrap_or(""));
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(answer.get("result").unwrap_or(&Value::Null))?
                );
                return Ok(ExitCode::SUCCESS);
            }
            for t in answer
                .pointer("/result/tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                println!(
                    "{}  {}",
                    t.get("name").and_then(Value::as_str).unwrap_or(""),
                    t.get("description").and_then(Value::as_str).unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        McpCommand::Call {
            client,
            server,
            tool,
            arguments,
            approval,
            json,
        } => {
            let args: Value = serde_json::from_str(&arguments)
                .map_err(|e| anyhow::anyhow!("the arguments are not JSON: {e}"))?;
            if !args.is_object() {
                anyhow::bail!(
                    "the arguments must be a JSON object, e.g. '{{\"query\": \"expenses\"}}'"
                );
            }
            let params = match approval {
                Some(t) => json!({"name": tool, "arguments": args, "_meta": {"ztai/approval": t}}),
                None => json!({"name": tool, "arguments": args}),
            };
            let mut s = Session::open(&client, &server)?;
            let answer = s.request("tools/call", params)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            }
            if let Some(e) = answer.get("error") {
                let code = e.get("code").and_then(Value::as_i64).unwrap_or(0);
                let message = e.get("message").and_then(Value::as_str).unwrap_or("");
                if !json {
                    eprintln!("{message}");
                }
                return Ok(ExitCode::from(match code {
                    -32003 => 3,
                    -32004 => 4,
                    _ => 1,
                }));
            }
            let result = answer.get("result").cloned().unwrap_or(Value::Null);
            if !json {
                for c in result
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(t) = c.get("text").and_then(Value::as_str) {
                        println!("{t}");
                    }
                }
            }
            Ok(if result.get("isError") == Some(&Value::Bool(true)) {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        other => run(other),
    }
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn run(cmd: McpCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        c @ (McpCommand::List { .. } | McpCommand::Call { .. }) => return client_command(c),
        McpCommand::Tools {
            admin,
            server,
            json,
        } => {
            let path = match &server {
                Some(s) => format!("/api/v1/mcp/tools?server={}", segment(s)?),
                None => "/api/v1/mcp/tools".into(),
            };
            let answer = admin.call("GET", &path, None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(ExitCode::SUCCESS);
            }
            for t in answer
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let s = |k: &str| t.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                println!(
                    "{}/{}  {}  {}…  {}",
                    s("server"),
                    s("tool"),
                    s("status"),
                    s("seen_digest").get(..12).unwrap_or(""),
                    s("reason")
                );
            }
        }
        McpCommand::Approve {
            admin,
            server,
            tool,
            digest,
        } => {
            let (server, tool) = (segment(&server)?, segment(&tool)?);
            let digest = match digest {
                Some(d) => d,
                None => {
                    let answer =
                        admin.call("GET", &format!("/api/v1/mcp/tools?server={server}"), None)?;
                    let row = answer
                        .get("tools")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .find(|t| t.get("tool").and_then(Value::as_str) == Some(tool))
                        .cloned()
                        .ok_or_else(|| {
                            anyhow::anyhow!("the gateway has not seen `{tool}` on `{server}`")
                        })?;
                    eprintln!(
                        "approving this definition of {server}/{tool}:\n{}",
                        serde_json::to_string_pretty(
                            row.get("definition").unwrap_or(&Value::Null)
                        )?
                    );
                    row.get("seen_digest")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                }
            };
            admin.call(
                "POST",
                &format!("/api/v1/mcp/tools/{server}/{tool}/approve"),
                Some(&json!({"digest": digest})),
            )?;
            println!("approved {server}/{tool} at {digest}");
        }
        McpCommand::Block {
            admin,
            server,
            tool,
            reason,
        } => {
            let (server, tool) = (segment(&server)?, segment(&tool)?);
            admin.call(
                "POST",
                &format!("/api/v1/mcp/tools/{server}/{tool}/block"),
                Some(&json!({"reason": reason})),
            )?;
            println!("blocked {server}/{tool}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_change_the_path_are_refused() {
        assert_eq!(segment("send_email").unwrap(), "send_email");
        for bad in ["", "..", "a/b", "a?b", "a b", "é"] {
            assert!(segment(bad).is_err(), "{bad:?}");
        }
    }
}
