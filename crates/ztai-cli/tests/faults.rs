//! Hostile clients and broken upstreams, against `ztai serve` with a configuration file: every
//! case gets a clear error, the gateway never panics and keeps serving.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

struct Setup {
    _dir: tempfile::TempDir,
    _standin: Proc,
    _gw: Proc,
    gw: SocketAddr,
    admin: SocketAddr,
    key: String,
    data: std::path::PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (standin_proc, standin_url) = standin();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    for f in ["models.cedar", "inspection.cedar", "admin.cedar"] {
        std::fs::copy(
            format!("{}/../../policies/{f}", env!("CARGO_MANIFEST_DIR")),
            policies.join(f),
        )
        .unwrap();
    }
    let data = dir.path().join("data");
    let out = std::process::Command::new(BIN)
        .args([
            "keys",
            "create",
            "--principal",
            "tester",
            "--groups",
            "staff,admins",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let mut models = String::new();
    for (name, upstream_model) in [
        ("ok", "standin-echo"),
        ("fault-500", "fault-500"),
        ("fault-slow", "fault-slow"),
        ("fault-bad-sse", "fault-bad-sse"),
        ("fault-stall", "fault-stall"),
        ("fault-garbage", "fault-garbage"),
    ] {
        models.push_str(&format!(
            "[[models]]\nname = \"{name}\"\nupstream = \"standin\"\nupstream_model = \"{upstream_model}\"\ngroups = [\"standard\"]\n\n"
        ));
    }
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
header_read_timeout_ms = 700
body_read_timeout_ms = 2000
max_body_bytes = 1048576

[storage]
data_dir = "data"

[[upstreams]]
name = "standin"
base_url = "{standin_url}"
first_byte_timeout_ms = 1500
idle_timeout_ms = 1500

[[upstreams]]
name = "down"
base_url = "http://127.0.0.1:{closed}/v1"
connect_timeout_ms = 500

{models}
[[models]]
name = "down"
upstream = "down"
groups = ["standard"]
"#
    );
    let (gw_proc, gw, admin) = serve(dir.path(), &config);
    Setup {
        data,
        _dir: dir,
        _standin: standin_proc,
        _gw: gw_proc,
        gw,
        admin,
        key,
    }
}

fn post_raw(addr: SocketAddr, key: &str, body: &[u8]) -> Resp {
    let mut req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw(addr, &req)
}

#[test]
fn malformed_requests_get_clear_errors() {
    let s = setup();
    let cases: &[(&[u8], u16, &str)] = &[
        (
            b"{\"model\": \"ok\", \"messages\": [",
            400,
            "malformed_request",
        ),
        (b"\xff\xfe\xfd not utf-8", 400, "malformed_request"),
        (br#"{"model":"ok"}"#, 422, "invalid_request"),
        (
            br#"{"model":"ok","messages":[{"role":"user","content":{"x":1}}]}"#,
            422,
            "invalid_request",
        ),
        (
            br#"{"model":["ok"],"messages":[{"role":"user","content":"hi"}]}"#,
            422,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let r = post_raw(s.gw, &s.key, body);
        assert_eq!(r.status, *status, "{}", r.text());
        assert_eq!(r.json()["error"]["code"], *code);
    }
    // Non-UTF-8 credentials are refused, not crashed on.
    let r = raw(s.gw, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
    assert_eq!(r.status, 401);
    // Unknown paths answer in the OpenAI error shape.
    assert_eq!(
        request(s.gw, "GET", "/v1/nope", Some(&s.key), "").json()["error"]["code"],
        "not_found"
    );
    // Still serving.
    assert_eq!(chat(s.gw, &s.key, "ok", "still here", false).status, 200);
}

#[test]
fn a_100_mib_body_is_refused_without_being_read() {
    let s = setup();
    let mut c = TcpStream::connect(s.gw).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        s.key,
        100 * 1024 * 1024
    );
    c.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'a'; 1024 * 1024];
    // The server answers and closes long before 100 MiB are sent; a write error is expected.
    for _ in 0..100 {
        if c.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    let r = parse_response(&buf);
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["error"]["code"], "request_too_large");
    // Chunked bodies without a length are cut off at the limit too.
    let mut c = TcpStream::connect(s.gw).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        s.key
    );
    c.write_all(head.as_bytes()).unwrap();
    for _ in 0..4 {
        let _ = c.write_all(format!("{:x}\r\n", chunk.len()).as_bytes());
        if c.write_all(&chunk).is_err() || c.write_all(b"\r\n").is_err() {
            break;
        }
    }
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    assert_eq!(parse_response(&buf).status, 413);
}

#[test]
fn oversized_headers_and_slow_loris_clients_are_cut_off() {
    let s = setup();
    let big = "a".repeat(64 * 1024);
    let r = raw(
        s.gw,
        format!("GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 431);
    // Send half a request head and stall: the server closes the connection after its header
    // timeout instead of holding it open.
    let mut c = TcpStream::connect(s.gw).unwrap();
    c.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    let n = c.read_to_end(&mut buf);
    assert!(
        n.is_ok(),
        "the server must close the stalled connection: {n:?}"
    );
    // A client that sends its head but trickles the body gets 408.
    let mut c = TcpStream::connect(s.gw).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 100\r\n\r\n{{",
        s.key
    );
    c.write_all(head.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    assert_eq!(parse_response(&buf).status, 408);
    assert_eq!(chat(s.gw, &s.key, "ok", "still here", false).status, 200);
}

#[test]
fn broken_upstreams_map_to_502_and_504() {
    let s = setup();
    let cases = [
        ("fault-500", 502, "upstream_failed"),
        ("fault-garbage", 502, "upstream_failed"),
        ("down", 502, "upstream_failed"),
        ("fault-slow", 504, "upstream_timeout"),
    ];
    for (model, status, code) in cases {
        let r = chat(s.gw, &s.key, model, "hi", false);
        assert_eq!(r.status, status, "{model}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], code, "{model}");
    }
    assert!(
        chat(s.gw, &s.key, "down", "hi", false)
            .text()
            .contains("unreachable")
    );
    // Streams that break end with an error event and no [DONE].
    for model in ["fault-bad-sse", "fault-stall"] {
        let r = chat(s.gw, &s.key, model, "a streamed answer that breaks", true);
        assert_eq!(r.status, 200);
        let (_, done, error) = sse_text(&r.text());
        assert!(!done, "{model}");
        let error = error.unwrap_or_else(|| panic!("{model}: no error event in {}", r.text()));
        assert!(
            error["error"]["code"]
                .as_str()
                .unwrap()
                .starts_with("upstream_"),
            "{error}"
        );
    }
    assert!(metric(s.admin, "ztai_failures_total{component=\"upstream\"}") >= 6.0);
    assert_eq!(chat(s.gw, &s.key, "ok", "still here", false).status, 200);
}

#[test]
fn a_client_that_disconnects_mid_stream_releases_everything_and_is_recorded() {
    let s = setup();
    let mut c = TcpStream::connect(s.gw).unwrap();
    let body = serde_json::json!({"model": "fault-stall", "stream": true, "messages": [{"role": "user", "content": "x".repeat(600)}]}).to_string();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        s.key,
        body.len()
    );
    c.write_all(req.as_bytes()).unwrap();
    let mut first = [0u8; 64];
    c.read_exact(&mut first).unwrap();
    wait_until("the stream to be active", || {
        metric(s.admin, "ztai_streams_active") >= 1.0
    });
    drop(c);
    wait_until("the stream to be released", || {
        metric(s.admin, "ztai_streams_active") == 0.0
    });
    let records = request(s.admin, "GET", "/api/v1/audit?limit=5", Some(&s.key), "").json();
    let statuses: Vec<u64> = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert!(
        statuses.contains(&499) || statuses.contains(&504),
        "{statuses:?}"
    );
}

#[test]
fn when_the_audit_log_fails_requests_are_refused_and_then_recover() {
    let s = setup();
    assert_eq!(chat(s.gw, &s.key, "ok", "before", false).status, 200);
    let db = s.data.join("ztai.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("ALTER TABLE audit_log RENAME TO audit_log_away")
        .unwrap();
    let r = chat(s.gw, &s.key, "ok", "unrecordable", false);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "audit_unavailable");
    assert!(!r.text().contains("unrecordable"), "the answer is withheld");
    // A stream is refused before its first byte, not cut off after it.
    let r = chat(s.gw, &s.key, "ok", "unrecordable stream", true);
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(!r.text().contains("unrecordable"));
    assert!(metric(s.admin, "ztai_failures_total{component=\"audit\"}") >= 1.0);
    conn.execute_batch("ALTER TABLE audit_log_away RENAME TO audit_log")
        .unwrap();
    assert_eq!(chat(s.gw, &s.key, "ok", "after", false).status, 200);
    // A stream leaves an "opened" record before its first byte and a final one at its end.
    let r = chat(s.gw, &s.key, "ok", "streamed and recorded", true);
    let id = r.header("x-request-id").unwrap().to_string();
    let records = request(s.admin, "GET", "/api/v1/audit?limit=10", Some(&s.key), "").json();
    let mine: Vec<&serde_json::Value> = records["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["id"] == id.as_str())
        .collect();
    assert_eq!(mine.len(), 2, "{records}");
    assert!(
        mine.iter()
            .any(|r| r["reason"].as_str().unwrap().contains("stream opened"))
    );
    // The chain stayed whole through the failure.
    let v = request(s.admin, "GET", "/api/v1/audit/verify", Some(&s.key), "").json();
    assert_eq!(v["intact"], true, "{v}");
}

#[test]
fn tampering_with_a_record_is_detected_and_named() {
    let s = setup();
    for i in 0..4 {
        assert_eq!(
            chat(s.gw, &s.key, "ok", &format!("m{i}"), false).status,
            200
        );
    }
    let db = s.data.join("ztai.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE audit_log SET record_json = replace(record_json, '\"status\":200', '\"status\":201') WHERE seq = 2", []).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(&s.data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("record 2 was modified"), "{text}");
    // Deleting a record in the middle is named too. (Cutting records off the end needs signed
    // checkpoints to detect; that is the audit issue's work.)
    conn.execute("DELETE FROM audit_log WHERE seq = 3", [])
        .unwrap();
    let out = std::process::Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(&s.data)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("missing") || text.contains("does not link"),
        "{text}"
    );
}

#[test]
fn config_errors_name_the_key_and_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ztai.toml");
    std::fs::write(&path, "[[upstreams]]\nname = \"u\"\nbase_url = \"http://127.0.0.1:1/v1\"\napi_key = \"sk-literal\"\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("upstreams[0].api_key"), "{err}");
    assert!(!err.contains("sk-literal"), "the key is not echoed");
}
