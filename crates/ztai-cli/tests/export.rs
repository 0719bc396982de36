//! End to end for SIEM export, against real receivers: rsyslog from Debian's packages over TCP
//! and TLS (RFC 5424, octet-counted framing), a Splunk-HEC-style HTTP receiver that fails first,
//! a receiver that never answers, rotated JSONL files; delivery at least once across outages and a
//! `kill -9` of the gateway, alerts while a sink falls behind, and overflow on the record.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

fn ztai_out(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The sequence number of the log's last record, read through the CLI.
fn head(data: &Path) -> i64 {
    let (code, out) = ztai_out(&[
        "audit",
        "cursors",
        "--json",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["head"]
        .as_i64()
        .unwrap()
}

fn cursor(data: &Path, sink: &str) -> Option<i64> {
    let (_, out) = ztai_out(&[
        "audit",
        "cursors",
        "--json",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    v["sinks"]
        .as_array()?
        .iter()
        .find(|s| s["sink"] == sink)
        .and_then(|s| s["cursor"].as_i64())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Some allowed and some refused (bad credential) requests, so the log holds both decisions.
fn traffic(s: &Served, n: usize) {
    for i in 0..n {
        if i % 4 == 3 {
            assert_eq!(
                chat(s.gw, "sk-ztai-wrong", "echo-small", "hi", false).status,
                401
            );
        } else {
            let r = chat(s.gw, &s.key, "echo-small", &format!("hello {i}"), false);
            assert_eq!(r.status, 200, "{}", r.text());
        }
    }
}

// ---- rsyslog ------------------------------------------------------------------------------------

struct Rsyslog {
    child: std::process::Child,
    out: PathBuf,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rsyslogd() -> &'static str {
    let path = "/usr/sbin/rsyslogd";
    assert!(
        Path::new(path).exists(),
        "rsyslogd is missing: install Debian's rsyslog and rsyslog-gnutls (scripts/test does)"
    );
    path
}

/// Starts rsyslogd listening on `port` (TLS when `tls` names the CA, cert and key) and writing
/// every message's parsed RFC 5424 fields to a file, one line each.
fn start_rsyslog(dir: &Path, name: &str, port: u16, tls: Option<(&Path, &Path, &Path)>) -> Rsyslog {
    let work = dir.join(format!("{name}-work"));
    std::fs::create_dir_all(&work).unwrap();
    let out = dir.join(format!("{name}.out"));
    let (global, module) = match tls {
        None => (String::new(), "module(load=\"imtcp\")".to_string()),
        Some((ca, cert, key)) => (
            format!(
                "DefaultNetstreamDriver=\"gtls\" DefaultNetstreamDriverCAFile=\"{}\" DefaultNetstreamDriverCertFile=\"{}\" DefaultNetstreamDriverKeyFile=\"{}\"",
                ca.display(),
                cert.display(),
                key.display()
            ),
            "module(load=\"imtcp\" StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")".to_string(),
        ),
    };
    let conf = format!(
        r#"global(workDirectory="{work}" {global})
{module}
template(name="fields" type="string" string="%hostname%|%app-name%|%msgid%|%pri%|%structured-data%|%msg%\n")
input(type="imtcp" port="{port}" ruleset="out")
ruleset(name="out") {{ action(type="omfile" file="{out}" template="fields") }}
"#,
        work = work.display(),
        out = out.display(),
    );
    let conf_path = dir.join(format!("{name}.conf"));
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(rsyslogd())
        .arg("-n")
        .arg("-f")
        .arg(&conf_path)
        .arg("-i")
        .arg(dir.join(format!("{name}.pid")))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Listening once a connection is accepted.
    wait_until(&format!("rsyslog `{name}` to listen"), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    Rsyslog { child, out }
}

/// A CA and a server certificate for `localhost`/127.0.0.1 signed by it, made with openssl.
fn make_pki(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let p = |f: &str| dir.join(format!("{name}-{f}"));
    let run = |args: &[&str]| {
        let o = Command::new("openssl").args(args).output().unwrap();
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let (ca_key, ca, key, csr, cert, ext) = (
        p("ca.key"),
        p("ca.pem"),
        p("server.key"),
        p("server.csr"),
        p("server.pem"),
        p("ext.cnf"),
    );
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={name} test CA"),
        "-keyout",
        &s(&ca_key),
        "-out",
        &s(&ca),
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &s(&key),
        "-out",
        &s(&csr),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &s(&csr),
        "-CA",
        &s(&ca),
        "-CAkey",
        &s(&ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &s(&ext),
        "-out",
        &s(&cert),
    ]);
    (ca, cert, key)
}

/// Parsed record lines of an rsyslog output file: (hostname, app, msgid, pri, structured data,
/// msg); signed checkpoints (msgid `checkpoint`) are left out.
fn received(out: &Path) -> Vec<[String; 6]> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let parts: Vec<&str> = l.splitn(6, '|').collect();
            assert_eq!(parts.len(), 6, "{l}");
            std::array::from_fn(|i| parts[i].to_string())
        })
        .filter(|l: &[String; 6]| l[2] != "checkpoint")
        .collect()
}

fn sd_seq(sd: &str) -> i64 {
    let start = sd.find("seq=\"").unwrap() + 5;
    sd[start..].split('"').next().unwrap().parse().unwrap()
}

#[test]
fn syslog_over_tcp_and_tls_reaches_rsyslog_and_an_untrusted_receiver_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (tcp_port, tls_port, rogue_port) = (free_port(), free_port(), free_port());
    let (ca, cert, key) = make_pki(dir.path(), "good");
    let (_, rogue_cert, rogue_key) = make_pki(dir.path(), "rogue");
    let tcp = start_rsyslog(dir.path(), "tcp", tcp_port, None);
    let tls = start_rsyslog(dir.path(), "tls", tls_port, Some((&ca, &cert, &key)));
    // A receiver whose certificate our CA did not sign: a man in the middle.
    let rogue = start_rsyslog(
        dir.path(),
        "rogue",
        rogue_port,
        Some((&ca, &rogue_cert, &rogue_key)),
    );
    let extra = format!(
        r#"
[[audit.export]]
name = "rsyslog-tcp"
kind = "syslog"
address = "127.0.0.1:{tcp_port}"
hostname = "gw-east-1"
batch = 7
poll_ms = 50

[[audit.export]]
name = "rsyslog-tls"
kind = "syslog"
format = "ocsf"
address = "127.0.0.1:{tls_port}"
tls = true
server_name = "localhost"
ca_file = "{ca}"
poll_ms = 50

[[audit.export]]
name = "rogue"
kind = "syslog"
address = "127.0.0.1:{rogue_port}"
tls = true
server_name = "localhost"
ca_file = "{ca}"
poll_ms = 50
backoff_min_ms = 20
backoff_max_ms = 100
"#,
        ca = ca.display()
    );
    let s = Served::start(dir.path(), &extra);
    traffic(&s, 24);
    // Issuing a credential is an OCSF Authorize Session event.
    create_key(s.admin, &s.admin_token, "report-bot", &["standard"]);
    let head = head(&s.data);
    assert!(head >= 25);
    wait_until("rsyslog to receive every record over TCP and TLS", || {
        received(&tcp.out).len() as i64 >= head && received(&tls.out).len() as i64 >= head
    });

    // TCP, CEF: rsyslog parsed our RFC 5424 header and structured data field by field.
    let lines = received(&tcp.out);
    let seqs: BTreeSet<i64> = lines.iter().map(|l| sd_seq(&l[4])).collect();
    assert_eq!(
        seqs,
        (1..=head).collect(),
        "every record, none twice over one healthy connection"
    );
    assert_eq!(lines.len() as i64, head);
    let mut denials = 0;
    for [host, app, msgid, pri, sd, msg] in &lines {
        assert_eq!(host, "gw-east-1");
        assert_eq!(app, "ztai");
        assert_eq!(msgid, "audit");
        assert!(sd.starts_with("[ztai@32473 seq=\""), "{sd}");
        assert!(msg.starts_with("CEF:0|ZTAI|ZTAI Gateway|"), "{msg}");
        if msg.contains("act=deny") {
            denials += 1;
            assert_eq!(pri, "108", "facility 13 (log audit), severity warning");
            assert!(msg.contains("suser=anonymous"), "{msg}");
        }
    }
    assert!(denials >= 6, "the refused requests are there: {denials}");

    // TLS, OCSF: each message is a whole OCSF event.
    let lines = received(&tls.out);
    let seqs: BTreeSet<i64> = lines.iter().map(|l| sd_seq(&l[4])).collect();
    assert_eq!(seqs, (1..=head).collect());
    let mut issued = 0;
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l[5].trim()).unwrap();
        assert!(v["class_uid"] == 6003 || v["class_uid"] == 3003, "{v}");
        assert_eq!(v["metadata"]["sequence"].as_i64().unwrap(), sd_seq(&l[4]));
        if v["class_uid"] == 3003 && v["user"]["uid"] == "user:report-bot" {
            issued += 1;
            assert_eq!(v["privileges"][1], "group:standard", "{v}");
            assert_eq!(
                v["src_endpoint"]["ip"], "127.0.0.1",
                "the caller's address is recorded"
            );
        }
    }
    assert_eq!(issued, 1, "the key issued above, once");

    // The receiver with a certificate we do not trust got nothing, and it shows.
    assert!(received(&rogue.out).is_empty());
    wait_until("the rogue sink's failures to count", || {
        metric(s.admin, "ztai_export_failures_total{sink=\"rogue\"}") >= 2.0
    });
    assert_eq!(
        metric(
            s.admin,
            "ztai_export_delivered_records_total{sink=\"rogue\"}"
        ),
        0.0
    );
    assert_eq!(
        cursor(&s.data, "rogue"),
        None,
        "no cursor: nothing was delivered"
    );
    assert_eq!(cursor(&s.data, "rsyslog-tcp"), Some(head));
    drop((tcp, tls, rogue));
}

// ---- HEC-style webhook --------------------------------------------------------------------------

#[derive(Default)]
struct Hec {
    /// Requests answered so far.
    requests: usize,
    /// Answer 503 to the first this many requests.
    fail_first: usize,
    seqs: Vec<i64>,
    /// Signed checkpoint notes received.
    notes: Vec<String>,
    bad_auth: usize,
    events: Vec<serde_json::Value>,
}

/// A Splunk-HEC-style receiver: checks the token, parses the batch, answers like HEC.
fn serve_hec(listener: TcpListener, token: String, state: Arc<Mutex<Hec>>) {
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let state = state.clone();
            let token = token.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0usize;
                    let mut auth = String::new();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap();
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse().unwrap(),
                            "authorization" => auth = v.trim().to_string(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0u8; len];
                    reader.read_exact(&mut body).unwrap();
                    let (status, answer) = {
                        let mut st = state.lock().unwrap();
                        st.requests += 1;
                        if auth != format!("Splunk {token}") {
                            st.bad_auth += 1;
                            ("401 Unauthorized", r#"{"text":"Invalid token","code":4}"#)
                        } else if st.requests <= st.fail_first {
                            (
                                "503 Service Unavailable",
                                r#"{"text":"Server is busy","code":9}"#,
                            )
                        } else {
                            for line in String::from_utf8(body).unwrap().lines() {
                                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                                if v["fields"]["checkpoint"].is_i64() {
                                    let note =
                                        &v["event"]["unmapped"]["ztai"]["checkpoint"]["note"];
                                    st.notes.push(note.as_str().unwrap().to_string());
                                    continue;
                                }
                                st.seqs.push(v["fields"]["seq"].as_i64().unwrap());
                                st.events.push(v);
                            }
                            ("200 OK", r#"{"text":"Success","code":0}"#)
                        }
                    };
                    let _ = write!(
                        conn,
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
                        answer.len()
                    );
                }
            });
        }
    });
}

#[test]
fn a_dead_or_silent_sink_never_blocks_requests_alerts_and_catches_up_at_least_once() {
    let dir = tempfile::tempdir().unwrap();
    let hec_port = free_port();
    let token = "3f1e2d4c-hec-token";
    std::fs::write(dir.path().join("hec.token"), format!("{token}\n")).unwrap();
    // Accepts connections and never reads or answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming() {
            held.push(c);
        }
    });
    let extra = format!(
        r#"
[[audit.export]]
name = "hec"
kind = "webhook"
url = "http://127.0.0.1:{hec_port}/services/collector/event"
token_file = "hec.token"
index = "ai_audit"
batch = 10
poll_ms = 50
backoff_min_ms = 50
backoff_max_ms = 400
alert_backlog = 5

[[audit.export]]
name = "silent"
kind = "webhook"
url = "http://{silent_addr}/services/collector/event"
timeout_ms = 300
poll_ms = 50
backoff_min_ms = 50
backoff_max_ms = 200

[[audit.export]]
name = "tiny"
kind = "syslog"
address = "127.0.0.1:{dead}"
poll_ms = 50
backoff_min_ms = 50
backoff_max_ms = 100
alert_backlog = 2
max_backlog = 10
"#,
        dead = free_port()
    );
    let mut s = Served::start(dir.path(), &extra);
    // Nothing listens for `hec` yet: requests are answered all the same.
    traffic(&s, 24);
    wait_until("the hec backlog alert", || {
        metric(s.admin, "ztai_export_backlog_alert{sink=\"hec\"}") == 1.0
            && metric(s.admin, "ztai_export_failures_total{sink=\"hec\"}") >= 1.0
    });
    // The exporter counts its backlog when it polls, which may be before the last of the 24
    // records was committed: wait for it rather than read it once.
    wait_until("the hec backlog to count every record", || {
        metric(s.admin, "ztai_export_backlog_records{sink=\"hec\"}") >= 24.0
    });
    wait_until("the silent sink to time out", || {
        metric(s.admin, "ztai_export_failures_total{sink=\"silent\"}") >= 1.0
    });
    // The dead `tiny` sink passed max_backlog: it skipped the oldest records and said so.
    wait_until("tiny to overflow", || {
        metric(
            s.admin,
            "ztai_export_skipped_records_total{sink=\"tiny\",reason=\"overflow\"}",
        ) >= 1.0
    });

    // The receiver comes up, fails twice more, then accepts.
    let state = Arc::new(Mutex::new(Hec {
        fail_first: 2,
        ..Hec::default()
    }));
    serve_hec(
        TcpListener::bind(("127.0.0.1", hec_port)).unwrap(),
        token.into(),
        state.clone(),
    );
    let first_head = head(&s.data);
    wait_until("hec to catch up", || {
        cursor(&s.data, "hec") == Some(first_head)
    });
    // kill -9 the gateway, serve more, restart: the persisted cursor resumes delivery.
    s.restart(dir.path());
    traffic(&s, 12);
    let final_head = head(&s.data);
    wait_until("hec to catch up after the restart", || {
        cursor(&s.data, "hec").is_some_and(|c| c >= final_head)
    });
    wait_until("the alert to clear", || {
        metric(s.admin, "ztai_export_backlog_alert{sink=\"hec\"}") == 0.0
    });
    let st = state.lock().unwrap();
    assert_eq!(st.bad_auth, 0, "the token from token_file was sent");
    let got: BTreeSet<i64> = st.seqs.iter().copied().collect();
    let all: BTreeSet<i64> = (1..=final_head).collect();
    assert!(
        all.is_subset(&got),
        "lost: {:?}",
        all.difference(&got).collect::<Vec<_>>()
    );
    for e in &st.events {
        assert_eq!(e["index"], "ai_audit");
        assert_eq!(e["source"], "ztai");
        assert!(
            e["sourcetype"].as_str().unwrap().starts_with("ocsf:"),
            "{e}"
        );
        assert_eq!(e["event"]["metadata"]["sequence"], e["fields"]["seq"]);
    }
    drop(st);
    // The overflow is itself an audit record, naming the range to replay.
    let (code, out) = ztai_out(&[
        "audit",
        "search",
        "--action",
        "audit_export_overflow",
        "--json",
        "--data-dir",
        s.data.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    // Newest first; the oldest names the first range, from record 1.
    let recs: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let first = recs.last().expect("an overflow record");
    assert!(
        first["reason"]
            .as_str()
            .unwrap()
            .contains("sink `tiny` skipped audit records 1..="),
        "{first}"
    );
    assert!(recs.iter().all(|r| r["resource"] == "Sink::\"tiny\""));
    assert!(
        recs.len() < 10,
        "overflow records do not feed further overflows: {}",
        recs.len()
    );
}

// ---- rotated files and offline export -------------------------------------------------------------

#[test]
fn rotated_jsonl_files_hold_the_newest_records_and_the_cli_replays_any_range() {
    let dir = tempfile::tempdir().unwrap();
    let extra = r#"
[[audit.export]]
name = "files"
kind = "file"
path = "export/audit.jsonl"
rotate_bytes = 8192
keep = 2
batch = 3
poll_ms = 50
"#;
    let mut s = Served::start(dir.path(), extra);
    traffic(&s, 40);
    let head = head(&s.data);
    wait_until("the file sink to catch up", || {
        cursor(&s.data, "files") == Some(head)
    });
    let base = dir.path().join("export/audit.jsonl");
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let files = [
        read(PathBuf::from(format!("{}.2", base.display()))),
        read(PathBuf::from(format!("{}.1", base.display()))),
        read(base.clone()),
    ];
    assert!(
        !PathBuf::from(format!("{}.3", base.display())).exists(),
        "keep = 2"
    );
    let mut seqs = Vec::new();
    for f in &files {
        assert!(!f.is_empty() && f.len() <= 8192, "{} bytes", f.len());
        for line in f.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["metadata"]["version"], "1.3.0");
            seqs.push(v["metadata"]["sequence"].as_i64().unwrap());
        }
    }
    // Oldest file first, in order, ending at the head, no gaps.
    assert_eq!(*seqs.last().unwrap(), head);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(
        seqs[0] > 1,
        "older records rotated away from the files (they stay in the log)"
    );

    // Replay from the log: any range, any format.
    let data = s.data.to_str().unwrap();
    let (code, out) = ztai_out(&[
        "audit",
        "export",
        "--format",
        "cef",
        "--after",
        "4",
        "--until",
        "9",
        "--data-dir",
        data,
    ]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().all(|l| l.starts_with("CEF:0|ZTAI|")));
    assert!(lines[0].contains("cn1=5"), "{}", lines[0]);
    assert!(lines[4].contains("cn1=9"), "{}", lines[4]);
    let (code, out) = ztai_out(&["audit", "export", "--format", "json", "--data-dir", data]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count() as i64, head);
    let (code, _) = ztai_out(&[
        "audit",
        "cursors",
        "--drop",
        "nonexistent",
        "--data-dir",
        data,
    ]);
    assert_eq!(code, 2, "dropping an unknown sink is an error");
    // Moving a cursor back (gateway stopped) re-feeds the sink from there after the restart.
    let data = s.data.clone();
    s.restart_with(dir.path(), || {
        let (code, out) = ztai_out(&[
            "audit",
            "cursors",
            "--set",
            "files=3",
            "--data-dir",
            data.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(cursor(&data, "files"), Some(3));
    });
    wait_until("the replay to reach the head", || {
        cursor(&s.data, "files") == Some(head)
    });
    let current = read(base.clone());
    let replayed: Vec<i64> = current
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["metadata"]["sequence"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(replayed.last(), Some(&head), "re-sent up to the head");
}
