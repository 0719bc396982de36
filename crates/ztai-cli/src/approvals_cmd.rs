//! `ztai approvals list|show|approve|deny`: decide requests held for human approval, through the
//! running gateway's admin API with the approver's own credential (`--admin-token` or
//! `ZTAI_ADMIN_TOKEN`). The gateway checks that policy lets that credential decide the ticket
//! and that it is not the requester's, signs the decision and records it.

use crate::admin_client::AdminArgs;
use clap::Subcommand;
use serde_json::{Value, json};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// List the pending requests you may decide (with --all, decided and expired ones too).
    List {
        #[command(flatten)]
        admin: AdminArgs,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show one ticket, with its decision signature and the key that verifies it.
    Show {
        #[command(flatten)]
        admin: AdminArgs,
        /// The ticket id (`apr_…`).
        id: String,
    },
    /// Approve a held request: its caller may then send it (once).
    Approve {
        #[command(flatten)]
        admin: AdminArgs,
        id: String,
        /// Why; recorded and signed with the decision.
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Deny a held request.
    Deny {
        #[command(flatten)]
        admin: AdminArgs,
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long)]
        json: bool,
    },
}

fn field<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

/// Ticket ids are `apr_` and hex; anything else is refused before it reaches a URL path.
fn checked_id(id: &str) -> anyhow::Result<&str> {
    let ok = id.strip_prefix("apr_").is_some_and(|h| {
        !h.is_empty() && h.len() <= 64 && h.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if ok {
        Ok(id)
    } else {
        anyhow::bail!("`{id}` is not an approval ticket id (they look like apr_0123abcd…)")
    }
}

#[allow(clippy::print_stdout)]
pub fn run(cmd: ApprovalsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ApprovalsCommand::List { admin, all, json } => {
            let path = if all {
                "/api/v1/approvals?all=true"
            } else {
                "/api/v1/approvals"
            };
            let answer = admin.call("GET", path, None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(ExitCode::SUCCESS);
            }
            let items = answer
                .get("approvals")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if items.is_empty() {
                println!("no approvals waiting for you");
            }
            for a in &items {
                println!(
                    "{}  {:8}  {} wants {} on {} (for {}; expires {})",
                    field(a, "id"),
                    field(a, "status"),
                    field(a, "requester"),
                    field(a, "action"),
                    field(a, "resource"),
                    field(a, "approver_group"),
                    field(a, "expires_at"),
                );
            }
        }
        ApprovalsCommand::Show { admin, id } => {
            let answer = admin.call(
                "GET",
                &format!("/api/v1/approvals/{}", checked_id(&id)?),
                None,
            )?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        ApprovalsCommand::Approve {
            admin,
            id,
            reason,
            json,
        } => decide(&admin, &id, &reason, json, true)?,
        ApprovalsCommand::Deny {
            admin,
            id,
            reason,
            json,
        } => decide(&admin, &id, &reason, json, false)?,
    }
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
fn decide(
    admin: &AdminArgs,
    id: &str,
    reason: &str,
    json: bool,
    approve: bool,
) -> anyhow::Result<()> {
    let verb = if approve { "approve" } else { "deny" };
    let answer = admin.call(
        "POST",
        &format!("/api/v1/approvals/{}/{verb}", checked_id(id)?),
        Some(&json!({ "reason": reason })),
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!(
            "{} {} (signed by the gateway; verify with `ztai approvals show {id}`)",
            field(&answer, "status"),
            field(&answer, "id")
        );
    }
    Ok(())
}
