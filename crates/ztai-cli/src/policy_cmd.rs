//! `ztai policy …`: validate a policy directory, run declarative policy tests, explain a decision,
//! print the schema. Offline tools: they read policy files and never need a running gateway.
//!
//! Exit codes: 0 success (valid / all tests pass / explained), 1 the policies are invalid or a test
//! failed, 2 the command could not run (unreadable file, malformed test file or question).

use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use ztai_policy::{
    ContextSpec, Explanation, PolicyEngine, PolicyError, PolicyOutcome, PolicyQuestion,
    PolicyTestFile,
};

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and validate every .cedar file in a directory against the ZTAI schema.
    Validate {
        /// Directory holding .cedar files.
        dir: PathBuf,
    },
    /// Run declarative test cases (TOML `[[test]]` tables) against a policy directory.
    ///
    /// Each case names a principal, action, resource and context and the decision it must get;
    /// optionally the exact determining policies, obligations and a reason fragment.
    Test {
        /// Directory holding .cedar files.
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        /// Test files (TOML).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print results as JSON (one object with every case and its explanation).
        #[arg(long)]
        json: bool,
    },
    /// Explain one decision: which policies determined it and why each other policy did not.
    Explain {
        /// Directory holding .cedar files.
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        #[command(flatten)]
        question: QuestionArgs,
        /// Also list the policies whose scope does not match.
        #[arg(long)]
        all: bool,
        /// Print the explanation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the Cedar schema policies are validated against.
    Schema,
    /// The running gateway's policy set versions: who made each live, when, and which files
    /// changed.
    History {
        #[command(flatten)]
        admin: crate::admin_client::AdminArgs,
        /// How many versions, newest first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct QuestionArgs {
    /// The principal as kind:id, e.g. `user:alice`, `agent:support-bot`.
    #[arg(long)]
    principal: String,
    /// The principal's groups, comma-separated.
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// Who the principal acts for, outermost first, e.g. `user:alice`.
    #[arg(long, value_delimiter = ',')]
    on_behalf_of: Vec<String>,
    /// A Cedar action id: invoke, list_model, call_tool, read_document, egress, delegate, approve,
    /// admin, reveal.
    #[arg(long)]
    action: String,
    /// The resource as kind:id, e.g. `model:echo-small`, `tool:orders.lookup`.
    #[arg(long)]
    resource: String,
    /// The resource's groups (model groups of a model), comma-separated.
    #[arg(long, value_delimiter = ',')]
    resource_parents: Vec<String>,
    /// Context facts as a JSON object, e.g. '{"risk_score": 40, "arguments": {"customer_id": "c-7"}}'.
    #[arg(long)]
    context: Option<String>,
}

#[allow(clippy::print_stdout)]
pub fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::History { admin, limit, json } => {
            let answer = admin.call(
                "GET",
                &format!("/api/v1/policies/versions?limit={limit}"),
                None,
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(ExitCode::SUCCESS);
            }
            let versions = answer
                .get("versions")
                .and_then(serde_json::Value::as_array)
                .cloned()
                .unwrap_or_default();
            for v in &versions {
                let list = |k: &str| {
                    v.pointer(&format!("/changes/{k}"))
                        .and_then(serde_json::Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(serde_json::Value::as_str)
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default()
                };
                let mut what = Vec::new();
                for (label, k) in [("+", "added"), ("-", "removed"), ("~", "modified")] {
                    let l = list(k);
                    if !l.is_empty() {
                        what.push(format!("{label}{l}"));
                    }
                }
                println!(
                    "v{}  {}  by {}  {}  {}",
                    v.get("version")
                        .and_then(serde_json::Value::as_i64)
                        .unwrap_or(0),
                    v.get("created_at")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or(""),
                    v.get("author")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or(""),
                    v.get("digest")
                        .and_then(serde_json::Value::as_str)
                        .and_then(|d| d.get(..12))
                        .unwrap_or(""),
                    what.join("  ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Schema => {
            print!("{}", ztai_policy::SCHEMA_TEXT);
            Ok(ExitCode::SUCCESS)
        }
        PolicyCommand::Validate { dir } => match load(&dir)? {
            Ok(engine) => {
                println!(
                    "ok: {} policies in {} file(s) are valid (digest {})",
                    engine.policy_count(),
                    engine.sources().len(),
                    engine.digest()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(code) => Ok(code),
        },
        PolicyCommand::Test {
            policies,
            files,
            json,
        } => {
            let engine = match load(&policies)? {
                Ok(e) => e,
                Err(code) => return Ok(code),
            };
            let mut all = Vec::new();
            for file in &files {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read test file `{}`", file.display()))?;
                let parsed: PolicyTestFile = toml::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("test file `{}` is malformed: {e}", file.display())
                })?;
                if parsed.tests.is_empty() {
                    anyhow::bail!(
                        "test file `{}` has no [[test]] cases; an empty file would pass without testing anything",
                        file.display()
                    );
                }
                for r in ztai_policy::run_tests(&engine, &parsed) {
                    all.push((file.display().to_string(), r));
                }
            }
            let failed = all.iter().filter(|(_, r)| !r.passed).count();
            if json {
                let cases: Vec<_> = all
                    .iter()
                    .map(|(f, r)| serde_json::json!({"file": f, "result": r}))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "policy_digest": engine.digest(),
                        "passed": all.len() - failed,
                        "failed": failed,
                        "cases": cases,
                    }))?
                );
            } else {
                for (file, r) in &all {
                    if r.passed {
                        println!("ok    {}", r.name);
                    } else {
                        println!("FAIL  {} ({file})", r.name);
                        for f in &r.failures {
                            println!("        {f}");
                        }
                        if let Some(x) = &r.explanation {
                            for line in explanation_lines(x, false) {
                                println!("        {line}");
                            }
                        }
                    }
                }
                println!(
                    "{} passed, {failed} failed ({} policies, digest {})",
                    all.len() - failed,
                    engine.policy_count(),
                    engine.digest()
                );
            }
            Ok(if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        PolicyCommand::Explain {
            policies,
            question,
            all,
            json,
        } => {
            let engine = match load(&policies)? {
                Ok(e) => e,
                Err(code) => return Ok(code),
            };
            let context: ContextSpec = match &question.context {
                Some(text) => serde_json::from_str(text)
                    .map_err(|e| anyhow::anyhow!("--context is not a valid context: {e}"))?,
                None => ContextSpec::default(),
            };
            let q = PolicyQuestion {
                principal: question.principal,
                groups: question.groups,
                on_behalf_of: question.on_behalf_of,
                action: question.action,
                resource: question.resource,
                resource_parents: question.resource_parents,
                context,
            };
            let x = q.explain(&engine)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&x)?);
            } else {
                for line in explanation_lines(&x, all) {
                    println!("{line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Loads a policy directory; an invalid set is reported and becomes exit code 1, an unreadable
/// directory is an error (exit 2).
#[allow(clippy::print_stderr)]
fn load(dir: &std::path::Path) -> anyhow::Result<Result<PolicyEngine, ExitCode>> {
    match PolicyEngine::load_dir(dir) {
        Ok(engine) => Ok(Ok(engine)),
        Err(PolicyError::Io { file, message }) => anyhow::bail!("cannot read `{file}`: {message}"),
        Err(e) => {
            eprintln!("invalid: {e}");
            Ok(Err(ExitCode::from(1)))
        }
    }
}

fn explanation_lines(x: &Explanation, all: bool) -> Vec<String> {
    let d = &x.decision;
    let mut out = vec![if d.is_allow() {
        format!("decision: allow (permitted by {})", d.policies.join(", "))
    } else {
        format!("decision: deny ({})", d.denial_message())
    }];
    if !d.obligations.is_empty() {
        let labels: Vec<String> = d.obligations.iter().map(|o| o.label()).collect();
        out.push(format!("obligations: {}", labels.join(", ")));
    }
    for e in &d.errors {
        out.push(format!("evaluation error: {e}"));
    }
    let mut hidden = 0usize;
    for p in &x.policies {
        if !all && matches!(p.outcome, PolicyOutcome::OutOfScope(_)) {
            hidden += 1;
            continue;
        }
        let mark = match p.outcome {
            PolicyOutcome::Determining => "*",
            _ => "-",
        };
        out.push(format!(
            "  {mark} {} ({} in {}): {}{}",
            p.id,
            p.effect,
            p.file,
            p.outcome.describe(),
            p.reason
                .as_deref()
                .map(|r| format!(" — \"{r}\""))
                .unwrap_or_default()
        ));
    }
    if hidden > 0 {
        out.push(format!(
            "  ({hidden} other policies do not apply to this principal, action or resource; --all lists them)"
        ));
    }
    out
}
