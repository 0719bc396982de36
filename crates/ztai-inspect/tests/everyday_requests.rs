//! The shipped prompt-injection classifier against ordinary work people hand an assistant
//! ("Translate the following paragraph into French.") and what tools hand back ("sent `s` to
//! bob@example.com"): requests that transform, condense or answer a text share their verbs with
//! task-hijacking injections, and a model that learned the verbs flags them. The lists were
//! written for ZTAI and are not training data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ztai_core::{Channel, FindingCategory};
use ztai_inspect::Inspector;

/// The lines of a list, and those of them the shipped engine flags as prompt injection.
fn flagged(list: &str, channel: Channel) -> (usize, Vec<&str>) {
    let inspector = Inspector::with_default_rules().unwrap();
    let lines: Vec<&str> = list
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    let hits = lines
        .iter()
        .copied()
        .filter(|r| {
            inspector
                .inspect(r, channel)
                .unwrap()
                .iter()
                .any(|f| f.category == FindingCategory::PromptInjection)
        })
        .collect();
    (lines.len(), hits)
}

/// Flagged by the committed model: 5 of 180 (the model trained before everyday requests were
/// among its negatives flagged 69; the model before issue 29's retraining, 5). A retrained model
/// must not do worse.
#[test]
fn everyday_requests_are_rarely_taken_for_injections() {
    let (n, hits) = flagged(include_str!("data/everyday-requests.txt"), Channel::Input);
    assert_eq!(n, 180);
    assert!(hits.len() <= 5, "{} of {n} flagged: {hits:#?}", hits.len());
}

/// Flagged by the committed model: 2 of 30 (before tool results were among its negatives, 7; the
/// model before issue 29's retraining, 3).
#[test]
fn tool_results_are_rarely_taken_for_injections() {
    let (n, hits) = flagged(include_str!("data/tool-results.txt"), Channel::Untrusted);
    assert_eq!(n, 30);
    assert!(hits.len() <= 2, "{} of {n} flagged: {hits:#?}", hits.len());
}

/// The kinds of ordinary request issue 29 names (code generation, security tooling, role-play,
/// security research, long creative briefs; documents on the untrusted channel), as
/// `(kind, text)`; `\n` in the list stands for a line break.
fn ordinary_kinds() -> Vec<(&'static str, String)> {
    let mut kind = "";
    let mut out = Vec::new();
    for line in include_str!("data/ordinary-kinds.txt").lines() {
        if let Some(k) = line.strip_prefix("## ") {
            kind = k;
        } else if !line.trim().is_empty() && !line.starts_with('#') {
            out.push((kind, line.replace("\\n", "\n")));
        }
    }
    out
}

/// Flagged, whole engine: 1 of 118 by the committed model (a policy excerpt about passwords, as
/// a retrieved document); 15 by the model before issue 29's retraining, 5 of them requests for
/// security tooling and 5 role-play set-ups.
#[test]
fn ordinary_requests_of_every_kind_are_rarely_taken_for_injections() {
    let inspector = Inspector::with_default_rules().unwrap();
    let rows = ordinary_kinds();
    assert_eq!(rows.len(), 118);
    let hits: Vec<&(&str, String)> = rows
        .iter()
        .filter(|(kind, text)| {
            let channel = if *kind == "documents" {
                Channel::Untrusted
            } else {
                Channel::Input
            };
            inspector
                .inspect(text, channel)
                .unwrap()
                .iter()
                .any(|f| f.category == FindingCategory::PromptInjection)
        })
        .collect();
    assert!(hits.len() <= 1, "{} of 118 flagged: {hits:#?}", hits.len());
}
