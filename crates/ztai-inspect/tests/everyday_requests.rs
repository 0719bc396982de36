//! The shipped prompt-injection classifier against ordinary work people hand an assistant
//! ("Translate the following paragraph into French."): requests that transform, condense or answer
//! a text the user supplies share their verbs with task-hijacking injections, and a model that
//! learned the verbs flags them. The list was written for ZTAI and is not training data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use ztai_core::{Channel, FindingCategory};
use ztai_inspect::Inspector;

/// Flagged by the committed model (13 of 180; the model before everyday requests were among its
/// negatives flagged 69). A retrained model must not do worse.
const MOST_FLAGGED: usize = 13;

#[test]
fn everyday_requests_are_rarely_taken_for_injections() {
    let list = include_str!("data/everyday-requests.txt");
    let inspector = Inspector::with_default_rules().unwrap();
    let requests: Vec<&str> = list
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(requests.len(), 180);
    let flagged: Vec<&str> = requests
        .iter()
        .copied()
        .filter(|r| {
            inspector
                .inspect(r, Channel::Input)
                .unwrap()
                .iter()
                .any(|f| f.category == FindingCategory::PromptInjection)
        })
        .collect();
    assert!(
        flagged.len() <= MOST_FLAGGED,
        "{} of {} everyday requests flagged as prompt injection: {flagged:#?}",
        flagged.len(),
        requests.len()
    );
}
