//! The MCP proxy end to end, through the real binary and the stdio stand-in server the gateway
//! starts itself: sessions bound to their opener, filtered listings, calls allowed, denied on
//! their arguments, held for approval and released, results carrying injected instructions
//! withheld, taint-based data-flow rules, a rug pull blocked until an administrator approves
//! again, and every request recorded. (The Python SDK tests in tests/python drive the same
//! proxy with the official MCP client and servers.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{Resp, env_value, raw, request, up, wait_until};
use serde_json::{Value, json};
use std::net::SocketAddr;

/// POSTs one JSON-RPC message to `/mcp/{server}`.
fn post(gw: SocketAddr, server: &str, key: &str, session: Option<&str>, msg: &Value) -> Resp {
    let body = msg.to_string();
    let session = session
        .map(|s| format!("Mcp-Session-Id: {s}\r\n"))
        .unwrap_or_default();
    raw(
        gw,
        format!(
            "POST /mcp/{server} HTTP/1.1\r\nHost: {gw}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{session}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
}

fn initialize(gw: SocketAddr, server: &str, key: &str) -> String {
    let r = post(
        gw,
        server,
        key,
        None,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "e2e", "version": "1"}}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"]["protocolVersion"], "2025-11-25");
    let id = r
        .header("mcp-session-id")
        .expect("a session id")
        .to_string();
    let n = post(
        gw,
        server,
        key,
        Some(&id),
        &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    );
    assert_eq!(n.status, 202, "{}", n.text());
    id
}

fn call(gw: SocketAddr, key: &str, session: &str, tool: &str, args: Value) -> Value {
    let r = post(
        gw,
        "office",
        key,
        Some(session),
        &json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                "params": {"name": tool, "arguments": args}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["id"], 7);
    v
}

fn tool_names(v: &Value) -> Vec<String> {
    v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

fn audit(qs_admin: SocketAddr, token: &str) -> Vec<Value> {
    request(qs_admin, "GET", "/api/v1/audit?limit=200", Some(token), "").json()["records"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn the_quick_start_agent_scenario_is_enforced_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let qs = up(dir.path());
    let (gw, key) = (qs.gateway, qs.api_key.clone());
    let env = std::fs::read_to_string(qs.dir.join("quickstart.env")).unwrap();
    assert_eq!(env_value(&env, "ZTAI_MCP_URL"), format!("http://{gw}/mcp"));

    // Sessions: none, a forged one, another server's, an unknown server, another identity.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    assert_eq!(post(gw, "office", &key, None, &list).status, 400);
    assert_eq!(
        post(gw, "office", &key, Some("zmcp1.AAAA"), &list).status,
        404
    );
    assert_eq!(post(gw, "nope", &key, None, &list).status, 404);
    assert_eq!(post(gw, "office", "ztai_bad_key", None, &list).status, 401);
    let session = initialize(gw, "office", &key);
    assert_eq!(
        post(gw, "office", &qs.admin_token, Some(&session), &list).status,
        403,
        "a session is usable only by the identity that opened it"
    );
    // Malformed messages get clear errors, not panics.
    for (body, status) in [
        ("[1,2]", 422),
        ("{\"jsonrpc\":\"2.0\"", 400),
        ("{\"id\":1,\"method\":\"ping\"}", 422),
    ] {
        let r = raw(
            gw,
            format!(
                "POST /mcp/office HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nMcp-Session-Id: {session}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        assert_eq!(r.status, status, "{body}: {}", r.text());
    }
    let r = post(
        gw,
        "office",
        &key,
        Some(&session),
        &json!({"jsonrpc": "2.0", "id": 3, "method": "prompts/list"}),
    );
    assert_eq!(r.json()["error"]["code"], -32601);

    // The listing offers only what policy lets `demo` (staff) call: not export_customers.
    let r = post(gw, "office", &key, Some(&session), &list);
    let names = tool_names(&r.json());
    assert!(names.contains(&"search_docs".to_string()), "{names:?}");
    assert!(names.contains(&"send_email".to_string()), "{names:?}");
    assert!(
        !names.contains(&"export_customers".to_string()),
        "{names:?}"
    );

    // Allowed; denied on its arguments; denied by name.
    let ok = call(
        gw,
        &key,
        &session,
        "search_docs",
        json!({"query": "expenses"}),
    );
    assert!(
        ok["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("expenses")
    );
    let denied = call(
        gw,
        &key,
        &session,
        "send_email",
        json!({"to": "drop@exfil.example", "subject": "s", "body": "b"}),
    );
    assert_eq!(denied["error"]["code"], -32003, "{denied}");
    let denied = call(gw, &key, &session, "export_customers", json!({}));
    assert_eq!(denied["error"]["code"], -32003, "{denied}");
    // Mail to the partner is fine while the session is clean.
    let sent = call(
        gw,
        &key,
        &session,
        "send_email",
        json!({"to": "ann@partner.example", "subject": "s", "body": "b"}),
    );
    assert!(
        sent["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("sent"),
        "{sent}"
    );

    // A web page carrying an injected instruction is withheld from the agent...
    let page = call(
        gw,
        &key,
        &session,
        "fetch_page",
        json!({"url": "https://attack.example"}),
    );
    assert_eq!(page["result"]["isError"], true, "{page}");
    let text = page["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("ZTAI withheld"), "{text}");
    assert!(
        !text.contains("exfil"),
        "the injected text must not reach the agent: {text}"
    );
    // ...and the session is now tainted: the same partner mail is refused...
    let after = call(
        gw,
        &key,
        &session,
        "send_email",
        json!({"to": "ann@partner.example", "subject": "s", "body": "b"}),
    );
    assert_eq!(after["error"]["code"], -32003, "{after}");
    assert!(
        after["error"]["data"]["session_taint"]
            .to_string()
            .contains("untrusted_content")
    );
    // ...while a fresh session of the same user is not.
    let clean = initialize(gw, "office", &key);
    let sent = call(
        gw,
        &key,
        &clean,
        "send_email",
        json!({"to": "ann@partner.example", "subject": "s", "body": "b"}),
    );
    assert!(sent["result"].is_object(), "{sent}");

    // Mail to a colleague from the tainted session waits for an approver; approved, it runs.
    let (s2, k2) = (session.clone(), key.clone());
    let held = std::thread::spawn(move || {
        call(
            gw,
            &k2,
            &s2,
            "send_email",
            json!({"to": "bob@example.com", "subject": "s", "body": "b"}),
        )
    });
    let mut id = String::new();
    wait_until("the email to be held", || {
        let r = request(
            qs.admin,
            "GET",
            "/api/v1/approvals",
            Some(&qs.admin_token),
            "",
        );
        if let Some(t) = r.json()["approvals"].as_array().and_then(|a| a.first()) {
            id = t["id"].as_str().unwrap_or_default().to_string();
        }
        !id.is_empty()
    });
    let o = std::process::Command::new(common::BIN)
        .args(["approvals", "approve", &id, "--reason", "colleague mail ok"])
        .env("ZTAI_ADMIN_URL", format!("http://{}", qs.admin))
        .env("ZTAI_ADMIN_TOKEN", &qs.admin_token)
        .env("ZTAI_APPROVER_KEY", env_value(&env, "ZTAI_APPROVER_KEY"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let released = held.join().unwrap();
    assert!(
        released["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("bob@example.com"),
        "{released}"
    );

    // The CLI client says the same, with exit codes a script can use.
    let cli = |args: &[&str]| {
        std::process::Command::new(common::BIN)
            .args(["mcp"])
            .args(args)
            .env("ZTAI_MCP_URL", format!("http://{gw}/mcp"))
            .env("ZTAI_API_KEY", &key)
            .output()
            .unwrap()
    };
    let o = cli(&["call", "office", "search_docs", r#"{"query":"q"}"#]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = cli(&[
        "call",
        "office",
        "send_email",
        r#"{"to":"x@exfil.example","subject":"s","body":"b"}"#,
    ]);
    assert_eq!(o.status.code(), Some(3));
    let o = cli(&[
        "call",
        "office",
        "fetch_page",
        r#"{"url":"https://attack.example"}"#,
    ]);
    assert_eq!(o.status.code(), Some(2));

    // Ending the session: it is gone for good.
    let r = raw(
        gw,
        format!("DELETE /mcp/office HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nMcp-Session-Id: {clean}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(post(gw, "office", &key, Some(&clean), &list).status, 404);

    // Every call is in the audit log with its tool, decision and findings.
    let records = audit(qs.admin, &qs.admin_token);
    let calls: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "call_tool" && r["resource"] == "Tool::\"office/send_email\"")
        .collect();
    assert!(calls.iter().any(|r| r["decision"] == "deny"));
    assert!(
        calls
            .iter()
            .any(|r| r["obligations"].to_string().contains(&id))
    );
    let withheld = records
        .iter()
        .find(|r| {
            r["resource"] == "Tool::\"office/fetch_page\""
                && r["reason"].as_str().unwrap_or("").contains("withheld")
        })
        .expect("the withheld result is recorded");
    assert!(
        withheld["findings"]
            .to_string()
            .contains("prompt_injection"),
        "{withheld}"
    );
    assert!(records.iter().any(|r| r["action"] == "mcp:pin_tool"));
}

#[test]
fn a_rug_pull_blocks_the_tool_until_an_administrator_approves_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("rug-pull");
    let extra = format!(
        r#"
[[mcp.servers]]
name = "office"
command = {bin}
args = ["standin-mcp", "--rug-pull-file", {flag}]
untrusted = false

[mcp.servers.tools.search_docs]
calls_per_minute = 3

[[tools]]
name = "office/search_docs"
groups = ["office-read"]
"#,
        bin = json!(common::BIN),
        flag = json!(flag.display().to_string()),
    );
    let s = common::Served::start(dir.path(), &extra);
    let (gw, key) = (s.gw, s.key.clone());
    let session = initialize(gw, "office", &key);
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    assert!(
        tool_names(&post(gw, "office", &key, Some(&session), &list).json())
            .contains(&"send_email".to_string())
    );
    // Per-tool rate limit: three searches a minute, the fourth is refused with a retry hint.
    for i in 0..3 {
        let r = call(
            gw,
            &key,
            &session,
            "search_docs",
            json!({"query": format!("q{i}")}),
        );
        assert!(r["result"].is_object(), "{r}");
    }
    let limited = call(gw, &key, &session, "search_docs", json!({"query": "q4"}));
    assert_eq!(limited["error"]["code"], -32029, "{limited}");
    assert!(
        limited["error"]["data"]["retry_after_secs"]
            .as_u64()
            .unwrap()
            >= 1
    );
    let email = json!({"to": "bob@example.com", "subject": "s", "body": "b"});
    assert!(call(gw, &key, &session, "send_email", email.clone())["result"].is_object());

    // The server turns: send_email's description now carries a hidden instruction.
    std::fs::write(&flag, "").unwrap();
    let names = tool_names(&post(gw, "office", &key, Some(&session), &list).json());
    assert!(!names.contains(&"send_email".to_string()), "{names:?}");
    assert!(!names.is_empty(), "other tools stay offered: {names:?}");
    let blocked = call(gw, &key, &session, "send_email", email.clone());
    assert_eq!(blocked["error"]["code"], -32005, "{blocked}");
    assert!(
        blocked["error"]["message"]
            .as_str()
            .unwrap()
            .contains("changed the tool after it was approved")
    );

    // The administrator sees why, and approves the new definition after reading it.
    let admin = |args: &[&str]| {
        std::process::Command::new(common::BIN)
            .args(["mcp"])
            .args(args)
            .env("ZTAI_ADMIN_URL", format!("http://{}", s.admin))
            .env("ZTAI_ADMIN_TOKEN", &s.admin_token)
            .output()
            .unwrap()
    };
    let o = admin(&["tools", "--server", "office", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tools: Value = serde_json::from_slice(&o.stdout).unwrap();
    let row = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tool"] == "send_email")
        .unwrap()
        .clone();
    assert_eq!(row["status"], "blocked");
    assert_ne!(row["pinned_digest"], row["seen_digest"]);
    assert!(
        row["definition"].to_string().contains("exfil"),
        "the reviewer sees the new text"
    );
    // An approval of another digest (not what is current) is refused.
    let r = request(
        s.admin,
        "POST",
        "/api/v1/mcp/tools/office/send_email/approve",
        Some(&s.admin_token),
        &json!({"digest": row["pinned_digest"]}).to_string(),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    // Not an administrator: refused.
    let r = request(
        s.admin,
        "POST",
        "/api/v1/mcp/tools/office/send_email/approve",
        Some(&key),
        &json!({"digest": row["seen_digest"]}).to_string(),
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let o = admin(&["approve", "office", "send_email"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        tool_names(&post(gw, "office", &key, Some(&session), &list).json())
            .contains(&"send_email".to_string())
    );
    let sent = call(gw, &key, &session, "send_email", email);
    assert!(sent["result"].is_object(), "{sent}");
    // The block and the re-approval are in the audit log.
    let records = audit(s.admin, &s.admin_token);
    assert!(
        records
            .iter()
            .any(|r| r["action"] == "mcp:block_tool"
                && r["resource"] == "Tool::\"office/send_email\"")
    );
    assert!(
        records
            .iter()
            .any(|r| r["action"] == "admin::approve_mcp_tool")
    );
}

#[test]
fn an_agents_task_token_is_held_to_its_scope_ceiling_and_chain_on_mcp() {
    let dir = tempfile::tempdir().unwrap();
    let qs = up(dir.path());
    let admin_cli = |args: &[&str]| {
        let o = std::process::Command::new(common::BIN)
            .args(args)
            .env("ZTAI_ADMIN_URL", format!("http://{}", qs.admin))
            .env("ZTAI_ADMIN_TOKEN", &qs.admin_token)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    // An office agent in `staff` whose ceiling has two tools; its task gets only one.
    admin_cli(&[
        "agents",
        "register",
        "--id",
        "office-bot",
        "--owner",
        "demo",
        "--purpose",
        "answers office questions",
        "--ceiling",
        "tool:office/search_docs,tool:office/fetch_page,destination:127.0.0.1",
        "--groups",
        "staff",
    ]);
    let token = admin_cli(&[
        "token",
        "issue",
        "--agent",
        "office-bot",
        "--on-behalf-of",
        "demo",
        "--tools",
        "office/search_docs",
        "--resources",
        "destination:127.0.0.1",
        "--ttl",
        "10m",
    ]);
    // Egress through the proxy with the agent's token: the lab's health check, before and after
    // the task reads confidential data.
    let env = std::fs::read_to_string(qs.dir.join("quickstart.env")).unwrap();
    let proxy: SocketAddr = env_value(&env, "ZTAI_EGRESS_PROXY")
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let health = format!(
        "{}/healthz",
        env_value(&env, "ZTAI_STANDIN_URL").trim_end_matches("/v1")
    );
    let egress = |token: &str| {
        let host = health
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap()
            .to_string();
        raw(
            proxy,
            format!("GET {health} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: Bearer {token}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    let before = egress(&token);
    assert_eq!(before.status, 200, "{}", before.text());
    let gw = qs.gateway;
    let session = initialize(gw, "office", &token);
    let names = tool_names(
        &post(
            gw,
            "office",
            &token,
            Some(&session),
            &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .json(),
    );
    assert_eq!(
        names,
        vec!["search_docs".to_string()],
        "only what the task allows"
    );
    let ok = call(gw, &token, &session, "search_docs", json!({"query": "q"}));
    assert!(ok["result"].is_object(), "{ok}");
    // The knowledge base is confidential: from now on the task reaches only allowlisted
    // destinations, whatever channel it uses.
    let after = egress(&token);
    assert_eq!(after.status, 403, "{}", after.text());
    assert!(after.text().contains("confidential"), "{}", after.text());
    // Outside the task's scope (though within the ceiling), and outside the ceiling.
    let denied = call(
        gw,
        &token,
        &session,
        "fetch_page",
        json!({"url": "https://a.example"}),
    );
    assert_eq!(denied["error"]["code"], -32003, "{denied}");
    let denied = call(
        gw,
        &token,
        &session,
        "send_email",
        json!({"to": "bob@example.com", "subject": "s", "body": "b"}),
    );
    assert_eq!(denied["error"]["code"], -32003, "{denied}");
    // The user's own session cannot be used with the agent's token, nor the reverse.
    let users = initialize(gw, "office", &qs.api_key);
    let list = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
    assert_eq!(post(gw, "office", &token, Some(&users), &list).status, 403);
    assert_eq!(
        post(gw, "office", &qs.api_key, Some(&session), &list).status,
        403
    );
    // The record names the whole chain.
    let records = audit(qs.admin, &qs.admin_token);
    let r = records
        .iter()
        .find(|r| r["action"] == "call_tool" && r["resource"] == "Tool::\"office/search_docs\"")
        .expect("the agent's call is recorded");
    assert_eq!(r["principal"], "agent:office-bot");
    assert!(r["chain"].to_string().contains("user:demo"), "{r}");
}

#[test]
fn a_held_call_is_released_by_its_ticket_for_exactly_those_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        r#"
[approvals]
mode = "ticket"
signed_decisions = "optional"

[[mcp.servers]]
name = "office"
command = {bin}
args = ["standin-mcp"]
"#,
        bin = json!(common::BIN),
    );
    let s = common::Served::start(dir.path(), &extra);
    let (gw, key) = (s.gw, s.key.clone());
    let session = initialize(gw, "office", &key);
    let refund = json!({"order_id": "A-17", "amount": 20});
    let held = call(gw, &key, &session, "refund", refund.clone());
    assert_eq!(held["error"]["code"], -32004, "{held}");
    let ticket = held["error"]["data"]["approval"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        held["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ztai/approval")
    );
    let with_ticket = |args: &Value| {
        let r = post(
            gw,
            "office",
            &key,
            Some(&session),
            &json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                    "params": {"name": "refund", "arguments": args, "_meta": {"ztai/approval": ticket}}}),
        );
        r.json()
    };
    // Still pending: held again, same ticket.
    assert_eq!(with_ticket(&refund)["error"]["code"], -32004);
    let r = request(
        s.admin,
        "POST",
        &format!("/api/v1/approvals/{ticket}/approve"),
        Some(&s.admin_token),
        &json!({"reason": "ok"}).to_string(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // The ticket does not release other arguments...
    let other = with_ticket(&json!({"order_id": "A-17", "amount": 2000}));
    assert_eq!(other["error"]["code"], -32003, "{other}");
    assert!(
        other["error"]["message"]
            .as_str()
            .unwrap()
            .contains("different request")
    );
    // ...releases these once...
    let done = with_ticket(&refund);
    assert!(
        done["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("refunded 20"),
        "{done}"
    );
    // ...and never twice.
    assert_eq!(with_ticket(&refund)["error"]["code"], -32003);
}
