//! `[mcp]` and `[[mcp.servers]]`: the MCP servers the gateway fronts, and how it treats them.
//!
//! Parsed apart from the rest of `ztai.toml` so everything the MCP proxy reads is in one place;
//! the rules are strict because a loose one here is a hole: server names become URL path
//! segments and Cedar ids, a stdio server gets only the environment written here (never the
//! gateway's own, which holds upstream keys), and an HTTP server is reached only over TLS unless
//! it is on loopback.

use crate::config::ConfigError;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use ztai_core::FindingCategory;

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMcp {
    session_key_env: Option<String>,
    session_ttl_secs: Option<u64>,
    tool_approval: Option<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    servers: Vec<RawMcpServer>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMcpServer {
    name: Option<String>,
    url: Option<String>,
    api_key_env: Option<String>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    timeout_ms: Option<u64>,
    untrusted: Option<bool>,
    #[serde(default)]
    taint: Vec<String>,
    result_block: Option<Vec<String>>,
    result_redact: Option<Vec<String>>,
    calls_per_minute: Option<u32>,
    #[serde(default)]
    tools: BTreeMap<String, RawMcpTool>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMcpTool {
    calls_per_minute: Option<u32>,
    #[serde(default)]
    taint: Vec<String>,
}

/// How a tool the gateway has not seen before is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolApproval {
    /// A new tool whose definition scans clean is pinned at first sight; one with findings is
    /// blocked until an administrator approves it.
    FirstSight,
    /// Every new tool waits for an administrator.
    Admin,
}

/// How the gateway reaches a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpTransport {
    /// Streamable HTTP at this URL; `auth` is the Bearer credential the gateway presents (its
    /// own, from the environment — never the caller's).
    Http {
        url: http::Uri,
        auth_env: Option<String>,
    },
    /// A program the gateway starts and speaks to over stdin/stdout.
    Stdio {
        command: PathBuf,
        args: Vec<String>,
        env: BTreeMap<String, String>,
    },
}

/// Per-tool settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct McpToolSettings {
    pub calls_per_minute: Option<u32>,
    pub taint: BTreeSet<String>,
}

/// One fronted server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpServerConfig {
    pub name: String,
    pub transport: McpTransport,
    pub timeout: Duration,
    /// Whether what the server returns is untrusted content (taints the session with
    /// `untrusted_content`). True unless configured otherwise.
    pub untrusted: bool,
    /// Labels every result from this server adds to the session.
    pub taint: BTreeSet<String>,
    /// Finding categories in a result that withhold it from the agent.
    pub result_block: Vec<FindingCategory>,
    /// Finding categories in a result that are masked before it reaches the agent.
    pub result_redact: Vec<FindingCategory>,
    /// Calls per minute per principal and tool, unless the tool says otherwise.
    pub calls_per_minute: u32,
    pub tools: BTreeMap<String, McpToolSettings>,
}

/// `[mcp]` as validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpConfig {
    /// The environment variable holding the session key (64 hex characters); replicas behind
    /// one load balancer share it. Without it the key lives in the data directory.
    pub session_key_env: Option<String>,
    pub session_ttl: Duration,
    pub tool_approval: ToolApproval,
    /// Browser origins allowed to call `/mcp/…` (requests without `Origin` are not browsers).
    pub allowed_origins: BTreeSet<String>,
    pub servers: Vec<McpServerConfig>,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            session_key_env: None,
            session_ttl: Duration::from_secs(3600),
            tool_approval: ToolApproval::FirstSight,
            allowed_origins: BTreeSet::new(),
            servers: Vec::new(),
        }
    }
}

/// Server names are path segments and the first half of Cedar tool ids (`Tool::"files/read"`).
fn valid_server_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Tool names as the MCP specification recommends them (and the second half of Cedar ids).
pub(crate) fn valid_tool_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
}

fn labels(key: &str, raw: &[String]) -> Result<BTreeSet<String>, ConfigError> {
    raw.iter()
        .map(|l| {
            if !l.is_empty()
                && l.len() <= 64
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                Ok(l.clone())
            } else {
                Err(err(
                    key,
                    format!("taint label `{l}` must be 1 to 64 letters, digits, `_` or `-`"),
                ))
            }
        })
        .collect()
}

fn env_name(key: &str, v: &str) -> Result<String, ConfigError> {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(v.to_string())
    } else {
        Err(err(
            key,
            format!("`{v}` is not an environment variable name"),
        ))
    }
}

impl RawMcp {
    pub(crate) fn validate(
        self,
        base: &Path,
        categories: impl Fn(&str, &[String]) -> Result<Vec<FindingCategory>, ConfigError>,
    ) -> Result<McpConfig, ConfigError> {
        let mut out = McpConfig {
            session_key_env: self
                .session_key_env
                .map(|v| env_name("mcp.session_key_env", &v))
                .transpose()?,
            ..McpConfig::default()
        };
        if let Some(secs) = self.session_ttl_secs {
            if !(60..=7 * 86_400).contains(&secs) {
                return Err(err(
                    "mcp.session_ttl_secs",
                    "must be between 60 and 604800 (a week)",
                ));
            }
            out.session_ttl = Duration::from_secs(secs);
        }
        out.tool_approval = match self.tool_approval.as_deref() {
            None | Some("first-sight") => ToolApproval::FirstSight,
            Some("admin") => ToolApproval::Admin,
            Some(other) => {
                return Err(err(
                    "mcp.tool_approval",
                    format!("`{other}` is not a mode; use \"first-sight\" or \"admin\""),
                ));
            }
        };
        for o in self.allowed_origins {
            let uri: http::Uri = o.parse().map_err(|e| {
                err(
                    "mcp.allowed_origins",
                    format!("`{o}` is not an origin: {e}"),
                )
            })?;
            if uri.scheme().is_none()
                || uri.host().is_none()
                || uri.path() != "/"
                || o.ends_with('/')
            {
                return Err(err(
                    "mcp.allowed_origins",
                    format!("`{o}` is not an origin: write scheme://host[:port], nothing after"),
                ));
            }
            out.allowed_origins.insert(o);
        }
        let mut names = BTreeSet::new();
        for (i, s) in self.servers.into_iter().enumerate() {
            let k = |f: &str| format!("mcp.servers[{i}].{f}");
            let name = s.name.ok_or_else(|| err(k("name"), "is required"))?;
            if !valid_server_name(&name) {
                return Err(err(
                    k("name"),
                    format!("`{name}` must be 1 to 64 lowercase letters, digits, `-` or `_`"),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(err(k("name"), format!("server `{name}` is defined twice")));
            }
            let transport = match (s.url, s.command) {
                (Some(url), None) => {
                    if !s.args.is_empty() || !s.env.is_empty() {
                        return Err(err(
                            k("args"),
                            "`args` and `env` are for stdio servers (`command`), not `url`",
                        ));
                    }
                    McpTransport::Http {
                        url: crate::config::https_or_loopback(
                            &k("url"),
                            &url,
                            "tool calls and their results cross it",
                        )?,
                        auth_env: s
                            .api_key_env
                            .map(|v| env_name(&k("api_key_env"), &v))
                            .transpose()?,
                    }
                }
                (None, Some(command)) => {
                    if s.api_key_env.is_some() {
                        return Err(err(
                            k("api_key_env"),
                            "is for HTTP servers; give a stdio server its secrets in `env`",
                        ));
                    }
                    if command.is_empty() {
                        return Err(err(k("command"), "must name a program"));
                    }
                    let path = PathBuf::from(&command);
                    let command = if path.components().count() > 1 && path.is_relative() {
                        base.join(path)
                    } else {
                        path
                    };
                    for key in s.env.keys() {
                        env_name(&k("env"), key)?;
                    }
                    McpTransport::Stdio {
                        command,
                        args: s.args,
                        env: s.env,
                    }
                }
                (Some(_), Some(_)) => {
                    return Err(err(
                        k("url"),
                        "give either `url` (an HTTP server) or `command` (a stdio server), not both",
                    ));
                }
                (None, None) => {
                    return Err(err(
                        k("url"),
                        "give `url` (an HTTP server) or `command` (a stdio server the gateway starts)",
                    ));
                }
            };
            let timeout = Duration::from_millis(s.timeout_ms.unwrap_or(30_000));
            if timeout.is_zero() || timeout > Duration::from_secs(600) {
                return Err(err(k("timeout_ms"), "must be between 1 and 600000"));
            }
            if s.calls_per_minute == Some(0) {
                return Err(err(k("calls_per_minute"), "must be at least 1"));
            }
            let mut tools = BTreeMap::new();
            for (tool, t) in s.tools {
                if !valid_tool_name(&tool) {
                    return Err(err(
                        k("tools"),
                        format!("`{tool}` is not a tool name (letters, digits, `_`, `-`, `.`)"),
                    ));
                }
                if t.calls_per_minute == Some(0) {
                    return Err(err(
                        k(&format!("tools.{tool}.calls_per_minute")),
                        "must be at least 1",
                    ));
                }
                tools.insert(
                    tool.clone(),
                    McpToolSettings {
                        calls_per_minute: t.calls_per_minute,
                        taint: labels(&k(&format!("tools.{tool}.taint")), &t.taint)?,
                    },
                );
            }
            out.servers.push(McpServerConfig {
                name,
                transport,
                timeout,
                untrusted: s.untrusted.unwrap_or(true),
                taint: labels(&k("taint"), &s.taint)?,
                result_block: categories(
                    &k("result_block"),
                    &s.result_block
                        .unwrap_or_else(|| vec!["prompt_injection".into()]),
                )?,
                result_redact: categories(
                    &k("result_redact"),
                    &s.result_redact.unwrap_or_else(|| vec!["secret".into()]),
                )?,
                calls_per_minute: s.calls_per_minute.unwrap_or(120),
                tools,
            });
        }
        Ok(out)
    }
}

impl McpServerConfig {
    /// The per-minute rate and the taint labels for one of this server's tools.
    pub fn tool(&self, tool: &str) -> (u32, BTreeSet<String>) {
        let t = self.tools.get(tool);
        let rate = t
            .and_then(|t| t.calls_per_minute)
            .unwrap_or(self.calls_per_minute);
        let mut taint = self.taint.clone();
        if let Some(t) = t {
            taint.extend(t.taint.iter().cloned());
        }
        (rate, taint)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn parse(mcp: &str) -> Result<Config, crate::config::ConfigError> {
        let text = format!(
            r#"
[[upstreams]]
name = "u"
base_url = "http://127.0.0.1:9/v1"
[[models]]
name = "m"
upstream = "u"
{mcp}
"#
        );
        Config::parse(&text, std::path::Path::new("/etc/ztai"))
    }

    #[test]
    fn servers_are_checked_field_by_field() {
        let ok = parse(
            r#"
[mcp]
tool_approval = "admin"
[[mcp.servers]]
name = "files"
command = "bin/files-mcp"
env = { TOKEN = "x" }
[mcp.servers.tools."read.file"]
calls_per_minute = 2
taint = ["web"]
[[mcp.servers]]
name = "crm"
url = "https://crm.example/mcp"
"#,
        )
        .unwrap();
        let m = &ok.mcp;
        assert_eq!(m.tool_approval, super::ToolApproval::Admin);
        assert_eq!(m.servers.len(), 2);
        // A relative program path is relative to the configuration file.
        assert!(
            matches!(&m.servers[0].transport, super::McpTransport::Stdio { command, .. }
            if command == std::path::Path::new("/etc/ztai/bin/files-mcp"))
        );
        assert_eq!(m.servers[0].tool("read.file").0, 2);
        assert_eq!(m.servers[0].tool("other").0, 120);
        assert!(m.servers[0].tool("read.file").1.contains("web"));
        assert!(
            m.servers[1].untrusted,
            "servers are untrusted unless configured otherwise"
        );

        for (bad, key) in [
            (
                "[[mcp.servers]]\nname = \"Files\"\ncommand = \"x\"",
                "mcp.servers[0].name",
            ),
            ("[[mcp.servers]]\nname = \"a\"", "mcp.servers[0].url"),
            (
                "[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\nurl = \"https://a.example/\"",
                "mcp.servers[0].url",
            ),
            (
                "[[mcp.servers]]\nname = \"a\"\nurl = \"http://crm.example/mcp\"",
                "mcp.servers[0].url",
            ),
            (
                "[[mcp.servers]]\nname = \"a\"\nurl = \"https://a.example/\"\nargs = [\"x\"]",
                "mcp.servers[0].args",
            ),
            (
                "[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\nenv = { \"A-B\" = \"x\" }",
                "mcp.servers[0].env",
            ),
            (
                "[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\n[[mcp.servers]]\nname = \"a\"\ncommand = \"y\"",
                "mcp.servers[1].name",
            ),
            (
                "[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\ntaint = [\"has space\"]",
                "mcp.servers[0].taint",
            ),
            (
                "[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\nresult_block = [\"nope\"]",
                "mcp.servers[0].result_block",
            ),
            (
                "[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\n[mcp.servers.tools.\"a/b\"]",
                "mcp.servers[0].tools",
            ),
            ("[mcp]\ntool_approval = \"never\"", "mcp.tool_approval"),
            ("[mcp]\nsession_ttl_secs = 5", "mcp.session_ttl_secs"),
            (
                "[mcp]\nallowed_origins = [\"https://a.example/path\"]",
                "mcp.allowed_origins",
            ),
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.key, key, "{bad}: {}", e.message);
        }
    }
}
