//! The egress proxy end to end, through the real binary: an allowed plain-HTTP call and an
//! allowed CONNECT tunnel reach a loopback destination; a path, a port or a name policy does not
//! permit is refused; a name resolving to a private address is refused although a policy permits
//! the name; no credential gets 407; every attempt is recorded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{env_value, request, up, wait_until};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn addr(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Sends `head` to the proxy and reads until the connection closes or `until` appears.
fn exchange(proxy: SocketAddr, head: &str, until: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(until) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    (s, String::from_utf8_lossy(&got).into_owned())
}

fn get(proxy: SocketAddr, url: &str, auth: Option<&str>) -> String {
    let auth = auth
        .map(|k| format!("Proxy-Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let host = url.trim_start_matches("http://").split('/').next().unwrap();
    exchange(
        proxy,
        &format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"),
        "\u{0}",
    )
    .1
}

#[test]
fn egress_is_default_deny_decided_per_destination_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let qs = up(dir.path());
    let env = std::fs::read_to_string(dir.path().join("quickstart.env")).unwrap();
    let proxy = addr(&env_value(&env, "ZTAI_EGRESS_PROXY"));
    let lab = addr(&env_value(&env, "ZTAI_STANDIN_URL"));
    let port = lab.port();

    // Allowed: the lab's health check, over plain HTTP.
    let r = get(
        proxy,
        &format!("http://127.0.0.1:{port}/healthz"),
        Some(&qs.api_key),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.ends_with("ok"), "{r}");
    // Refused: another path on the same destination, and a destination nobody permits.
    let r = get(
        proxy,
        &format!("http://127.0.0.1:{port}/v1/models"),
        Some(&qs.api_key),
    );
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert!(r.contains("is not allowed"), "{r}");
    let r = get(proxy, "http://unlisted.invalid/", Some(&qs.api_key));
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    // No credential, or a wrong one: 407 and how to authenticate.
    let r = get(proxy, &format!("http://127.0.0.1:{port}/healthz"), None);
    assert!(r.starts_with("HTTP/1.1 407"), "{r}");
    assert!(
        r.to_ascii_lowercase()
            .contains("proxy-authenticate: bearer"),
        "{r}"
    );
    let r = get(
        proxy,
        &format!("http://127.0.0.1:{port}/healthz"),
        Some("ztai_nope"),
    );
    assert!(r.starts_with("HTTP/1.1 407"), "{r}");
    // A tunnel is refused until a policy allows CONNECT to that port.
    let connect = format!(
        "CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nProxy-Authorization: Bearer {}\r\n\r\n",
        qs.api_key
    );
    let (_, r) = exchange(proxy, &connect, "\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");

    // Hot-reload a policy: tunnels to the lab's port, and any call to the name `localhost`.
    std::fs::write(
        dir.path().join("policies/zz-egress-test.cedar"),
        format!(
            "@id(\"lab-tunnel\") permit (principal in Group::\"staff\", action == Action::\"egress\", resource in DestinationGroup::\"lab\") when {{ context.destination_method == \"CONNECT\" && context.destination_port == {port} }};\n\
             @id(\"localhost-by-name\") permit (principal in Group::\"staff\", action == Action::\"egress\", resource == Destination::\"localhost\");"
        ),
    )
    .unwrap();
    wait_until("the egress test policy to apply", || {
        request(
            qs.admin,
            "GET",
            "/api/v1/policies",
            Some(&qs.admin_token),
            "",
        )
        .text()
        .contains("zz-egress-test.cedar")
    });
    // The tunnel opens and carries bytes both ways.
    let (mut tunnel, r) = exchange(proxy, &connect, "\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    tunnel
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut through = String::new();
    let _ = tunnel.read_to_string(&mut through);
    assert!(through.starts_with("HTTP/1.1 200"), "{through}");
    assert!(through.ends_with("ok"), "{through}");
    // `localhost` is permitted by name, but it resolves to a loopback address and is not
    // catalogued as internal: the private-address rule refuses it.
    let r = get(
        proxy,
        &format!("http://localhost:{port}/healthz"),
        Some(&qs.api_key),
    );
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert!(r.contains("private, loopback or link-local"), "{r}");

    // Malformed requests are refused cleanly.
    let (_, r) = exchange(
        proxy,
        &format!(
            "GET /relative HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Bearer {}\r\nConnection: close\r\n\r\n",
            qs.api_key
        ),
        "\u{0}",
    );
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let (_, r) = exchange(proxy, "CONNECT nohost HTTP/1.1\r\n\r\n", "\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 4"), "{r}");

    // Every attempt is recorded, allowed and refused, with its destination.
    let r = request(
        qs.admin,
        "GET",
        "/api/v1/audit?action=egress&limit=100",
        Some(&qs.admin_token),
        "",
    );
    let records = r.json()["records"].as_array().unwrap().clone();
    let seen: Vec<(String, u64)> = records
        .iter()
        .map(|x| {
            (
                x["resource"].as_str().unwrap_or_default().to_string(),
                x["status"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    for expected in [
        ("Destination::\"127.0.0.1\"", 200),
        ("Destination::\"127.0.0.1\"", 403),
        ("Destination::\"127.0.0.1\"", 407),
        ("Destination::\"localhost\"", 403),
        ("Destination::\"unlisted.invalid\"", 403),
    ] {
        assert!(
            seen.iter()
                .any(|(res, st)| res == expected.0 && *st == expected.1),
            "{expected:?} in {seen:?}"
        );
    }
}

#[test]
fn plain_http_bodies_past_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let qs = up(dir.path());
    let env = std::fs::read_to_string(dir.path().join("quickstart.env")).unwrap();
    let proxy = addr(&env_value(&env, "ZTAI_EGRESS_PROXY"));
    let port = addr(&env_value(&env, "ZTAI_STANDIN_URL")).port();
    // A permitted destination, announcing a body far past `server.max_body_bytes`: refused
    // before a byte of it is read or forwarded.
    let (_s, r) = exchange(
        proxy,
        &format!(
            "GET http://127.0.0.1:{port}/healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nProxy-Authorization: Bearer {}\r\nContent-Length: 104857600\r\nConnection: close\r\n\r\n",
            qs.api_key
        ),
        "\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
}
