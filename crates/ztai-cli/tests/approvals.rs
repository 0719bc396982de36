//! Human approval end to end, through the real binary: a held request is released by an
//! entitled approver, refused on denial, on silence until the timeout, and when someone not
//! entitled (or the requester) tries to decide; tickets bind to one request and are spent once;
//! decisions are signed and recorded; the webhook hears of each new request.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{BIN, chat, create_key, raw, request, serve, standin, up, wait_until};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// The pending tickets `key` may decide.
fn pending(admin: SocketAddr, key: &str) -> Vec<serde_json::Value> {
    let r = request(admin, "GET", "/api/v1/approvals", Some(key), "");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["approvals"].as_array().unwrap().clone()
}

fn decide(admin: SocketAddr, key: &str, id: &str, verb: &str, reason: &str) -> common::Resp {
    request(
        admin,
        "POST",
        &format!("/api/v1/approvals/{id}/{verb}"),
        Some(key),
        &serde_json::json!({ "reason": reason }).to_string(),
    )
}

fn chat_with_ticket(gw: SocketAddr, key: &str, body: &str, ticket: Option<&str>) -> common::Resp {
    let ticket = ticket
        .map(|t| format!("ztai-approval: {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n{ticket}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    raw(gw, req.as_bytes())
}

#[test]
fn wait_mode_approval_denial_timeout_and_who_may_decide() {
    let dir = tempfile::tempdir().unwrap();
    let qs = up(dir.path());
    let carol = create_key(qs.admin, &qs.admin_token, "carol", &["approvers"]);
    let bob = create_key(qs.admin, &qs.admin_token, "bob", &["staff"]);
    let dave = create_key(qs.admin, &qs.admin_token, "dave", &["staff", "approvers"]);

    // Approved: the held caller gets its answer once carol approves.
    let (gw, key) = (qs.gateway, qs.api_key.clone());
    let held = std::thread::spawn(move || chat(gw, &key, "echo-sensitive", "release me", false));
    let mut tickets = Vec::new();
    wait_until("a pending approval", || {
        tickets = pending(qs.admin, &carol);
        !tickets.is_empty()
    });
    let t = &tickets[0];
    let id = t["id"].as_str().unwrap().to_string();
    assert_eq!(t["requester"], "user:demo");
    assert_eq!(t["summary"]["model"], "echo-sensitive");
    // Bob is staff, not an approver: he neither sees nor decides it.
    assert!(pending(qs.admin, &bob).is_empty());
    let r = decide(qs.admin, &bob, &id, "approve", "");
    assert_eq!(r.status, 403, "{}", r.text());
    // The requester cannot approve its own request either.
    let r = decide(qs.admin, &qs.api_key, &id, "approve", "");
    assert_eq!(r.status, 403, "{}", r.text());
    let r = decide(qs.admin, &carol, &id, "approve", "checked the prompt");
    assert_eq!(r.status, 200, "{}", r.text());
    let decision = r.json();
    let answer = held.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.text().contains("release me"));
    // Decided once: a second decision is a conflict.
    assert_eq!(decide(qs.admin, &carol, &id, "deny", "").status, 409);
    // The signature verifies with the gateway's key and covers the decision.
    let verifier = ztai_audit::checkpoint::CheckpointVerifier::parse(
        decision["verifier_key"].as_str().unwrap(),
    )
    .unwrap();
    let note = decision["signature"].as_str().unwrap();
    let body = verifier.verify_note(note).unwrap();
    assert!(
        body.contains(&format!(
            "approval {id}\ndecision approved\napprover user:carol\n"
        )),
        "{body}"
    );
    assert!(
        verifier
            .verify_note(&note.replacen("approved", "denied", 1))
            .is_err()
    );

    // Dave is an approver, but not of his own request.
    let (gw, dkey) = (qs.gateway, dave.clone());
    let held = std::thread::spawn(move || chat(gw, &dkey, "echo-sensitive", "mine", false));
    let mut id2 = String::new();
    wait_until("dave's request to be held", || {
        let list = pending(qs.admin, &carol);
        if let Some(t) = list.iter().find(|t| t["requester"] == "user:dave") {
            id2 = t["id"].as_str().unwrap().to_string();
        }
        !id2.is_empty()
    });
    assert!(
        pending(qs.admin, &dave)
            .iter()
            .all(|t| t["id"] != id2.as_str())
    );
    let r = decide(qs.admin, &dave, &id2, "approve", "self-service");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("cannot decide a request you made"),
        "{}",
        r.text()
    );
    // Denied: the caller hears who denied it and why.
    let r = decide(qs.admin, &carol, &id2, "deny", "not today");
    assert_eq!(r.status, 200, "{}", r.text());
    let answer = held.join().unwrap();
    assert_eq!(answer.status, 403, "{}", answer.text());
    assert!(
        answer.text().contains("denied by user:carol: not today"),
        "{}",
        answer.text()
    );

    // Silence until the policy's timeout means deny.
    std::fs::write(
        dir.path().join("policies/zz-fast.cedar"),
        "@id(\"fast-approval\") @obligation(\"approval\") @approver_group(\"approvers\") @approval_timeout_secs(\"2\")\n\
         permit (principal in Group::\"fast\", action == Action::\"invoke\", resource in ModelGroup::\"sensitive\");",
    )
    .unwrap();
    let erin = create_key(qs.admin, &qs.admin_token, "erin", &["fast"]);
    wait_until("the fast policy to apply", || {
        let r = request(
            qs.admin,
            "GET",
            "/api/v1/policies",
            Some(&qs.admin_token),
            "",
        );
        r.text().contains("zz-fast.cedar")
    });
    let r = chat(qs.gateway, &erin, "echo-sensitive", "anyone?", false);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("timed out") && r.text().contains("silence means deny"),
        "{}",
        r.text()
    );

    // Every step is in the audit log: the held requests, the decisions, the refused attempts.
    let r = request(
        qs.admin,
        "GET",
        "/api/v1/audit?limit=200",
        Some(&qs.admin_token),
        "",
    );
    let records = r.json();
    let actions: Vec<String> = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| format!("{} {}", x["action"].as_str().unwrap_or(""), x["status"]))
        .collect();
    assert!(
        actions.iter().any(|a| a == "approvals::approve 200"),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| a == "approvals::approve 403"),
        "{actions:?}"
    );
    assert!(
        actions.iter().any(|a| a == "approvals::deny 200"),
        "{actions:?}"
    );
}

/// A listener that accepts one webhook POST and hands back its body.
fn webhook() -> (u16, std::sync::mpsc::Receiver<serde_json::Value>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in l.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = reader.read_exact(&mut body);
            let mut s = stream;
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
            if let Ok(v) = serde_json::from_slice(&body) {
                let _ = tx.send(v);
            }
        }
    });
    (port, rx)
}

#[test]
fn ticket_mode_binds_the_approval_to_one_request_spent_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_standin, standin_url) = standin();
    let (hook_port, hook) = webhook();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for f in ["models.cedar", "admin.cedar", "approvals.cedar"] {
        std::fs::copy(
            format!("{}/../../policies/{f}", env!("CARGO_MANIFEST_DIR")),
            policies.join(f),
        )
        .unwrap();
    }
    let data = dir.path().join("data");
    let key = |who: &str, groups: &str| {
        let out = std::process::Command::new(BIN)
            .args([
                "keys",
                "create",
                "--principal",
                who,
                "--groups",
                groups,
                "--data-dir",
            ])
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let alice = key("alice", "staff");
    let carol = key("carol", "approvers");
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[storage]
data_dir = "data"

[approvals]
mode = "ticket"
webhook_url = "http://127.0.0.1:{hook_port}/hook"

[[upstreams]]
name = "standin"
base_url = "{standin_url}"

[[models]]
name = "vault"
upstream = "standin"
groups = ["sensitive"]
"#
    );
    let (_gw, gw, admin) = serve(dir.path(), &config);
    let body =
        serde_json::json!({"model": "vault", "messages": [{"role": "user", "content": "open"}]})
            .to_string();

    // Held at once: 202 with the ticket, also in a header.
    let r = chat_with_ticket(gw, &alice, &body, None);
    assert_eq!(r.status, 202, "{}", r.text());
    let id = r.json()["approval"]["id"].as_str().unwrap().to_string();
    assert_eq!(r.header("ztai-approval"), Some(id.as_str()));
    // The webhook heard of it.
    let note = hook.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(note["type"], "ztai.approval.requested");
    assert_eq!(note["approval"]["id"], id.as_str());
    // Polling: pending, and only for the requester.
    let r = request(gw, "GET", &format!("/v1/approvals/{id}"), Some(&alice), "");
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("pending"))
    );
    assert_eq!(
        request(gw, "GET", &format!("/v1/approvals/{id}"), Some(&carol), "").status,
        404
    );
    // Resending before a decision: still pending, no second ticket.
    assert_eq!(chat_with_ticket(gw, &alice, &body, Some(&id)).status, 202);
    assert_eq!(pending(admin, &carol).len(), 1);

    assert_eq!(decide(admin, &carol, &id, "approve", "ok").status, 200);
    // Another body, or another caller, cannot spend it.
    let other = body.replace("open", "open everything");
    let r = chat_with_ticket(gw, &alice, &other, Some(&id));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("different request"), "{}", r.text());
    let r = chat_with_ticket(gw, &carol, &body, Some(&id));
    assert_eq!(r.status, 403, "{}", r.text());
    // The exact request goes through, once.
    let r = chat_with_ticket(gw, &alice, &body, Some(&id));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("open"));
    let r = chat_with_ticket(gw, &alice, &body, Some(&id));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("already been used"), "{}", r.text());
    let r = request(gw, "GET", &format!("/v1/approvals/{id}"), Some(&alice), "");
    assert_eq!(r.json()["status"], "used");
    // Unknown and hostile tickets are refused without a panic.
    for t in ["apr_00", "../../etc", "apr_\u{e9}\u{1f600}"] {
        let r = chat_with_ticket(gw, &alice, &body, Some(t));
        assert_eq!(r.status, 403, "{t:?}: {}", r.text());
        assert!(r.text().contains("is unknown"), "{t:?}: {}", r.text());
    }
    // A control character cannot even be sent in a header: the HTTP layer refuses it.
    assert_eq!(
        chat_with_ticket(gw, &alice, &body, Some("\u{7f}")).status,
        400
    );

    // The CLI lists and decides with the approver's credential.
    let r = chat_with_ticket(gw, &alice, &body, None);
    let id2 = r.json()["approval"]["id"].as_str().unwrap().to_string();
    let cli = |args: &[&str]| {
        std::process::Command::new(BIN)
            .args(args)
            .env("ZTAI_ADMIN_URL", format!("http://{admin}"))
            .env("ZTAI_ADMIN_TOKEN", &carol)
            .output()
            .unwrap()
    };
    let o = cli(&["approvals", "list"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains(&id2));
    let o = cli(&["approvals", "deny", &id2, "--reason", "no"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = cli(&["approvals", "approve", "not-a-ticket"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not an approval ticket id"));
    let r = chat_with_ticket(gw, &alice, &body, Some(&id2));
    assert_eq!(r.status, 403);
    assert!(
        r.text().contains("denied by user:carol: no"),
        "{}",
        r.text()
    );
}
