//! Human approval end to end, through the real binary: a held request is released by an
//! entitled approver, refused on denial, on silence until the timeout, and when someone not
//! entitled (or the requester) tries to decide; tickets bind to one request and are spent once;
//! decisions are signed by the approver's registered key, countersigned by the gateway and
//! recorded, and unsigned, forged, misattributed or revoked-key decisions are refused; the
//! webhook hears of each new request.
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
use ztai_audit::checkpoint::{CheckpointSigner, CheckpointVerifier};
use ztai_core::DecisionStatement;

/// An approver: an API key, and a signing key registered for them.
struct Approver {
    key: String,
    signer: CheckpointSigner,
}

fn register_key(admin: SocketAddr, admin_token: &str, verifier_key: &str) -> common::Resp {
    request(
        admin,
        "POST",
        "/api/v1/approver-keys",
        Some(admin_token),
        &serde_json::json!({ "verifier_key": verifier_key, "label": "test" }).to_string(),
    )
}

fn approver(admin: SocketAddr, admin_token: &str, id: &str, groups: &[&str]) -> Approver {
    let key = create_key(admin, admin_token, id, groups);
    let (_, signer) = CheckpointSigner::generate(&format!("user:{id}")).unwrap();
    let r = register_key(admin, admin_token, &signer.verifier_key());
    assert_eq!(r.status, 201, "{}", r.text());
    Approver { key, signer }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The body of a decision on ticket `id` signed with `signer`, as `as_whom` (built from the
/// ticket as `credential` sees it).
#[allow(clippy::too_many_arguments)]
fn signed_body(
    admin: SocketAddr,
    credential: &str,
    signer: &CheckpointSigner,
    as_whom: &str,
    id: &str,
    approved: bool,
    reason: &str,
    at: i64,
) -> String {
    let t = request(
        admin,
        "GET",
        &format!("/api/v1/approvals/{id}"),
        Some(credential),
        "",
    )
    .json();
    let text = DecisionStatement {
        approval_id: id,
        approved,
        approver: as_whom,
        requester: t["requester"].as_str().unwrap_or_else(|| panic!("{t}")),
        resource: t["resource"].as_str().unwrap(),
        request_digest: t["request_digest"].as_str().unwrap(),
        decided_at: at,
        reason,
    }
    .text();
    serde_json::json!({"reason": reason, "decided_at": at, "signed_note": signer.sign_note(&text)})
        .to_string()
}

fn post_decision(admin: SocketAddr, key: &str, id: &str, verb: &str, body: &str) -> common::Resp {
    request(
        admin,
        "POST",
        &format!("/api/v1/approvals/{id}/{verb}"),
        Some(key),
        body,
    )
}

/// The pending tickets `key` may decide.
fn pending(admin: SocketAddr, key: &str) -> Vec<serde_json::Value> {
    let r = request(admin, "GET", "/api/v1/approvals", Some(key), "");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["approvals"].as_array().unwrap().clone()
}

/// A decision signed by the approver's own registered key.
fn decide(admin: SocketAddr, a: &Approver, id: &str, verb: &str, reason: &str) -> common::Resp {
    let body = signed_body(
        admin,
        &a.key,
        &a.signer,
        a.signer.key_ref().split('+').next().unwrap(),
        id,
        verb == "approve",
        reason,
        now(),
    );
    post_decision(admin, &a.key, id, verb, &body)
}

/// A decision with no signature.
fn unsigned(admin: SocketAddr, key: &str, id: &str, verb: &str) -> common::Resp {
    post_decision(admin, key, id, verb, r#"{"reason": ""}"#)
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
    let carol = approver(qs.admin, &qs.admin_token, "carol", &["approvers"]);
    let bob = create_key(qs.admin, &qs.admin_token, "bob", &["staff"]);
    let dave = approver(qs.admin, &qs.admin_token, "dave", &["staff", "approvers"]);
    // Registering approver keys is for administrators; agents never hold one.
    let (_, carols_second) = CheckpointSigner::generate("user:carol").unwrap();
    let r = register_key(qs.admin, &carol.key, &carols_second.verifier_key());
    assert_eq!(r.status, 403, "{}", r.text());
    let (_, agent_key) = CheckpointSigner::generate("agent:support-bot").unwrap();
    let r = register_key(qs.admin, &qs.admin_token, &agent_key.verifier_key());
    assert_eq!(r.status, 422, "{}", r.text());
    for junk in [
        "",
        "user:carol",
        "user:carol+00000000+AQ==",
        &"x".repeat(5000),
    ] {
        let r = register_key(qs.admin, &qs.admin_token, junk);
        assert_eq!(r.status, 422, "{junk:.40}: {}", r.text());
    }
    let r = register_key(qs.admin, &qs.admin_token, &carol.signer.verifier_key());
    assert_eq!(r.status, 409, "registered twice: {}", r.text());

    // Approved: the held caller gets its answer once carol approves.
    let (gw, key) = (qs.gateway, qs.api_key.clone());
    let held = std::thread::spawn(move || chat(gw, &key, "echo-sensitive", "release me", false));
    let mut tickets = Vec::new();
    wait_until("a pending approval", || {
        tickets = pending(qs.admin, &carol.key);
        !tickets.is_empty()
    });
    let t = &tickets[0];
    let id = t["id"].as_str().unwrap().to_string();
    assert_eq!(t["requester"], "user:demo");
    assert_eq!(t["summary"]["model"], "echo-sensitive");
    // Bob is staff, not an approver: he neither sees nor decides it.
    assert!(pending(qs.admin, &bob).is_empty());
    let r = unsigned(qs.admin, &bob, &id, "approve");
    assert_eq!(r.status, 403, "{}", r.text());
    // The requester cannot approve its own request either.
    let r = unsigned(qs.admin, &qs.api_key, &id, "approve");
    assert_eq!(r.status, 403, "{}", r.text());
    // Carol's bearer credential alone is not enough: the decision must carry her signature.
    let r = unsigned(qs.admin, &carol.key, &id, "approve");
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(
        r.text().contains("only decisions signed by the approver"),
        "{}",
        r.text()
    );
    // Someone else's key (dave's) does not sign for carol, even over the right statement.
    let forged = signed_body(
        qs.admin,
        &carol.key,
        &dave.signer,
        "user:carol",
        &id,
        true,
        "",
        now(),
    );
    let r = post_decision(qs.admin, &carol.key, &id, "approve", &forged);
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("does not verify"), "{}", r.text());
    // Carol's signature over a denial cannot be sent as an approval, nor a changed reason.
    let denial = signed_body(
        qs.admin,
        &carol.key,
        &carol.signer,
        "user:carol",
        &id,
        false,
        "no",
        now(),
    );
    let r = post_decision(qs.admin, &carol.key, &id, "approve", &denial);
    assert_eq!(r.status, 403, "{}", r.text());
    let mut altered: serde_json::Value = serde_json::from_str(&denial).unwrap();
    altered["reason"] = "yes".into();
    let r = post_decision(qs.admin, &carol.key, &id, "deny", &altered.to_string());
    assert_eq!(r.status, 403, "{}", r.text());
    // A time the ticket could not have been decided at is refused.
    let future = signed_body(
        qs.admin,
        &carol.key,
        &carol.signer,
        "user:carol",
        &id,
        true,
        "",
        now() + 3600,
    );
    let r = post_decision(qs.admin, &carol.key, &id, "approve", &future);
    assert_eq!(r.status, 422, "{}", r.text());
    // Hostile bodies are refused cleanly.
    for body in [
        r#"{"signed_note": "x"}"#.to_string(),
        serde_json::json!({"decided_at": now(), "signed_note": "\u{2014} x\n\n"}).to_string(),
        serde_json::json!({"decided_at": now(), "signed_note": "a".repeat(20_000)}).to_string(),
        r#"{"reason": 5}"#.to_string(),
        "\u{ff}".to_string(),
    ] {
        let r = post_decision(qs.admin, &carol.key, &id, "approve", &body);
        assert!(
            r.status == 422 || r.status == 403 || r.status == 400,
            "{body:.60}: {} {}",
            r.status,
            r.text()
        );
    }
    assert_eq!(
        pending(qs.admin, &carol.key).len(),
        1,
        "nothing was decided"
    );
    let r = decide(qs.admin, &carol, &id, "approve", "checked the prompt");
    assert_eq!(r.status, 200, "{}", r.text());
    let decision = r.json();
    assert_eq!(decision["approver_key"], carol.signer.key_ref().as_str());
    let answer = held.join().unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(answer.text().contains("release me"));
    // Decided once: a second decision is a conflict.
    assert_eq!(decide(qs.admin, &carol, &id, "deny", "").status, 409);
    // The stored decision verifies with carol's key and with the gateway's, over the same
    // statement, and neither verifies an altered one.
    let note = decision["signature"].as_str().unwrap();
    for vkey in [
        decision["verifier_key"].as_str().unwrap().to_string(),
        carol.signer.verifier_key(),
    ] {
        let verifier = CheckpointVerifier::parse(&vkey).unwrap();
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
    }
    let shown = request(
        qs.admin,
        "GET",
        &format!("/api/v1/approvals/{id}"),
        Some(&qs.admin_token),
        "",
    )
    .json();
    assert_eq!(shown["signature"], note);
    assert_eq!(shown["approver_key"], carol.signer.key_ref().as_str());

    // Dave is an approver, but not of his own request.
    let (gw, dkey) = (qs.gateway, dave.key.clone());
    let held = std::thread::spawn(move || chat(gw, &dkey, "echo-sensitive", "mine", false));
    let mut id2 = String::new();
    wait_until("dave's request to be held", || {
        let list = pending(qs.admin, &carol.key);
        if let Some(t) = list.iter().find(|t| t["requester"] == "user:dave") {
            id2 = t["id"].as_str().unwrap().to_string();
        }
        !id2.is_empty()
    });
    assert!(
        pending(qs.admin, &dave.key)
            .iter()
            .all(|t| t["id"] != id2.as_str())
    );
    let r = unsigned(qs.admin, &dave.key, &id2, "approve");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        r.text().contains("cannot decide a request you made"),
        "{}",
        r.text()
    );
    // A revoked key signs nothing more: carol's decision is refused until a new key is
    // registered.
    let r = request(
        qs.admin,
        "DELETE",
        &format!("/api/v1/approver-keys/{}", carol.signer.key_ref()),
        Some(&qs.admin_token),
        "",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = decide(qs.admin, &carol, &id2, "deny", "not today");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("no active signing key"), "{}", r.text());
    let (_, fresh) = CheckpointSigner::generate("user:carol").unwrap();
    assert_eq!(
        register_key(qs.admin, &qs.admin_token, &fresh.verifier_key()).status,
        201
    );
    let carol = Approver {
        key: carol.key,
        signer: fresh,
    };
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
    // The approval's record names the key and commits to the signed note.
    let approved = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["action"] == "approvals::approve" && x["status"] == 200)
        .unwrap();
    assert!(
        approved["reason"]
            .as_str()
            .unwrap()
            .starts_with("approved by user:carol (signed with user:carol+"),
        "{approved}"
    );
    assert_eq!(
        approved["response_digest"].as_str().unwrap(),
        hex::encode(ring::digest::digest(&ring::digest::SHA256, note.as_bytes()))
    );
    let registered = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["action"] == "admin::register_approver_key" && x["status"] == 201)
        .unwrap();
    assert_eq!(
        registered["credential"]["operation"], "issue",
        "{registered}"
    );
    for expected in [
        "approvals::deny 200",
        "approvals::approve 422",
        "admin::register_approver_key 201",
        "admin::register_approver_key 403",
        "admin::revoke_approver_key 200",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected}: {actions:?}"
        );
    }
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
    let root = key("root", "admins");
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[storage]
data_dir = "data"

[approvals]
mode = "ticket"
webhook_url = "http://127.0.0.1:{hook_port}/hook"
signed_decisions = "optional"

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

    // Signatures are optional here: an unsigned decision is signed by the gateway alone.
    let r = unsigned(admin, &carol, &id, "approve");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["approver_key"].is_null());
    let gateway_key =
        CheckpointVerifier::parse(r.json()["verifier_key"].as_str().unwrap()).unwrap();
    assert!(
        gateway_key
            .verify_note(r.json()["signature"].as_str().unwrap())
            .is_ok()
    );
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

    // The CLI: carol makes a key, an administrator registers it, carol lists and decides
    // with her credential and her key.
    let r = chat_with_ticket(gw, &alice, &body, None);
    let id2 = r.json()["approval"]["id"].as_str().unwrap().to_string();
    let cli = |token: &str, args: &[&str]| {
        std::process::Command::new(BIN)
            .args(args)
            .env("ZTAI_ADMIN_URL", format!("http://{admin}"))
            .env("ZTAI_ADMIN_TOKEN", token)
            .env_remove("ZTAI_APPROVER_KEY")
            .output()
            .unwrap()
    };
    let stdout = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).to_string();
    let carol_key = dir.path().join("carol.key");
    let key_arg = carol_key.to_str().unwrap();
    let o = cli(
        &carol,
        &[
            "approvals",
            "keygen",
            "--principal",
            "agent:x",
            "--out",
            key_arg,
        ],
    );
    assert!(!o.status.success(), "an agent got an approver key");
    let o = cli(
        &carol,
        &[
            "approvals",
            "keygen",
            "--principal",
            "user:carol",
            "--out",
            key_arg,
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let made: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let key_id = made["key_id"].as_str().unwrap().to_string();
    let o = cli(
        &carol,
        &[
            "approvals",
            "keygen",
            "--principal",
            "user:carol",
            "--out",
            key_arg,
        ],
    );
    assert!(!o.status.success(), "a key was overwritten");
    // Signed with a key nobody registered yet: refused, even though signatures are optional.
    let o = cli(&carol, &["approvals", "deny", &id2, "--key", key_arg]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no active signing key"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let pub_file = format!("{key_arg}.pub");
    let o = cli(&carol, &["approvals", "register-key", &pub_file]);
    assert!(!o.status.success(), "carol registered her own key");
    let o = cli(
        &root,
        &[
            "approvals",
            "register-key",
            &pub_file,
            "--label",
            "carol's laptop",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = cli(&root, &["approvals", "keys", "--principal", "user:carol"]);
    assert!(
        stdout(&o).contains(&key_id) && stdout(&o).contains("active"),
        "{}",
        stdout(&o)
    );
    let o = cli(&carol, &["approvals", "list"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains(&id2));
    let o = cli(
        &carol,
        &[
            "approvals",
            "deny",
            &id2,
            "--reason",
            "no",
            "--key",
            key_arg,
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout(&o).contains(&format!("signed with {key_id}")),
        "{}",
        stdout(&o)
    );
    let o = cli(&carol, &["approvals", "show", &id2]);
    let shown: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let carol_v =
        CheckpointVerifier::parse(std::fs::read_to_string(&pub_file).unwrap().trim()).unwrap();
    assert!(
        carol_v
            .verify_note(shown["signature"].as_str().unwrap())
            .unwrap()
            .contains("decision denied\napprover user:carol\n")
    );
    let o = cli(&root, &["approvals", "revoke-key", &key_id]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = cli(&root, &["approvals", "keys"]);
    assert!(stdout(&o).contains("revoked"), "{}", stdout(&o));
    let o = cli(&root, &["approvals", "revoke-key", "../../etc"]);
    assert_eq!(o.status.code(), Some(2));
    let o = cli(&carol, &["approvals", "approve", "not-a-ticket"]);
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
