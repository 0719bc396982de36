//! Reversible redaction end to end: with `inspect.redaction = "token"` the answer carries tokens
//! instead of values (whole and streamed), the session's own user gets values back through
//! `POST /v1/reveal` as far as policy allows, and nobody else does — not another user naming the
//! same session, not the agent working in it, not after the policy forbids the kind of value.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;

const EMAIL: &str = "jane.doe@example.com";
const CARD: &str = "4111 1111 1111 1111";

fn with_session(served: &Served, path: &str, key: &str, session: Option<&str>, body: &str) -> Resp {
    let session = session
        .map(|s| format!("x-ztai-session: {s}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\n{session}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        served.gw,
        body.len()
    );
    raw(served.gw, req.as_bytes())
}

fn chat_in(served: &Served, key: &str, session: Option<&str>, content: &str, stream: bool) -> Resp {
    let body = serde_json::json!({"model": "echo-small", "stream": stream,
        "messages": [{"role": "user", "content": content}]});
    with_session(
        served,
        "/v1/chat/completions",
        key,
        session,
        &body.to_string(),
    )
}

fn reveal(served: &Served, key: &str, session: Option<&str>, text: &str) -> Resp {
    let body = serde_json::json!({ "text": text });
    with_session(served, "/v1/reveal", key, session, &body.to_string())
}

fn answer(r: &Resp) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The `[KIND:tok_…]` tokens in `text`, in order.
fn tokens(text: &str) -> Vec<String> {
    text.split('[')
        .skip(1)
        .filter_map(|t| t.split_once(']').map(|(inner, _)| format!("[{inner}]")))
        .filter(|t| t.contains(":tok_"))
        .collect()
}

fn message(r: &Resp) -> String {
    r.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn tokens_come_back_to_their_user_as_far_as_policy_allows_and_to_nobody_else() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), "[inspect]\nredaction = \"token\"\n");
    let prompt = format!("write to {EMAIL} and charge {CARD}");

    // Whole answer: values replaced by tokens; the session is named back.
    let r = chat_in(&served, &served.key, Some("case-7"), &prompt, false);
    assert_eq!(r.header("x-ztai-session"), Some("case-7"));
    let text = answer(&r);
    assert!(
        !text.contains("jane.doe") && !text.contains("4111"),
        "{text}"
    );
    let toks = tokens(&text);
    assert_eq!(toks.len(), 2, "{text}");
    assert!(toks[0].starts_with("[EMAIL:tok_") && toks[1].starts_with("[CREDIT_CARD:tok_"));

    // The same value keeps its token within the session, streamed too, with no fragment of it
    // in any byte sent.
    let r = chat_in(&served, &served.key, Some("case-7"), &prompt, true);
    assert_eq!(r.status, 200);
    let body = r.text();
    assert!(
        !body.contains("jane.doe") && !body.contains("4111"),
        "{body}"
    );
    let (streamed, done, error) = sse_text(&body);
    assert!(done && error.is_none());
    assert_eq!(tokens(&streamed), toks, "{streamed}");

    // The user gets the address back...
    let r = reveal(
        &served,
        &served.key,
        Some("case-7"),
        &format!("Reply to {}.", toks[0]),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["text"], format!("Reply to {EMAIL}."));
    assert_eq!(r.json()["revealed"], 1);
    assert_eq!(r.json()["types"], serde_json::json!(["email"]));
    assert_eq!(r.header("cache-control"), Some("no-store"));

    // ...but policy keeps card numbers redacted, even asked for together with an address.
    let r = reveal(&served, &served.key, Some("case-7"), &text);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(!r.text().contains("4111") && !r.text().contains("jane.doe"));
    assert!(message(&r).contains("stay redacted"), "{}", r.text());

    // Another user naming the same session has no such session: names are not capabilities.
    let bob = create_key(served.admin, &served.admin_token, "bob", &["staff"]);
    let r = reveal(&served, &bob, Some("case-7"), &toks[0]);
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(!r.text().contains("jane.doe"));
    // Bob's own session with that name knows none of Alice's tokens.
    chat_in(&served, &bob, Some("case-7"), "hello", false);
    let r = reveal(&served, &bob, Some("case-7"), &toks[0]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["text"], toks[0].as_str());
    assert_eq!(r.json()["revealed"], 0);

    // A forged token in the right shape reveals nothing; no session header is a clear error.
    let forged = "[EMAIL:tok_0123456789abcdef0123]";
    let r = reveal(&served, &served.key, Some("case-7"), forged);
    assert_eq!(r.json()["text"], forged);
    let r = reveal(&served, &served.key, None, &toks[0]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(message(&r).contains("x-ztai-session"));
    let r = reveal(&served, &served.key, Some("bad name"), &toks[0]);
    assert_eq!(r.status, 400);
    let r = with_session(
        &served,
        "/v1/reveal",
        &served.key,
        Some("case-7"),
        "{\"txt\":1}",
    );
    assert_eq!(r.status, 422, "{}", r.text());

    // A request without a session gets one minted and named in the answer.
    let r = chat_in(&served, &served.key, None, &prompt, false);
    let minted = r.header("x-ztai-session").unwrap().to_string();
    assert!(minted.starts_with("rs_"), "{minted}");
    let fresh = tokens(&answer(&r));
    assert_ne!(fresh[0], toks[0], "a new session has its own key");
    let r = reveal(&served, &served.key, Some(&minted), &fresh[0]);
    assert_eq!(r.json()["text"], EMAIL);

    // The audit log records each reveal, allowed and refused, with kinds and counts only.
    let r = request(
        served.admin,
        "GET",
        "/api/v1/audit?action=reveal&limit=100",
        Some(&served.admin_token),
        "",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let records = r.json()["records"].as_array().unwrap().clone();
    assert!(records.len() >= 5, "{records:?}");
    let all = serde_json::to_string(&records).unwrap();
    assert!(!all.contains("jane.doe") && !all.contains("4111"), "{all}");
    assert!(
        all.contains("revealed 1 value(s) of session `case-7`: email"),
        "{all}"
    );
    assert!(records.iter().any(|r| r["status"] == 403), "{all}");
}

#[test]
fn an_agent_works_with_tokens_and_only_the_user_it_acts_for_sees_values() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), "[inspect]\nredaction = \"token\"\n");
    // The quick-start user hands the support agent a task token.
    let r = request(
        served.gw,
        "POST",
        "/v1/tokens",
        Some(&served.key),
        &serde_json::json!({"agent": "support-bot", "models": ["echo-small"]}).to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let task = r.json()["token"].as_str().unwrap().to_string();

    let text = answer(&chat_in(
        &served,
        &task,
        Some("ticket-9"),
        &format!("customer {EMAIL}"),
        false,
    ));
    let toks = tokens(&text);
    assert_eq!(toks.len(), 1, "{text}");

    // The agent cannot turn tokens back into values, whatever it names.
    let r = reveal(&served, &task, Some("ticket-9"), &toks[0]);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        message(&r).contains("agent never sees back"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains("jane.doe"));

    // The user it acted for can: the session is theirs.
    let r = reveal(&served, &served.key, Some("ticket-9"), &toks[0]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["text"], EMAIL);
}

#[test]
fn numbered_redaction_keeps_one_number_per_value_across_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), "[inspect]\nredaction = \"numbered\"\n");
    let first = answer(&chat_in(
        &served,
        &served.key,
        Some("thread-1"),
        &format!("{EMAIL} and bob@example.org"),
        false,
    ));
    assert_eq!(first, "[EMAIL_1] and [EMAIL_2]");
    let second = answer(&chat_in(
        &served,
        &served.key,
        Some("thread-1"),
        &format!("again {EMAIL}"),
        false,
    ));
    assert_eq!(second, "again [EMAIL_1]");
    // Numbers are not tokens: nothing to reveal.
    let r = reveal(&served, &served.key, Some("thread-1"), &second);
    assert_eq!(r.json()["revealed"], 0, "{}", r.text());
}

/// Posts one JSON-RPC message to `/mcp/office`, with the MCP session and, if given, a redaction
/// session name.
fn mcp(
    served: &Served,
    mcp_session: Option<&str>,
    redaction: Option<&str>,
    msg: &serde_json::Value,
) -> Resp {
    let body = msg.to_string();
    let mut extra = String::new();
    if let Some(s) = mcp_session {
        extra.push_str(&format!("Mcp-Session-Id: {s}\r\n"));
    }
    if let Some(s) = redaction {
        extra.push_str(&format!("x-ztai-session: {s}\r\n"));
    }
    raw(
        served.gw,
        format!(
            "POST /mcp/office HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            served.gw,
            served.key,
            body.len()
        )
        .as_bytes(),
    )
}

fn mcp_session(served: &Served) -> String {
    let r = mcp(
        served,
        None,
        None,
        &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "e2e", "version": "1"}}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.header("mcp-session-id").unwrap().to_string()
}

fn search(served: &Served, session: &str, redaction: Option<&str>, query: &str) -> Resp {
    let r = mcp(
        served,
        Some(session),
        redaction,
        &serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                            "params": {"name": "search_docs", "arguments": {"query": query}}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r
}

fn tool_text(r: &Resp) -> String {
    r.json()["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no tool result: {}", r.text()))
        .to_string()
}

/// MCP tool results and `/v1/authorize` arguments are redacted the way `inspect.redaction` says,
/// in the caller's session (by default one per MCP session), so their tokens come back to the
/// user like a chat answer's — and only within that session.
#[test]
fn tool_results_and_authorized_arguments_are_tokenised_in_the_callers_session() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        r#"
[inspect]
redaction = "token"

[[mcp.servers]]
name = "office"
command = {bin}
args = ["standin-mcp"]
untrusted = false
result_redact = ["secret", "pii"]

[[tools]]
name = "office/search_docs"
groups = ["office-read"]
"#,
        bin = serde_json::json!(BIN),
    );
    let mut served = Served::start(dir.path(), &extra);
    let query = format!("invoices of {EMAIL}");

    // The stand-in tool echoes the query: its result carries the address, which reaches the
    // agent as a token of the MCP session's own redaction session.
    let session = mcp_session(&served);
    let r = search(&served, &session, None, &query);
    let named = r.header("x-ztai-session").unwrap().to_string();
    assert!(named.starts_with("mcp-"), "{named}");
    let text = tool_text(&r);
    assert!(!r.text().contains("jane.doe"), "{}", r.text());
    let toks = tokens(&text);
    assert_eq!(toks.len(), 1, "{text}");
    assert!(toks[0].starts_with("[EMAIL:tok_"), "{text}");
    // The next call of the session keeps the token; the user gets the value back from it.
    let again = search(&served, &session, None, &query);
    assert_eq!(again.header("x-ztai-session"), Some(named.as_str()));
    assert_eq!(tokens(&tool_text(&again)), toks);
    let r = reveal(&served, &served.key, Some(&named), &text);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.json()["text"].as_str().unwrap().contains(EMAIL),
        "{}",
        r.text()
    );
    // A session the caller names is used instead, and knows none of the other one's tokens.
    let r = search(&served, &session, Some("case-9"), &query);
    assert_eq!(r.header("x-ztai-session"), Some("case-9"));
    let r = reveal(&served, &served.key, Some("case-9"), &toks[0]);
    assert_eq!(r.json()["text"], toks[0].as_str(), "{}", r.text());
    // A call with nothing to redact opens no session and names none.
    let r = search(&served, &session, None, "expenses");
    assert_eq!(r.header("x-ztai-session"), None);
    // A malformed session name is refused, as on every other path.
    let r = mcp(
        &served,
        Some(&session),
        Some("bad name"),
        &serde_json::json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                            "params": {"name": "search_docs", "arguments": {"query": "x"}}}),
    );
    assert!(r.text().contains("x-ztai-session"), "{}", r.text());

    // A permit that redacts personal data in the arguments: the decision API hands back
    // tokenised arguments in the caller's session, and the MCP proxy forwards tokens, so the
    // tool itself never sees the address.
    served.restart_with(dir.path(), || {
        std::fs::write(
            dir.path().join("data/policies/test-redact-arguments.cedar"),
            r#"@id("test-search-arguments-redacted")
@reason("search queries must not carry personal data to the tool")
@obligation("redact")
@redact("pii")
permit (
  principal in Group::"staff",
  action == Action::"call_tool",
  resource == Tool::"office/search_docs"
);
"#,
        )
        .unwrap();
    });
    let body = serde_json::json!({"action": "call_tool", "resource": "tool:office/search_docs",
                                  "arguments": {"query": query}});
    let r = with_session(
        &served,
        "/v1/authorize",
        &served.key,
        Some("case-10"),
        &body.to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-ztai-session"), Some("case-10"));
    let forwarded = r.json()["arguments"]["query"].as_str().unwrap().to_string();
    assert!(!forwarded.contains("jane.doe"), "{forwarded}");
    let arg_toks = tokens(&forwarded);
    assert_eq!(arg_toks.len(), 1, "{forwarded}");
    let r = reveal(&served, &served.key, Some("case-10"), &forwarded);
    assert_eq!(r.json()["text"], query.as_str(), "{}", r.text());

    let session = mcp_session(&served);
    let r = search(&served, &session, Some("case-10"), &query);
    let text = tool_text(&r);
    assert!(!text.contains("jane.doe"), "{text}");
    assert_eq!(
        tokens(&text),
        arg_toks,
        "the tool echoed the token it was given: {text}"
    );

    // None of it reached the audit log in the clear.
    let audit = request(
        served.admin,
        "GET",
        "/api/v1/audit?limit=200",
        Some(&served.admin_token),
        "",
    );
    assert_eq!(audit.status, 200);
    assert!(audit.text().contains("call_tool"));
    assert!(!audit.text().contains("jane.doe"));
}
