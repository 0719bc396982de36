//! `ztai documents import|list|show|delete`: the documents registry a retriever's candidates are
//! checked against (`POST /v1/retrieval/authorize`), through the running gateway's admin API.
//!
//! `import` reads JSON Lines — one document per line, `{"id", "collections", "classification",
//! "owner", "readers", "labels"}` — and sends them in batches; a bad line stops the import before
//! anything of its batch is written, naming the line. Progress goes to stderr.

use crate::admin_client::AdminArgs;
use anyhow::Context;
use clap::Subcommand;
use serde_json::{Value, json};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum DocumentsCommand {
    /// Add or replace documents from a JSON Lines file (`-` for stdin).
    Import {
        #[command(flatten)]
        admin: AdminArgs,
        file: PathBuf,
        /// Documents per request (1 to 10,000).
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        #[arg(long)]
        json: bool,
    },
    /// List registered documents in id order.
    List {
        #[command(flatten)]
        admin: AdminArgs,
        /// Start after this id (the `next` of the previous page).
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show what policy knows of one document (from the registry or the configuration).
    Show {
        #[command(flatten)]
        admin: AdminArgs,
        id: String,
    },
    /// Remove a document from the registry: it is withheld from then on.
    Delete {
        #[command(flatten)]
        admin: AdminArgs,
        id: String,
    },
}

/// Document ids go into URL paths: refuse what would change the path, then percent-encode.
fn path_id(id: &str) -> anyhow::Result<String> {
    if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
        anyhow::bail!("`{id}` is not a document id (1 to 256 characters, no control characters)");
    }
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

#[allow(clippy::print_stdout, clippy::print_stderr)]
pub fn run(cmd: DocumentsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DocumentsCommand::Import {
            admin,
            file,
            batch,
            json,
        } => {
            if !(1..=10_000).contains(&batch) {
                anyhow::bail!("--batch must be between 1 and 10000");
            }
            let reader: Box<dyn BufRead> = if file.as_os_str() == "-" {
                Box::new(std::io::BufReader::new(std::io::stdin()))
            } else {
                Box::new(std::io::BufReader::new(
                    std::fs::File::open(&file)
                        .with_context(|| format!("cannot open `{}`", file.display()))?,
                ))
            };
            let mut pending: Vec<Value> = Vec::with_capacity(batch);
            let mut sent = 0usize;
            let send = |docs: &mut Vec<Value>, sent: &mut usize| -> anyhow::Result<()> {
                if docs.is_empty() {
                    return Ok(());
                }
                admin.call(
                    "PUT",
                    "/api/v1/documents",
                    Some(&json!({ "documents": docs })),
                )?;
                *sent += docs.len();
                docs.clear();
                eprintln!("imported {sent} documents");
                Ok(())
            };
            for (n, line) in reader.lines().enumerate() {
                let line = line.with_context(|| format!("line {}: cannot read it", n + 1))?;
                if line.trim().is_empty() {
                    continue;
                }
                let doc: Value = serde_json::from_str(&line)
                    .with_context(|| format!("line {}: not JSON", n + 1))?;
                if !doc.is_object() {
                    anyhow::bail!("line {}: a document is a JSON object with an `id`", n + 1);
                }
                pending.push(doc);
                if pending.len() == batch {
                    send(&mut pending, &mut sent)
                        .with_context(|| format!("the batch ending at line {}", n + 1))?;
                }
            }
            send(&mut pending, &mut sent).context("the last batch")?;
            if json {
                println!("{}", json!({ "imported": sent }));
            } else {
                println!("imported {sent} documents");
            }
        }
        DocumentsCommand::List {
            admin,
            after,
            limit,
            json,
        } => {
            let mut path = format!("/api/v1/documents?limit={}", limit.clamp(1, 1000));
            if let Some(a) = after {
                path.push_str(&format!("&after={}", path_id(&a)?));
            }
            let answer = admin.call("GET", &path, None)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
                return Ok(ExitCode::SUCCESS);
            }
            let docs = answer
                .get("documents")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for d in &docs {
                println!(
                    "{}  {}  collections {}  readers {}",
                    d.get("id").and_then(Value::as_str).unwrap_or(""),
                    d.get("classification")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                    d.get("collections")
                        .map(Value::to_string)
                        .unwrap_or_default(),
                    d.get("readers").map(Value::to_string).unwrap_or_default(),
                );
            }
            if let Some(next) = answer.get("next").and_then(Value::as_str) {
                println!("more: --after {next}");
            }
        }
        DocumentsCommand::Show { admin, id } => {
            let answer =
                admin.call("GET", &format!("/api/v1/documents/{}", path_id(&id)?), None)?;
            println!("{}", serde_json::to_string_pretty(&answer)?);
        }
        DocumentsCommand::Delete { admin, id } => {
            admin.call(
                "DELETE",
                &format!("/api/v1/documents/{}", path_id(&id)?),
                None,
            )?;
            println!("deleted {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_percent_encoded_for_paths_and_hostile_ones_refused() {
        assert_eq!(path_id("handbook-v2.pdf").unwrap(), "handbook-v2.pdf");
        assert_eq!(path_id("a/b c?").unwrap(), "a%2Fb%20c%3F");
        assert_eq!(path_id("../x").unwrap(), "..%2Fx");
        assert_eq!(path_id("é").unwrap(), "%C3%A9");
        for bad in ["", "a\nb", &"x".repeat(300)] {
            assert!(path_id(bad).is_err(), "{bad:?}");
        }
    }
}
