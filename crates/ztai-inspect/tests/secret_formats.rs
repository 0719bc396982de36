//! Secrets where users of gitleaks, trufflehog and detect-secrets expect them found: vendor key
//! formats, webhooks and signed URLs, passwords in configuration files and connection strings,
//! private keys escaped in JSON, base64-wrapped, indented or with CRLF line ends — and the same
//! places holding no secret (templates, placeholders, hashes, public keys, prose about keys).
//!
//! The list (`data/secret-formats.jsonl`) was written for ZTAI: every value is random, made for
//! the list, and none is a real credential. It is not in `../shared/corpora`, so it checks the
//! rules as a user meets them rather than as the development corpus taught them. Each row names
//! the kind it expects, so a row found only by accident (by another rule) does not count.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::Value;
use ztai_core::{Channel, FindingCategory};
use ztai_inspect::Inspector;

struct Row {
    text: String,
    /// `Some((kind, value))` for a row holding a secret.
    secret: Option<(String, String)>,
}

fn rows() -> Vec<Row> {
    include_str!("data/secret-formats.jsonl")
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let text = v["text"].as_str().unwrap().to_string();
            let secret = (v["expect"] == "secret").then(|| {
                (
                    v["kind"].as_str().unwrap().to_string(),
                    v["value"].as_str().unwrap().to_string(),
                )
            });
            Row { text, secret }
        })
        .collect()
}

#[test]
fn every_expected_secret_is_found_by_its_rule_and_nothing_else_is_flagged() {
    let inspector = Inspector::with_default_rules().unwrap();
    let rows = rows();
    assert_eq!(rows.len(), 106);
    let mut missed = Vec::new();
    let mut false_alarms = Vec::new();
    for row in &rows {
        let findings: Vec<_> = inspector
            .inspect(&row.text, Channel::Input)
            .unwrap()
            .into_iter()
            .filter(|f| f.category == FindingCategory::Secret)
            .collect();
        match &row.secret {
            Some((kind, value)) => {
                let at = row.text.find(value.as_str()).unwrap();
                let (start, end) = (at, at + value.len());
                let found = findings
                    .iter()
                    .any(|f| &f.kind == kind && f.span.start < end && start < f.span.end);
                if !found {
                    let got: Vec<_> = findings.iter().map(|f| f.kind.as_str()).collect();
                    missed.push(format!("{kind} in {:?}: got {got:?}", row.text));
                }
            }
            None => {
                if !findings.is_empty() {
                    let got: Vec<_> = findings.iter().map(|f| f.kind.as_str()).collect();
                    false_alarms.push(format!("{:?}: {got:?}", row.text));
                }
            }
        }
    }
    assert!(
        missed.is_empty() && false_alarms.is_empty(),
        "missed {}: {missed:#?}\nfalse alarms {}: {false_alarms:#?}",
        missed.len(),
        false_alarms.len()
    );
}
