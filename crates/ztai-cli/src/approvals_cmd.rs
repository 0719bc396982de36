//! `ztai approvals …`: decide requests held for human approval, and manage the keys approvers
//! sign their decisions with.
//!
//! Deciding goes through the running gateway's admin API with the approver's own credential
//! (`--admin-token` or `ZTAI_ADMIN_TOKEN`), and is signed here, on the approver's machine, with
//! the approver's key (`--key` or `ZTAI_APPROVER_KEY`): the command fetches the ticket, builds
//! the decision statement, signs it and sends the signed note. The gateway checks that policy
//! lets that credential decide the ticket, that it is not the requester's, and that the
//! signature verifies with a key registered for the same approver; it countersigns and records.

use crate::admin_client::AdminArgs;
use crate::approver_key;
use clap::Subcommand;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use ztai_core::DecisionStatement;

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
        decision: DecisionArgs,
    },
    /// Deny a held request.
    Deny {
        #[command(flatten)]
        decision: DecisionArgs,
    },
    /// Make a signing key for an approver (offline). Writes the key (mode 0600) and its
    /// verifier key beside it (`FILE.pub`); an administrator registers the latter.
    Keygen {
        /// Whom the key signs as: `user:<id>` or `service:<id>`, as the gateway knows you.
        #[arg(long)]
        principal: String,
        /// Where to write the key; never overwritten.
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Register an approver's verifier key (administrators).
    RegisterKey {
        #[command(flatten)]
        admin: AdminArgs,
        /// The verifier key (`user:<id>+<keyid>+<key>`), or the `.pub` file holding it.
        verifier_key: String,
        #[arg(long, default_value = "")]
        label: String,
        #[arg(long)]
        json: bool,
    },
    /// List registered approver keys (administrators).
    Keys {
        #[command(flatten)]
        admin: AdminArgs,
        /// Only this approver's keys (`user:<id>`).
        #[arg(long)]
        principal: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an approver key at once (administrators): its later signatures are refused.
    RevokeKey {
        #[command(flatten)]
        admin: AdminArgs,
        /// The key id (`user:<id>+<keyid>`, as `keys` lists it).
        key_id: String,
    },
}

/// What deciding one ticket needs.
#[derive(Debug, clap::Args)]
pub struct DecisionArgs {
    #[command(flatten)]
    admin: AdminArgs,
    /// The ticket id (`apr_…`).
    id: String,
    /// Why; recorded and signed with the decision.
    #[arg(long, default_value = "")]
    reason: String,
    /// Your approver key (from `ztai approvals keygen`). Without it the decision is sent
    /// unsigned, which a gateway requiring signed decisions refuses.
    #[arg(long, env = "ZTAI_APPROVER_KEY")]
    key: Option<PathBuf>,
    #[arg(long)]
    json: bool,
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
        ApprovalsCommand::Approve { decision } => decide(&decision, true)?,
        ApprovalsCommand::Deny { decision } => decide(&decision, false)?,
        ApprovalsCommand::Keygen {
            principal,
            out,
            json,
        } => keygen(&principal, &out, json)?,
        ApprovalsCommand::RegisterKey {
            admin,
            verifier_key,
            label,
            json,
        } => register_key(&admin, &verifier_key, &label, json)?,
        ApprovalsCommand::Keys {
            admin,
            principal,
            json,
        } => list_keys(&admin, principal.as_deref(), json)?,
        ApprovalsCommand::RevokeKey { admin, key_id } => {
            let answer = admin.call(
                "DELETE",
                &format!("/api/v1/approver-keys/{}", checked_key_id(&key_id)?),
                None,
            )?;
            println!("revoked {}", field(&answer, "key_id"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Approver key ids are `kind:id+8 hex digits`; anything else is refused before it reaches a
/// URL path.
fn checked_key_id(id: &str) -> anyhow::Result<&str> {
    let ok = id.split_once('+').is_some_and(|(name, hex)| {
        name.split_once(':').is_some_and(|(kind, who)| {
            !kind.is_empty()
                && kind.bytes().all(|b| b.is_ascii_lowercase())
                && !who.is_empty()
                && who.len() <= 128
                && who
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
        }) && hex.len() == 8
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if ok {
        Ok(id)
    } else {
        anyhow::bail!(
            "`{id}` is not an approver key id (they look like user:carol+0a1b2c3d; see `ztai approvals keys`)"
        )
    }
}

#[allow(clippy::print_stdout)]
fn keygen(principal: &str, out: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let valid = principal.split_once(':').is_some_and(|(kind, id)| {
        matches!(kind, "user" | "service")
            && !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
    });
    if !valid {
        anyhow::bail!(
            "`{principal}` is not an approver: use `user:<id>` or `service:<id>` exactly as the gateway names you (`ztai approvals list` shows requesters the same way)"
        );
    }
    let key = approver_key::generate(principal, out)?;
    let public = approver_key::public_path(out);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "principal": key.name,
                "key_id": key.signer.key_ref(),
                "verifier_key": key.signer.verifier_key(),
                "key_file": out.display().to_string(),
                "verifier_key_file": public.display().to_string(),
            }))?
        );
    } else {
        println!(
            "wrote {} (keep it secret) and {}

verifier key: {}

An administrator registers it with:
  ztai approvals register-key {}
then decide with:
  ztai approvals approve <ticket> --key {}",
            out.display(),
            public.display(),
            key.signer.verifier_key(),
            key.signer.verifier_key(),
            out.display()
        );
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn register_key(admin: &AdminArgs, arg: &str, label: &str, json: bool) -> anyhow::Result<()> {
    let path = std::path::Path::new(arg);
    let verifier_key = if path.is_file() {
        let meta = std::fs::metadata(path)?;
        if meta.len() > 4096 {
            anyhow::bail!("`{arg}` is too big to be a verifier key file");
        }
        std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read `{arg}`: {e}"))?
            .trim()
            .to_string()
    } else {
        arg.trim().to_string()
    };
    let answer = admin.call(
        "POST",
        "/api/v1/approver-keys",
        Some(&json!({ "verifier_key": verifier_key, "label": label })),
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!(
            "registered {} for {}",
            field(&answer, "key_id"),
            field(&answer, "principal")
        );
    }
    Ok(())
}

#[allow(clippy::print_stdout)]
fn list_keys(admin: &AdminArgs, principal: Option<&str>, json: bool) -> anyhow::Result<()> {
    let path = match principal {
        Some(p) => {
            if !p
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b))
            {
                anyhow::bail!("`{p}` is not a principal like user:carol");
            }
            format!("/api/v1/approver-keys?principal={p}")
        }
        None => "/api/v1/approver-keys".to_string(),
    };
    let answer = admin.call("GET", &path, None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let keys = answer
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if keys.is_empty() {
        println!("no approver keys registered");
    }
    for k in &keys {
        let state = match k.get("revoked_at").and_then(Value::as_str) {
            Some(at) => format!("revoked {at}"),
            None => "active".to_string(),
        };
        println!(
            "{}  {}  {}  (registered {} by {})",
            field(k, "key_id"),
            state,
            field(k, "label"),
            field(k, "created_at"),
            field(k, "created_by")
        );
    }
    Ok(())
}

/// Signs the decision on the ticket as the key's approver: the statement is built from the
/// ticket as the gateway shows it, so a ticket changed underneath makes the gateway refuse it.
fn signed_decision(
    d: &DecisionArgs,
    key: &std::path::Path,
    approve: bool,
) -> anyhow::Result<Value> {
    let key = approver_key::load(key)?;
    let id = checked_id(&d.id)?;
    let ticket = d
        .admin
        .call("GET", &format!("/api/v1/approvals/{id}"), None)?;
    let status = field(&ticket, "status");
    if status != "pending" {
        anyhow::bail!("approval `{id}` is {status}; only a pending request can be decided");
    }
    let decided_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| i64::try_from(t.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let reason = ztai_core::approval::one_line(&d.reason);
    let statement = DecisionStatement {
        approval_id: id,
        approved: approve,
        approver: &key.name,
        requester: field(&ticket, "requester"),
        resource: field(&ticket, "resource"),
        request_digest: field(&ticket, "request_digest"),
        decided_at,
        reason: &reason,
    };
    let note = key.signer.sign_note(&statement.text());
    Ok(json!({ "reason": reason, "decided_at": decided_at, "signed_note": note }))
}

#[allow(clippy::print_stdout)]
fn decide(d: &DecisionArgs, approve: bool) -> anyhow::Result<()> {
    let verb = if approve { "approve" } else { "deny" };
    let id = checked_id(&d.id)?;
    let body = match &d.key {
        Some(key) => signed_decision(d, key, approve)?,
        None => json!({ "reason": d.reason }),
    };
    let answer = d.admin.call(
        "POST",
        &format!("/api/v1/approvals/{id}/{verb}"),
        Some(&body),
    )?;
    if d.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        let by = match answer.get("approver_key").and_then(Value::as_str) {
            Some(key) => format!("signed with {key}, countersigned by the gateway"),
            None => "signed by the gateway alone".to_string(),
        };
        println!(
            "{} {} ({by}; see `ztai approvals show {id}`)",
            field(&answer, "status"),
            field(&answer, "id")
        );
    }
    Ok(())
}
