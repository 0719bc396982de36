//! End to end for OIDC/JWT users through the real gateway: a token from a configured issuer is
//! served with the groups its claims map to; the attack catalogue is refused with a clear 401 and
//! an audit record each; a rotated key is picked up from the JWKS file without a restart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};

const ISSUER: &str = "https://idp.example.com";

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn es_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pk8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pk8.as_ref(), &rng).unwrap()
}

fn jwk(kid: &str, k: &EcdsaKeyPair) -> serde_json::Value {
    let p = k.public_key().as_ref();
    json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&p[1..33]), "y": b64(&p[33..65])})
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims(sub: &str) -> serde_json::Value {
    json!({"iss": ISSUER, "aud": "ztai", "sub": sub, "exp": now() + 600, "nbf": now() - 5,
           "jti": format!("jti-{sub}"), "groups": ["engineering"]})
}

fn token(
    header: serde_json::Value,
    claims: &serde_json::Value,
    key: Option<&EcdsaKeyPair>,
) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = key
        .map(|k| {
            k.sign(&SystemRandom::new(), input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec()
        })
        .unwrap_or_default();
    format!("{input}.{}", b64(&sig))
}

#[test]
fn jwt_users_are_served_attacks_are_refused_and_recorded_and_rotation_needs_no_restart() {
    let dir = tempfile::tempdir().unwrap();
    let k1 = es_key();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [jwk("k1", &k1)]}).to_string()).unwrap();
    let extra = format!(
        r#"
[[identity.jwt]]
issuer = "{ISSUER}"
audiences = ["ztai"]
algorithms = ["ES256"]
jwks_file = "jwks.json"
group_map = {{ engineering = "staff" }}
jwks_refresh_floor_ms = 200
jwks_max_age_secs = 1
"#
    );
    let s = Served::start(dir.path(), &extra);

    // Allowed: the `engineering` claim maps to `staff`, which may use echo-small.
    let good = token(
        json!({"alg": "ES256", "kid": "k1"}),
        &claims("alice"),
        Some(&k1),
    );
    let r = chat(s.gw, &good, "echo-small", "hello", false);
    assert_eq!(r.status, 200, "{}", r.text());

    // The catalogue, through the real gateway.
    let mut expired = claims("mallory");
    expired["exp"] = json!(now() - 3600);
    let mut early = claims("mallory");
    early["nbf"] = json!(now() + 3600);
    let mut wrong_aud = claims("mallory");
    wrong_aud["aud"] = json!("another-app");
    let mut wrong_iss = claims("mallory");
    wrong_iss["iss"] = json!("https://evil.example.com");
    let parts: Vec<String> = good.split('.').map(String::from).collect();
    let mut admin = claims("alice");
    admin["groups"] = json!(["admins"]);
    let stranger = es_key();
    let hs256 = {
        let input = format!(
            "{}.{}",
            b64(json!({"alg": "HS256", "kid": "k1"}).to_string().as_bytes()),
            b64(claims("mallory").to_string().as_bytes())
        );
        let key = ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            std::fs::read(&jwks).unwrap().as_slice(),
        );
        format!(
            "{input}.{}",
            b64(ring::hmac::sign(&key, input.as_bytes()).as_ref())
        )
    };
    let attacks: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            token(json!({"alg": "none"}), &claims("mallory"), None),
            "algorithm `none`",
        ),
        ("HS256 with the public key", hs256, "algorithm `HS256`"),
        (
            "expired",
            token(json!({"alg": "ES256", "kid": "k1"}), &expired, Some(&k1)),
            "expired",
        ),
        (
            "not yet valid",
            token(json!({"alg": "ES256", "kid": "k1"}), &early, Some(&k1)),
            "not valid yet",
        ),
        (
            "wrong audience",
            token(json!({"alg": "ES256", "kid": "k1"}), &wrong_aud, Some(&k1)),
            "audience",
        ),
        (
            "wrong issuer",
            token(json!({"alg": "ES256", "kid": "k1"}), &wrong_iss, Some(&k1)),
            "not trusted",
        ),
        (
            "unknown kid",
            token(
                json!({"alg": "ES256", "kid": "k9"}),
                &claims("mallory"),
                Some(&k1),
            ),
            "has not published",
        ),
        (
            "tampered payload",
            format!(
                "{}.{}.{}",
                parts[0],
                b64(admin.to_string().as_bytes()),
                parts[2]
            ),
            "signature does not verify",
        ),
        (
            "stripped signature",
            format!("{}.{}.", parts[0], parts[1]),
            "signature does not verify",
        ),
        (
            "another key",
            token(
                json!({"alg": "ES256", "kid": "k1"}),
                &claims("mallory"),
                Some(&stranger),
            ),
            "signature does not verify",
        ),
    ];
    for (what, t, says) in &attacks {
        let r = chat(s.gw, t, "echo-small", "hello", false);
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(says), "{what}: {msg}");
        assert!(
            !msg.contains(t.as_str()),
            "{what}: the token is never echoed"
        );
    }
    // Each refusal is on the record, and the served request names the JWT user.
    let r = request(
        s.admin,
        "GET",
        "/api/v1/audit?action=invoke&limit=100",
        Some(&s.admin_token),
        "",
    );
    let records = r.json()["records"].as_array().unwrap().clone();
    let refused = records
        .iter()
        .filter(|x| x["principal"] == "anonymous" && x["status"] == 401)
        .count();
    assert_eq!(refused, attacks.len());
    let served: Vec<_> = records
        .iter()
        .filter(|x| x["principal"] == "user:alice")
        .collect();
    assert_eq!(served.len(), 1);
    assert_eq!(served[0]["decision"], "allow");

    // Key rotation: a token under a new key is refused until the issuer publishes it, then
    // accepted without a restart.
    let k2 = es_key();
    let rotated = token(
        json!({"alg": "ES256", "kid": "k2"}),
        &claims("bob"),
        Some(&k2),
    );
    assert_eq!(chat(s.gw, &rotated, "echo-small", "hi", false).status, 401);
    std::fs::write(
        &jwks,
        json!({"keys": [jwk("k1", &k1), jwk("k2", &k2)]}).to_string(),
    )
    .unwrap();
    wait_until("the rotated key to be picked up", || {
        chat(s.gw, &rotated, "echo-small", "hi", false).status == 200
    });
    assert_eq!(
        chat(s.gw, &good, "echo-small", "hi", false).status,
        200,
        "the old key still works"
    );

    // Withdrawal: once k1 leaves the published set, its tokens stop working (verified and cached
    // ones alike) within the key set's maximum age, without a restart.
    std::fs::write(&jwks, json!({"keys": [jwk("k2", &k2)]}).to_string()).unwrap();
    wait_until("the withdrawn key to stop working", || {
        chat(s.gw, &good, "echo-small", "hi", false).status == 401
    });
    let r = chat(s.gw, &good, "echo-small", "hi", false);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("has not published"), "{msg}");
    assert_eq!(chat(s.gw, &rotated, "echo-small", "hi", false).status, 200);
}

/// Serves `body` (swappable) at any path, like an identity provider's JWKS endpoint; counts
/// requests.
fn serve_jwks(
    body: std::sync::Arc<std::sync::Mutex<String>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
            }
            hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let b = body.lock().unwrap().clone();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}",
                b.len()
            );
        }
    });
    port
}

#[test]
fn a_jwks_url_is_fetched_at_start_and_refreshed_in_the_background_on_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let k1 = es_key();
    let body = std::sync::Arc::new(std::sync::Mutex::new(
        json!({"keys": [jwk("k1", &k1)]}).to_string(),
    ));
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let port = serve_jwks(body.clone(), hits.clone());
    let extra = format!(
        r#"
[[identity.jwt]]
issuer = "{ISSUER}"
audiences = ["ztai"]
algorithms = ["ES256"]
jwks_url = "http://127.0.0.1:{port}/.well-known/jwks.json"
group_map = {{ engineering = "staff" }}
jwks_refresh_floor_ms = 200
"#
    );
    let s = Served::start(dir.path(), &extra);
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "fetched once at start"
    );
    let good = token(
        json!({"alg": "ES256", "kid": "k1"}),
        &claims("alice"),
        Some(&k1),
    );
    assert_eq!(chat(s.gw, &good, "echo-small", "hello", false).status, 200);

    // The provider rotates: the first token under the new key is told to retry while the set is
    // fetched in the background; the next ones pass.
    let k2 = es_key();
    *body.lock().unwrap() = json!({"keys": [jwk("k1", &k1), jwk("k2", &k2)]}).to_string();
    std::thread::sleep(std::time::Duration::from_millis(250));
    let rotated = token(
        json!({"alg": "ES256", "kid": "k2"}),
        &claims("bob"),
        Some(&k2),
    );
    let r = chat(s.gw, &rotated, "echo-small", "hi", false);
    assert_eq!(r.status, 401);
    assert!(r.text().contains("retry shortly"), "{}", r.text());
    wait_until("the fetched set to hold k2", || {
        chat(s.gw, &rotated, "echo-small", "hi", false).status == 200
    });
    // Made-up kids do not turn into a flood of fetches: at most one per floor.
    let before = hits.load(std::sync::atomic::Ordering::SeqCst);
    let started = std::time::Instant::now();
    for i in 0..50 {
        let t = token(
            json!({"alg": "ES256", "kid": format!("bogus-{i}")}),
            &claims("eve"),
            Some(&k1),
        );
        assert_eq!(chat(s.gw, &t, "echo-small", "hi", false).status, 401);
    }
    let floors = started.elapsed().as_millis() / 200 + 2;
    let fetched = hits.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(
        fetched as u128 <= floors,
        "{fetched} fetches for 50 unknown kids in {floors} refresh floors"
    );
}

#[test]
fn a_jwt_sent_to_a_gateway_without_issuers_is_told_so() {
    let dir = tempfile::tempdir().unwrap();
    let s = Served::start(dir.path(), "");
    let k = es_key();
    let t = token(
        json!({"alg": "ES256", "kid": "k1"}),
        &claims("alice"),
        Some(&k),
    );
    let r = chat(s.gw, &t, "echo-small", "hello", false);
    assert_eq!(r.status, 401);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("trusts no JWT issuer"), "{msg}");
    assert!(!msg.contains(&t), "the token is never echoed");
}
