//! `ztai agents`, `ztai token` and `ztai users`: agents as principals and their task tokens.
//!
//! Issuing and revoking go through the running gateway's admin API, which holds the token key,
//! applies the change at once and records it. Narrowing and inspecting are offline: a holder
//! narrows a token without asking anyone, and anyone can read what a token says without trusting
//! it.

use crate::admin_client::{AdminArgs, UserArgs};
use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::ExitCode;
use ztai_identity::task_token::{self, Narrowing, TaskTokenVerifier, rfc3339};
use ztai_store::prelude::*;

#[derive(Debug, Subcommand)]
pub enum AgentsCommand {
    /// Register an agent: who answers for it, what it is for, and the most it may ever use.
    Register {
        #[command(flatten)]
        admin: AdminArgs,
        /// The agent's id, e.g. `support-bot`.
        #[arg(long)]
        id: String,
        /// The person or team who answers for the agent.
        #[arg(long)]
        owner: String,
        /// What the agent is for, in a sentence.
        #[arg(long)]
        purpose: String,
        /// The ceiling, as comma-separated `kind:name` (`model:gpt-4o-mini,tool:orders.lookup`,
        /// `tool:*`); kinds are model, tool, document and destination.
        #[arg(long, value_delimiter = ',', required = true)]
        ceiling: Vec<String>,
        /// Groups policy evaluates the agent with (default `agents`).
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List registered agents.
    List {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an agent: every task token naming it stops working at once.
    Revoke {
        #[command(flatten)]
        admin: AdminArgs,
        id: String,
    },
}

/// What one task may reach and for how long: shared by `token issue` (an administrator mints
/// for a user) and `token delegate` (the user mints for themself).
#[derive(Debug, clap::Args)]
pub struct TaskScope {
    /// Models the task may use, comma-separated.
    #[arg(long, value_delimiter = ',')]
    models: Vec<String>,
    /// Tools the task may call, comma-separated.
    #[arg(long, value_delimiter = ',')]
    tools: Vec<String>,
    /// Other resources as `kind:name` (`document:handbook`, `destination:api.example.com`).
    #[arg(long, value_delimiter = ',')]
    resources: Vec<String>,
    /// How long the token lives, e.g. `15m` (at most `identity.tokens.max_ttl_secs`).
    #[arg(long, default_value = "15m")]
    ttl: humantime::Duration,
    /// What the task is, for the audit trail.
    #[arg(long)]
    task: Option<String>,
    /// Print the whole answer (token, revocation id, expiry) as JSON.
    #[arg(long)]
    json: bool,
}

impl TaskScope {
    /// The request body both token endpoints take.
    fn body(&self, agent: &str) -> Value {
        json!({"agent": agent, "models": self.models, "tools": self.tools,
               "resources": self.resources, "ttl_secs": self.ttl.as_secs(), "task": self.task})
    }
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Mint a task token for an agent acting for a user; prints the token on stdout.
    Issue {
        #[command(flatten)]
        admin: AdminArgs,
        /// The registered agent that will hold the token.
        #[arg(long)]
        agent: String,
        /// The user the agent acts for.
        #[arg(long)]
        on_behalf_of: String,
        /// The user's groups (default: those of the user's active API keys).
        #[arg(long, value_delimiter = ',')]
        user_groups: Option<Vec<String>>,
        #[command(flatten)]
        scope: TaskScope,
    },
    /// Hand a task to an agent yourself: mint a task token with your own credential (an API key
    /// or your identity provider's JWT), carrying your groups; prints the token on stdout.
    /// Policy decides whom you may delegate to (`Action::"delegate"`).
    Delegate {
        #[command(flatten)]
        user: UserArgs,
        /// The registered agent that will hold the token.
        #[arg(long)]
        agent: String,
        #[command(flatten)]
        scope: TaskScope,
    },
    /// Narrow a token offline before handing it to a sub-agent; prints the new token. Nothing
    /// can be widened: only names the token already grants can be kept.
    Attenuate {
        /// The token, or `-` to read it from stdin.
        token: String,
        /// The registered sub-agent that will hold the narrowed token.
        #[arg(long)]
        delegate_to: Option<String>,
        /// Keep only these models.
        #[arg(long, value_delimiter = ',')]
        models: Option<Vec<String>>,
        /// Keep only these tools (an empty value keeps none).
        #[arg(long, value_delimiter = ',')]
        tools: Option<Vec<String>>,
        /// Keep only these documents.
        #[arg(long, value_delimiter = ',')]
        documents: Option<Vec<String>>,
        /// Keep only these destinations.
        #[arg(long, value_delimiter = ',')]
        destinations: Option<Vec<String>>,
        /// A shorter life, e.g. `5m` (never past the token's own expiry).
        #[arg(long)]
        ttl: Option<humantime::Duration>,
    },
    /// Show a token's blocks, rights, expiry and revocation state without trusting it. With a
    /// data directory, also checks its signature and the revocation list.
    /// Exit 0: usable; 1: bad signature, expired or revoked; 2: unreadable.
    Inspect {
        /// The token, or `-` to read it from stdin.
        token: String,
        /// The gateway's store (for `task-token.pub` and the revocation list).
        #[command(flatten)]
        store: crate::store_args::StoreArgs,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by one of its revocation ids (see `inspect`): it and every token narrowed
    /// from it stop working at once.
    Revoke {
        #[command(flatten)]
        admin: AdminArgs,
        revocation_id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Revoke a user: their API keys, JWTs and every task token acting for them stop working.
    Revoke {
        #[command(flatten)]
        admin: AdminArgs,
        user: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
}

fn read_token(arg: &str) -> anyhow::Result<String> {
    if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .take(task_token::MAX_TOKEN_BYTES as u64 + 1)
            .read_to_string(&mut s)
            .context("cannot read the token from stdin")?;
        Ok(s.trim().to_string())
    } else {
        Ok(arg.trim().to_string())
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[allow(clippy::print_stdout)]
fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// Prints a minted token: the token alone on stdout (for `T=$(…)`), what it is on stderr.
#[allow(clippy::print_stdout)]
fn print_minted(answer: &Value, json: bool, what: &str) {
    if json {
        print_json(answer);
        return;
    }
    let text = |k: &str| answer.get(k).and_then(Value::as_str).unwrap_or("?");
    println!("{}", text("token"));
    let _ = writeln!(
        std::io::stderr(),
        "task token for {what}, expires {}; revocation id {}",
        text("expires_at"),
        text("revocation_id")
    );
}

#[allow(clippy::print_stdout)]
pub fn agents(cmd: AgentsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AgentsCommand::Register {
            admin,
            id,
            owner,
            purpose,
            ceiling,
            groups,
            json,
        } => {
            let groups = (!groups.is_empty()).then_some(groups);
            let body = json!({"agent_id": id, "owner": owner, "purpose": purpose, "ceiling": ceiling,
                              "groups": groups});
            let answer = admin.call("POST", "/api/v1/agents", Some(&body))?;
            if json {
                print_json(&answer);
            } else {
                println!(
                    "registered agent `{id}` (owner {owner}); ceiling: {}",
                    answer
                        .get("ceiling")
                        .and_then(Value::as_array)
                        .map(|a| a
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", "))
                        .unwrap_or_default()
                );
            }
        }
        AgentsCommand::List { admin, json } => {
            let answer = admin.call("GET", "/api/v1/agents", None)?;
            if json {
                print_json(&answer);
            } else {
                for a in answer
                    .get("agents")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let text = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    let list = |k: &str| {
                        a.get(k)
                            .and_then(Value::as_array)
                            .map(|v| {
                                v.iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                            .unwrap_or_default()
                    };
                    let state = match a.get("revoked_at").and_then(Value::as_str) {
                        Some(at) => format!("REVOKED {at}"),
                        None => "active".into(),
                    };
                    println!(
                        "{}\towner={}\tgroups={}\tceiling={}\t{}\t{}",
                        text("agent_id"),
                        text("owner"),
                        list("groups"),
                        list("ceiling"),
                        state,
                        text("purpose")
                    );
                }
            }
        }
        AgentsCommand::Revoke { admin, id } => {
            admin.call("DELETE", &format!("/api/v1/agents/{id}"), None)?;
            println!("agent `{id}` revoked; every task token naming it is refused from now on");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
pub fn token(cmd: TokenCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TokenCommand::Issue {
            admin,
            agent,
            on_behalf_of,
            user_groups,
            scope,
        } => {
            let json = scope.json;
            let mut body = scope.body(&agent);
            if let Some(fields) = body.as_object_mut() {
                fields.insert("on_behalf_of".into(), json!(on_behalf_of));
                fields.insert("user_groups".into(), json!(user_groups));
            }
            let answer = admin.call("POST", "/api/v1/tokens", Some(&body))?;
            print_minted(
                &answer,
                json,
                &format!("agent `{agent}` acting for user `{on_behalf_of}`"),
            );
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Delegate { user, agent, scope } => {
            let answer = user.call("POST", "/tokens", Some(&scope.body(&agent)))?;
            print_minted(
                &answer,
                scope.json,
                &format!("agent `{agent}` acting for you"),
            );
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Attenuate {
            token,
            delegate_to,
            models,
            tools,
            documents,
            destinations,
            ttl,
        } => {
            let token = read_token(&token)?;
            let now = unix_now();
            let mut only = BTreeMap::new();
            for (kind, names) in [
                ("model", models),
                ("tool", tools),
                ("document", documents),
                ("destination", destinations),
            ] {
                if let Some(names) = names {
                    let names: Vec<String> = names.into_iter().filter(|n| !n.is_empty()).collect();
                    only.insert(kind.to_string(), names);
                }
            }
            let narrowing = Narrowing {
                delegate_to,
                only,
                expires_at: ttl.map(|t| now + t.as_secs()),
            };
            let narrowed = task_token::attenuate(&token, &narrowing, now)?;
            println!("{narrowed}");
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Inspect { token, store, json } => {
            inspect(&read_token(&token)?, &store.data_dir()?, json)
        }
        TokenCommand::Revoke {
            admin,
            revocation_id,
            reason,
        } => {
            admin.call(
                "POST",
                "/api/v1/revocations",
                Some(&json!({"kind": "token", "subject": revocation_id, "reason": reason})),
            )?;
            println!("token revoked; it and every token narrowed from it are refused from now on");
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[allow(clippy::print_stdout)]
pub fn users(cmd: UsersCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        UsersCommand::Revoke {
            admin,
            user,
            reason,
        } => {
            admin.call(
                "POST",
                "/api/v1/revocations",
                Some(&json!({"kind": "user", "subject": user, "reason": reason})),
            )?;
            println!(
                "user `{user}` revoked: their API keys, JWTs and task tokens are refused from now on"
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// What the data directory says about a token: its signature, and whether it was revoked.
struct Standing {
    signature: &'static str,
    revoked: Vec<String>,
}

fn standing(token: &str, report: &task_token::TokenReport, data_dir: &std::path::Path) -> Standing {
    let key = std::fs::read_to_string(ztai_gateway::delegation::token_public_key_path(data_dir));
    let signature = match key
        .ok()
        .and_then(|k| TaskTokenVerifier::from_public_key_hex(&k).ok())
    {
        None => "not checked (no task-token.pub in the data directory)",
        Some(v) => match v.verify(token) {
            Ok(_) => "valid",
            Err(_) => "INVALID: not minted by this gateway, or altered",
        },
    };
    let mut revoked = Vec::new();
    let db = data_dir.join("ztai.db");
    if db.is_file()
        && let Ok(store) = ztai_store::Sqlite::open(&db)
    {
        for r in store.revocations_after(0).unwrap_or_default() {
            let hit = match r.kind.as_str() {
                "token" => report.blocks.iter().any(|b| b.revocation_id == r.subject),
                "user" => report.user.as_deref() == Some(r.subject.as_str()),
                _ => false,
            };
            if hit {
                revoked.push(format!(
                    "{} `{}` revoked at {} by {}",
                    r.kind,
                    r.subject.get(..16).unwrap_or(&r.subject),
                    r.revoked_at,
                    r.revoked_by
                ));
            }
        }
        for a in store.list_agents().unwrap_or_default() {
            let in_chain = report.agent.as_deref() == Some(a.agent_id.as_str())
                || report.delegates.contains(&a.agent_id);
            if in_chain && let Some(at) = &a.revoked_at {
                revoked.push(format!("agent `{}` revoked at {at}", a.agent_id));
            }
        }
    }
    Standing { signature, revoked }
}

#[allow(clippy::print_stdout)]
fn inspect(token: &str, data_dir: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let report = match task_token::inspect(token) {
        Ok(r) => r,
        Err(e) => {
            let mut err = std::io::stderr();
            let _ = writeln!(err, "ztai: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let st = standing(token, &report, data_dir);
    let now = unix_now();
    let expired = report.expires_at.is_none_or(|e| now > e);
    let usable = !st.signature.starts_with("INVALID") && st.revoked.is_empty() && !expired;
    let rights = |r: &[task_token::Right]| {
        r.iter()
            .map(|r| format!("{}:{}", r.kind, r.name))
            .collect::<Vec<_>>()
    };
    if json {
        print_json(&json!({
            "agent": report.agent, "user": report.user, "user_groups": report.user_groups,
            "task": report.task, "expires_at": report.expires_at.map(rfc3339), "expired": expired,
            "delegates": report.delegates, "rights": rights(&report.rights),
            "effective_rights": rights(&report.effective_rights),
            "signature": st.signature, "revoked": st.revoked, "usable": usable,
            "blocks": report.blocks.iter().map(|b| json!({"index": b.index,
                "revocation_id": b.revocation_id, "delegate": b.delegate,
                "expires_at": b.expires_at.map(rfc3339), "source": b.source})).collect::<Vec<_>>(),
        }));
    } else {
        let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        println!("task token (read without trusting it)");
        println!("  signature     {}", st.signature);
        println!("  agent         {}", or_none(&report.agent));
        println!(
            "  on behalf of  user:{} (groups: {})",
            or_none(&report.user),
            report.user_groups.join(", ")
        );
        println!("  task          {}", or_none(&report.task));
        println!(
            "  expires       {}{}",
            report
                .expires_at
                .map(rfc3339)
                .unwrap_or_else(|| "(never stated)".into()),
            if expired { "  EXPIRED" } else { "" }
        );
        println!(
            "  delegates     {}",
            if report.delegates.is_empty() {
                "(none)".to_string()
            } else {
                report.delegates.join(" -> ")
            }
        );
        println!("  rights        {}", rights(&report.rights).join(", "));
        println!(
            "  effective     {}",
            rights(&report.effective_rights).join(", ")
        );
        println!(
            "  revocation    {}",
            if st.revoked.is_empty() {
                "not revoked".to_string()
            } else {
                st.revoked.join("; ")
            }
        );
        for b in &report.blocks {
            println!("  block {} (revocation id {})", b.index, b.revocation_id);
            for line in b.source.lines() {
                println!("      {line}");
            }
        }
    }
    Ok(if usable {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
