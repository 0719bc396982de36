//! End to end for the tamper-evident log: checkpoints signed by a running gateway, `ztai audit
//! verify | prove | verify-proof` on its data, tampering and truncation found by the CLI, and
//! `kill -9` under load losing no record of an answered request.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Runs the CLI; returns its exit code and standard output.
fn ztai(args: &[&str], dir: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn verify_proof(proof: &Path, key: &Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["audit", "verify-proof"])
        .arg(proof)
        .arg("--key")
        .arg(key)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn checkpoints_proofs_and_tampering_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let qs = up(dir.path());
    for i in 0..5 {
        let r = chat(
            qs.gateway,
            &qs.api_key,
            "echo-small",
            &format!("hi {i}"),
            false,
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = chat(
        qs.gateway,
        &qs.api_key,
        "echo-small",
        "mail bob@example.com",
        false,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = request(
        qs.admin,
        "GET",
        "/api/v1/audit?finding=email&action=invoke",
        Some(&qs.admin_token),
        "",
    );
    assert_eq!(
        r.json()["records"].as_array().unwrap().len(),
        1,
        "{}",
        r.text()
    );
    let r = request(
        qs.admin,
        "GET",
        "/api/v1/audit?since=yesterday",
        Some(&qs.admin_token),
        "",
    );
    assert_eq!(r.status, 422, "{}", r.text());

    // An administrator asks for a checkpoint now; others may not.
    let r = request(
        qs.admin,
        "POST",
        "/api/v1/audit/checkpoint",
        Some(&qs.api_key),
        "",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let r = request(
        qs.admin,
        "POST",
        "/api/v1/audit/checkpoint",
        Some(&qs.admin_token),
        "",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let signed = r.json();
    assert_eq!(signed["signed"], true);
    let note = signed["checkpoint"].as_str().unwrap().to_string();
    let published = std::fs::read_to_string(dir.path().join("audit-checkpoint.pub")).unwrap();
    assert_eq!(signed["verifier_key"].as_str().unwrap(), published.trim());
    let r = request(
        qs.admin,
        "GET",
        "/api/v1/audit/verify",
        Some(&qs.admin_token),
        "",
    );
    assert_eq!(r.json()["intact"], true, "{}", r.text());
    assert!(r.json()["checkpoints_checked"].as_u64().unwrap() >= 1);
    drop(qs);

    // Offline: the whole log verifies against its checkpoints.
    let (code, out) = ztai(&["audit", "verify", "--json"], dir.path());
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(report["signatures_checked"], true);
    assert!(report["checkpoints_checked"].as_u64().unwrap() >= 1);

    // Search and tail from the CLI.
    let (code, out) = ztai(
        &["audit", "search", "--finding", "pii", "--json"],
        dir.path(),
    );
    assert_eq!(code, 0, "{out}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert_eq!(lines[0]["findings"][0]["kind"], "email");
    assert!(lines[0]["seq"].as_u64().is_some());
    let (code, out) = ztai(
        &[
            "audit",
            "search",
            "--decision",
            "allow",
            "--since",
            "2000-01-01T00:00:00Z",
            "--until",
            "2000-01-02T00:00:00Z",
        ],
        dir.path(),
    );
    assert_eq!((code, out.as_str()), (0, ""), "nothing in that range");
    let (code, out) = ztai(&["audit", "tail", "-n", "3"], dir.path());
    assert_eq!(code, 0, "{out}");
    let seqs: Vec<u64> = out
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(seqs.len(), 3, "{out}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "oldest first: {out}");

    // A proof of record 2 verifies offline with only the key; an edited one does not.
    let (code, proof) = ztai(&["audit", "prove", "2"], dir.path());
    assert_eq!(code, 0, "{proof}");
    let proof_path = dir.path().join("proof.json");
    std::fs::write(&proof_path, &proof).unwrap();
    let key = dir.path().join("audit-checkpoint.pub");
    let (code, out) = verify_proof(&proof_path, &key);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("valid: record 2 is in the log"), "{out}");
    let mut forged: serde_json::Value = serde_json::from_str(&proof).unwrap();
    let record = forged["record"]
        .as_str()
        .unwrap()
        .replace("\"allow\"", "\"deny\"");
    forged["record"] = serde_json::Value::String(record);
    std::fs::write(&proof_path, forged.to_string()).unwrap();
    let (code, out) = verify_proof(&proof_path, &key);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("INVALID"), "{out}");

    // Keep the checkpoint elsewhere, then truncate the log and remove its checkpoints: the
    // database alone no longer shows it, the saved checkpoint does.
    let saved = dir.path().join("saved-checkpoint.txt");
    std::fs::write(&saved, &note).unwrap();
    let c = ztai_store::testing::RawSqlite::open(&dir.path().join("ztai.db")).unwrap();
    c.execute_batch("DELETE FROM audit_log WHERE seq > 3; DELETE FROM audit_checkpoints;")
        .unwrap();
    let (code, _) = ztai(&["audit", "verify"], dir.path());
    assert_eq!(
        code, 0,
        "truncation without a saved checkpoint is invisible"
    );
    let (code, out) = ztai(
        &["audit", "verify", "--checkpoint", saved.to_str().unwrap()],
        dir.path(),
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("were removed"), "{out}");

    // A modified record is named.
    c.execute(
        "UPDATE audit_log SET record_json = replace(record_json, 'allow', 'deny') WHERE seq = 2",
    )
    .unwrap();
    let (code, out) = ztai(&["audit", "verify"], dir.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("record 2 was modified"), "{out}");
}

#[test]
fn kill_9_under_load_loses_no_record_of_an_answered_request() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), "");
    let (key, gw, data) = (s.key.clone(), s.gw, s.data.clone());
    let mut gw_proc = s.gw_proc;
    let answered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (answered, stop, key) = (answered.clone(), stop.clone(), key.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    // A request cut off by the kill gets no answer and is not counted.
                    let r = std::panic::catch_unwind(|| {
                        chat(
                            gw,
                            &key,
                            "echo-small",
                            &format!("client {i} request {n}"),
                            false,
                        )
                    });
                    if let Ok(r) = r
                        && r.status == 200
                    {
                        answered.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    wait_until("some requests are answered", || {
        answered.load(Ordering::SeqCst) >= 2000
    });
    // SIGKILL mid-load: no shutdown hook runs.
    gw_proc.child.kill().unwrap();
    gw_proc.child.wait().unwrap();
    let answered_before_kill = answered.load(Ordering::SeqCst);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let total_answered = answered.load(Ordering::SeqCst);
    assert!(total_answered >= answered_before_kill);

    let (code, out) = ztai(&["audit", "verify", "--json"], &data);
    assert_eq!(code, 0, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let c = ztai_store::testing::RawSqlite::open(&data.join("ztai.db")).unwrap();
    let durable_answers = c
        .query_i64("SELECT COUNT(*) FROM audit_log WHERE action = 'invoke' AND json_extract(record_json, '$.status') = 200")
        .unwrap();
    let durable_answers = u64::try_from(durable_answers).unwrap();
    eprintln!("kill -9: {total_answered} answered, {durable_answers} durable records of answers");
    assert!(
        durable_answers >= total_answered,
        "{total_answered} answered but only {durable_answers} durable records of answers"
    );
    assert!(report["records"].as_u64().unwrap() >= durable_answers);
}

/// A small tmpfs for the data directory, unmounted on drop. Mounting needs root (as in CI);
/// without it the test fails and says so rather than passing untested.
struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill the disk and needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk {
            path: path.to_path_buf(),
        }
    }

    /// Writes a ballast file until the disk is full.
    fn fill(&self) {
        use std::io::Write;
        let mut f = std::fs::File::create(self.path.join("ballast")).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.path.join("ballast")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn a_full_disk_refuses_requests_raises_the_alert_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&dir.path().join("disk"), "6m");
    let qs = up(&disk.path);
    let ok = chat(qs.gateway, &qs.api_key, "echo-small", "before", false);
    assert_eq!(ok.status, 200, "{}", ok.text());

    disk.fill();
    // The WAL reuses space it already has, so appends fail once it must grow: keep asking.
    let mut refused = None;
    for i in 0..3000 {
        let r = chat(
            qs.gateway,
            &qs.api_key,
            "echo-small",
            &format!("while full {i} {}", "x".repeat(900)),
            false,
        );
        match r.status {
            200 | 429 => continue,
            503 => {
                eprintln!("full disk: request {i} refused");
                refused = Some(r);
                break;
            }
            other => panic!("unexpected status {other}: {}", r.text()),
        }
    }
    let refused = refused.expect("a full disk never refused a request");
    assert_eq!(
        refused.json()["error"]["code"],
        "audit_unavailable",
        "{}",
        refused.text()
    );
    assert!(metric(qs.admin, "ztai_audit_append_failures_total") >= 1.0);

    // Space returns: requests are served and recorded again, and the chain is whole.
    disk.free();
    wait_until("requests succeed again", || {
        chat(qs.gateway, &qs.api_key, "echo-small", "after", false).status == 200
    });
    drop(qs);
    let (code, out) = ztai(&["audit", "verify"], &disk.path);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn pseudonymised_users_are_linkable_but_not_named_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), "[audit]\npseudonymise = [\"user\"]\n");
    for _ in 0..3 {
        assert_eq!(chat(s.gw, &s.key, "echo-small", "hello", false).status, 200);
    }
    let r = request(
        s.admin,
        "GET",
        "/api/v1/audit?action=invoke",
        Some(&s.admin_token),
        "",
    );
    let records = r.json()["records"].as_array().unwrap().clone();
    assert_eq!(records.len(), 3, "{}", r.text());
    let principal = records[0]["principal"].as_str().unwrap().to_string();
    assert!(principal.starts_with("user:~"), "{principal}");
    assert!(
        records.iter().all(|r| r["principal"] == principal.as_str()),
        "linkable"
    );
    // The key holder can find a named user's records.
    let (code, out) = ztai(&["audit", "pseudonym", "user:demo"], &s.data);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.trim(), principal);
    // The real identifier is in no record this gateway made (read beside the running writer);
    // only the quick start, which ran before pseudonymisation was configured, named the user
    // when it issued their key.
    let c = ztai_store::testing::RawSqlite::open(&s.data.join("ztai.db")).unwrap();
    let named: i64 = c
        .query_i64("SELECT COUNT(*) FROM audit_log WHERE (principal LIKE '%demo%' OR record_json LIKE '%user:demo%')
               AND principal != 'service:ztai-up'")
        .unwrap();
    assert_eq!(named, 0);
    // Retention while the gateway runs: sign a head, prune everything it covers, keep serving.
    let r = request(
        s.admin,
        "POST",
        "/api/v1/audit/checkpoint",
        Some(&s.admin_token),
        "",
    );
    assert_eq!(r.json()["signed"], true, "{}", r.text());
    let (code, out) = ztai(
        &["audit", "prune", "--before", "2999-01-01T00:00:00Z"],
        &s.data,
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("pruned the content of records 1..="),
        "{out}"
    );
    assert_eq!(
        chat(s.gw, &s.key, "echo-small", "after pruning", false).status,
        200
    );
    let (code, out) = ztai(&["audit", "verify"], &s.data);
    assert_eq!(code, 0, "{out}");
    drop(s.gw_proc);
    // A key issued offline now is recorded the way the gateway records (the data directory
    // remembers what it pseudonymises); with the gateway running it is refused, so stop it.
    let out = Command::new(BIN)
        .args(["keys", "create", "--principal", "carol", "--data-dir"])
        .arg(&s.data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let carol: i64 = c
        .query_i64("SELECT COUNT(*) FROM audit_log WHERE record_json LIKE '%carol%'")
        .unwrap();
    assert_eq!(carol, 0, "the offline issue is pseudonymised too");
    let (code, out) = ztai(
        &["audit", "search", "--action", "admin::create_key", "--json"],
        &s.data,
    );
    assert_eq!(code, 0);
    assert!(out.contains("\"subject\":\"user:~"), "{out}");
}

#[test]
fn every_credential_issue_is_recorded_and_offline_issue_refuses_to_fork_a_served_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let issues = |data: &Path| -> Vec<serde_json::Value> {
        let (code, out) = ztai(
            &["audit", "search", "--action", "admin::create_key", "--json"],
            data,
        );
        assert_eq!(code, 0, "{out}");
        out.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // The quick start's bootstrap keys are issued on the record, once.
    let qs = up(&data);
    drop(qs);
    let first = issues(&data);
    assert_eq!(first.len(), 2, "{first:?}");
    let subjects: Vec<&str> = first
        .iter()
        .map(|r| r["credential"]["subject"].as_str().unwrap())
        .collect();
    assert!(
        subjects.contains(&"user:admin") && subjects.contains(&"user:demo"),
        "{subjects:?}"
    );
    assert!(first.iter().all(|r| r["principal"] == "service:ztai-up"));
    let qs = up(&data);
    drop(qs);
    assert_eq!(issues(&data).len(), 2, "reused keys are not issued again");

    // Offline issue, with no gateway running: recorded before the key exists.
    let out = Command::new(BIN)
        .args([
            "keys",
            "create",
            "--principal",
            "ops",
            "--groups",
            "admins",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = issues(&data);
    assert_eq!(all.len(), 3);
    let ops = all
        .iter()
        .find(|r| r["credential"]["subject"] == "user:ops")
        .unwrap();
    assert_eq!(ops["principal"], "service:ztai-cli");
    assert_eq!(ops["credential"]["groups"], serde_json::json!(["admins"]));
    let key_id = ops["credential"]["credential_id"].as_str().unwrap();
    let secret = String::from_utf8(out.stdout).unwrap();
    assert!(
        !ops.to_string().contains(secret.trim()),
        "the secret is never recorded"
    );
    assert!(
        secret.contains(key_id),
        "the record names the key that was printed"
    );

    // With a gateway serving the directory, an offline issue would fork the chain: refused.
    let s = Served::start(dir.path(), "");
    let out = Command::new(BIN)
        .args(["keys", "create", "--principal", "eve", "--data-dir"])
        .arg(&s.data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another process is writing this audit log"),
        "{err}"
    );
    let c = ztai_store::testing::RawSqlite::open(&s.data.join("ztai.db")).unwrap();
    let eves: i64 = c
        .query_i64("SELECT COUNT(*) FROM api_keys WHERE principal_id = 'eve'")
        .unwrap();
    assert_eq!(eves, 0, "no unrecorded key");
    drop(s);
    let (code, out) = ztai(&["audit", "verify"], &data);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn offline_commands_open_the_store_a_configuration_file_names() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("elsewhere");
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let config = dir.path().join("ztai.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n[storage]\ndata_dir = {:?}\n[policy]\ndir = {:?}\n[[upstreams]]\nname = \"u\"\nbase_url = \"http://127.0.0.1:9/v1\"\n[[models]]\nname = \"m\"\nupstream = \"u\"\ngroups = [\"g\"]\n",
            data.display().to_string(),
            policies.display().to_string()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cfg = config.to_str().unwrap();
    let (code, _, err) = run(&[
        "keys",
        "create",
        "--config",
        cfg,
        "--principal",
        "bob",
        "--groups",
        "g",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        data.join("ztai.db").is_file(),
        "the key went to the configured store"
    );
    let (code, out, err) = run(&["audit", "search", "--config", cfg, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"user:bob\""), "{out}");
    let (code, _, err) = run(&["audit", "verify", "--config", cfg]);
    assert_eq!(code, 0, "{err}");
    // Both at once is ambiguous: refused by the argument parser (exit 2), naming the conflict.
    let (code, _, err) = run(&[
        "audit",
        "verify",
        "--config",
        cfg,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--data-dir"), "{err}");
    // A configuration that cannot be read is named, and nothing is opened.
    let missing = dir.path().join("missing.toml");
    let (code, _, err) = run(&["audit", "verify", "--config", missing.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("missing.toml"), "{err}");
}
