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
/// among its negatives flagged 69). A retrained model must not do worse.
#[test]
fn everyday_requests_are_rarely_taken_for_injections() {
    let (n, hits) = flagged(include_str!("data/everyday-requests.txt"), Channel::Input);
    assert_eq!(n, 180);
    assert!(hits.len() <= 5, "{} of {n} flagged: {hits:#?}", hits.len());
}

/// Flagged by the committed model: 3 of 30 (before tool results were among its negatives, 7; the
/// model before that, 5).
#[test]
fn tool_results_are_rarely_taken_for_injections() {
    let (n, hits) = flagged(include_str!("data/tool-results.txt"), Channel::Untrusted);
    assert_eq!(n, 30);
    assert!(hits.len() <= 3, "{} of {n} flagged: {hits:#?}", hits.len());
}
