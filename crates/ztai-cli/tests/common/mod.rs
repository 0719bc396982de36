//! Helpers for end-to-end tests: start the real `ztai` binary, talk raw HTTP/1.1 to it.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_ztai");

/// A running `ztai` process, killed on drop.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A quick-start instance and what its quickstart.env says.
#[derive(Debug)]
pub struct QuickStart {
    pub proc: Proc,
    pub dir: PathBuf,
    pub gateway: SocketAddr,
    pub admin: SocketAddr,
    pub api_key: String,
    pub admin_token: String,
}

pub fn env_value(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("export {key}=")))
        .map(|v| v.trim_matches('\'').to_string())
        .unwrap_or_else(|| panic!("{key} missing from quickstart.env"))
}

fn addr_of(url: &str) -> SocketAddr {
    let rest = url.trim_start_matches("http://");
    rest.split('/').next().unwrap().parse().unwrap()
}

pub fn up(dir: &Path) -> QuickStart {
    let mut child = Command::new(BIN)
        .args(["up", "--data-dir"])
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("ZTAI_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        assert!(Instant::now() < deadline, "ztai up did not start");
        match lines.next() {
            Some(Ok(l)) if l.contains("ZTAI is up.") => break,
            Some(Ok(_)) => continue,
            _ => panic!("ztai up exited before it was up"),
        }
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let env = std::fs::read_to_string(dir.join("quickstart.env")).unwrap();
    QuickStart {
        proc: Proc { child },
        dir: dir.to_path_buf(),
        gateway: addr_of(&env_value(&env, "OPENAI_BASE_URL")),
        admin: addr_of(&env_value(&env, "ZTAI_ADMIN_URL")),
        api_key: env_value(&env, "ZTAI_API_KEY"),
        admin_token: env_value(&env, "ZTAI_ADMIN_TOKEN"),
    }
}

/// Starts `ztai standin` on a free port; returns it and its base URL.
pub fn standin() -> (Proc, String) {
    let mut child = Command::new(BIN)
        .args(["standin", "--listen", "127.0.0.1:0"])
        .env("ZTAI_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    std::thread::spawn(move || for _ in lines {});
    let url = line.split(" at ").nth(1).unwrap().trim().to_string();
    (Proc { child }, url)
}

/// Starts `ztai serve --config` with `config` written into `dir`; returns it and its addresses.
pub fn serve(dir: &Path, config: &str) -> (Proc, SocketAddr, SocketAddr) {
    let path = dir.join("ztai.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .env("ZTAI_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (listen, admin) = loop {
        assert!(Instant::now() < deadline, "ztai serve did not start");
        let Some(Ok(l)) = lines.next() else {
            panic!("ztai serve exited")
        };
        if l.contains("ztai gateway serving") {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap();
            break (
                v["fields"]["listen"].as_str().unwrap().parse().unwrap(),
                v["fields"]["admin"].as_str().unwrap().parse().unwrap(),
            );
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Proc { child }, listen, admin)
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends raw request bytes and reads the whole response (the connection is closed after).
pub fn raw(addr: SocketAddr, request: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf)
}

/// Like `raw`, sent from the local address `from` (any 127.x.y.z reaches a loopback listener), so
/// a test can be several clients.
pub fn raw_from(from: std::net::IpAddr, addr: SocketAddr, request: &[u8]) -> Resp {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let stream = rt.block_on(async {
        let sock = if from.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .unwrap();
        sock.bind(SocketAddr::new(from, 0)).unwrap();
        sock.connect(addr).await.unwrap()
    });
    let mut s = stream.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse_response(&buf)
}

pub fn parse_response(buf: &[u8]) -> Resp {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = buf[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = nl + 2;
        let end = (start + size).min(b.len());
        out.extend_from_slice(&b[start..end]);
        b = &b[(end + 2).min(b.len())..];
    }
    out
}

fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> Vec<u8> {
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub fn request(addr: SocketAddr, method: &str, path: &str, key: Option<&str>, body: &str) -> Resp {
    raw(addr, &request_bytes(addr, method, path, key, body))
}

/// `request`, sent from the local address `from` (see `raw_from`).
pub fn request_from(
    from: std::net::IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> Resp {
    raw_from(from, addr, &request_bytes(addr, method, path, key, body))
}

pub fn chat(addr: SocketAddr, key: &str, model: &str, content: &str, stream: bool) -> Resp {
    let body = serde_json::json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": content}]});
    request(
        addr,
        "POST",
        "/v1/chat/completions",
        Some(key),
        &body.to_string(),
    )
}

/// Concatenated `delta.content` of an SSE body, and whether it ended with [DONE].
pub fn sse_text(body: &str) -> (String, bool, Option<serde_json::Value>) {
    let mut text = String::new();
    let mut done = false;
    let mut error = None;
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        if v.get("error").is_some() {
            error = Some(v);
            continue;
        }
        if let Some(c) = v
            .pointer("/choices/0/delta/content")
            .and_then(|c| c.as_str())
        {
            text.push_str(c);
        }
    }
    (text, done, error)
}

pub fn create_key(
    qs_admin: SocketAddr,
    admin_token: &str,
    principal: &str,
    groups: &[&str],
) -> String {
    let body = serde_json::json!({"principal_id": principal, "groups": groups});
    let r = request(
        qs_admin,
        "POST",
        "/api/v1/keys",
        Some(admin_token),
        &body.to_string(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["api_key"].as_str().unwrap().to_string()
}

pub fn metric(admin: SocketAddr, name_and_labels: &str) -> f64 {
    let r = request(admin, "GET", "/metrics", None, "");
    r.text()
        .lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// A gateway serving keys and policies seeded by `ztai up`, with limits that do not throttle
/// (so a kill lands among requests in flight, not among rate-limit refusals) and `extra`
/// configuration appended.
pub struct Served {
    pub standin: Proc,
    pub standin_url: String,
    pub gw_proc: Proc,
    pub gw: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    pub key: String,
    pub admin_token: String,
    pub data: std::path::PathBuf,
    pub config: String,
}

impl Served {
    pub fn start(dir: &Path, extra: &str) -> Self {
        let data = dir.join("data");
        let qs = up(&data);
        let (key, admin_token) = (qs.api_key.clone(), qs.admin_token.clone());
        drop(qs);
        let (standin_proc, standin_url) = standin();
        let config = format!(
            r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
[storage]
data_dir = "data"
[policy]
dir = "data/policies"
[limits]
requests_per_minute = 100000000
request_burst = 100000000
tokens_per_minute = 2000000000
failed_auth_summary_secs = 1
failed_auth_burst = 100000
[[upstreams]]
name = "standin"
base_url = "{standin_url}"
[[models]]
name = "echo-small"
upstream = "standin"
upstream_model = "standin-echo"
groups = ["standard"]
{extra}
"#
        );
        let (gw_proc, gw, admin) = serve(dir, &config);
        Served {
            config,
            standin: standin_proc,
            standin_url,
            gw_proc,
            gw,
            admin,
            key,
            admin_token,
            data,
        }
    }
}

impl Served {
    /// `kill -9`s the gateway and starts it again on the same data and configuration (new ports).
    pub fn restart(&mut self, dir: &Path) {
        self.restart_with(dir, || {});
    }

    /// Like `restart`, running `between` while no gateway runs.
    pub fn restart_with(&mut self, dir: &Path, between: impl FnOnce()) {
        let _ = self.gw_proc.child.kill();
        let _ = self.gw_proc.child.wait();
        between();
        let (p, gw, admin) = serve(dir, &self.config);
        self.gw_proc = p;
        self.gw = gw;
        self.admin = admin;
    }
}
