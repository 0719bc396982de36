//! End to end for services and models by mTLS: the data plane terminates TLS with rustls, verifies
//! client certificates against a trust bundle and maps their SPIFFE IDs to principals. A
//! certificate from another CA, an expired one, one from another trust domain and one no rule maps
//! are refused — each with an audit record — while a valid SVID is served as its service.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, name.to_string());
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let pem = p.self_signed(&key).unwrap().pem();
    Ca {
        issuer: Issuer::new(p, key),
        pem,
    }
}

/// A leaf signed by `ca`: a client SVID (`uri` set) or the server's certificate.
fn leaf(ca: &Ca, uri: Option<&str>, expired: bool) -> (String, String) {
    let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    p.subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    match uri {
        Some(u) => {
            p.subject_alt_names = vec![SanType::URI(u.try_into().unwrap())];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        None => p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth],
    }
    if expired {
        p.not_before = rcgen::date_time_ymd(2019, 1, 1);
        p.not_after = rcgen::date_time_ymd(2020, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// One HTTPS request, optionally with a client certificate; `Err` when the handshake fails.
fn https(
    addr: SocketAddr,
    ca_pem: &str,
    client: Option<&(String, String)>,
    request: &str,
) -> Result<Resp, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> =
                rustls::pki_types::pem::PemObject::pem_slice_iter(cert.as_bytes())
                    .map(|c| c.unwrap())
                    .collect();
            let key: PrivateKeyDer<'static> =
                rustls::pki_types::pem::PemObject::from_pem_slice(key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    match tls.read_to_end(&mut buf) {
        Ok(_) => {}
        // The server may close without close_notify after answering.
        Err(e) if !buf.is_empty() => {
            let _ = e;
        }
        Err(e) => return Err(e.to_string()),
    }
    if buf.is_empty() {
        return Err("the server closed the connection".into());
    }
    Ok(parse_response(&buf))
}

fn chat_request(addr: SocketAddr, key: Option<&str>) -> String {
    let body = r#"{"model":"echo-small","messages":[{"role":"user","content":"hello over mTLS"}]}"#;
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn services_authenticate_with_spiffe_svids_and_bad_certificates_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let prod = ca("prod CA");
    let other = ca("someone else's CA");
    let tls_dir = dir.path().join("tls");
    std::fs::create_dir_all(&tls_dir).unwrap();
    let (server_cert, server_key) = leaf(&prod, None, false);
    std::fs::write(tls_dir.join("server.pem"), &server_cert).unwrap();
    std::fs::write(tls_dir.join("server.key"), &server_key).unwrap();
    std::fs::write(tls_dir.join("clients-ca.pem"), &prod.pem).unwrap();
    let extra = r#"
[server.tls]
cert_file = "tls/server.pem"
key_file = "tls/server.key"
client_ca_file = "tls/clients-ca.pem"

[identity.spiffe]
trust_domains = ["prod.example"]

[[identity.spiffe.rules]]
id = "spiffe://prod.example/ns/billing/sa/api"
kind = "service"
principal = "billing"
groups = ["staff"]
"#;
    let s = Served::start(dir.path(), extra);

    // A valid SVID is the credential: served as service:billing, recorded as such.
    let billing = leaf(
        &prod,
        Some("spiffe://prod.example/ns/billing/sa/api"),
        false,
    );
    let r = https(s.gw, &prod.pem, Some(&billing), &chat_request(s.gw, None)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // Without a client certificate, other credentials still work (require_client_cert = false).
    let r = https(s.gw, &prod.pem, None, &chat_request(s.gw, Some(&s.key))).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // Plain HTTP to a TLS listener gets nowhere.
    let plain = std::panic::catch_unwind(|| chat(s.gw, &s.key, "echo-small", "hi", false));
    assert!(plain.is_err() || plain.as_ref().is_ok_and(|r| r.status != 200));

    // A certificate from another CA and an expired one fail the handshake.
    let foreign_ca = leaf(
        &other,
        Some("spiffe://prod.example/ns/billing/sa/api"),
        false,
    );
    assert!(
        https(
            s.gw,
            &prod.pem,
            Some(&foreign_ca),
            &chat_request(s.gw, None)
        )
        .is_err()
    );
    let expired = leaf(&prod, Some("spiffe://prod.example/ns/billing/sa/api"), true);
    assert!(https(s.gw, &prod.pem, Some(&expired), &chat_request(s.gw, None)).is_err());

    // A certificate from the trusted CA but another trust domain, or one no rule maps: 401.
    for (uri, needle) in [
        ("spiffe://dev.example/ns/billing/sa/api", "does not trust"),
        (
            "spiffe://prod.example/ns/payroll/sa/api",
            "maps the SPIFFE ID",
        ),
    ] {
        let cert = leaf(&prod, Some(uri), false);
        let r = https(s.gw, &prod.pem, Some(&cert), &chat_request(s.gw, None)).unwrap();
        assert_eq!(r.status, 401, "{}", r.text());
        assert!(r.text().contains(needle), "{}", r.text());
    }

    // Each refusal left a record: the handshakes as `tls_handshake`, the others as requests.
    let audit = |q: &str| {
        request(
            s.admin,
            "GET",
            &format!("/api/v1/audit?limit=100&{q}"),
            Some(&s.admin_token),
            "",
        )
        .json()["records"]
            .as_array()
            .unwrap()
            .clone()
    };
    let handshakes = audit("action=tls_handshake");
    assert!(handshakes.len() >= 2, "{handshakes:?}");
    let reasons: Vec<&str> = handshakes
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("Expired") || r.contains("expired")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("UnknownIssuer") || r.contains("issuer")),
        "{reasons:?}"
    );
    assert!(
        handshakes
            .iter()
            .all(|r| r["decision"] == "deny" && !r["client"].as_str().unwrap_or("").is_empty())
    );
    let served = audit("principal=service:billing");
    assert!(
        served
            .iter()
            .any(|r| r["decision"] == "allow" && r["credential"].is_null() && r["status"] == 200)
    );
    let refused = audit("action=invoke&decision=deny");
    assert!(
        refused
            .iter()
            .any(|r| r["reason"].as_str().unwrap_or("").contains("dev.example"))
    );
}
