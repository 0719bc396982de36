//! The JWT attack catalogue: each attack is built for real (signed with real keys) and refused
//! with the error that names it; the allowed paths are checked beside them.

use super::*;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::json;

/// A 2048-bit RSA key (PKCS#1 DER) made with openssl for these tests only; ring cannot generate RSA keys.
const RSA_DER: &[u8] = include_bytes!("test-rsa2048.der");
const NOW: u64 = 1_795_323_600; // 2026-11-22T05:00:00Z

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

struct Keys {
    es: EcdsaKeyPair,
    ed: Ed25519KeyPair,
    rsa: RsaKeyPair,
}

fn keys() -> Keys {
    let rng = SystemRandom::new();
    let es_pk8 =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let ed_pk8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    Keys {
        es: EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            es_pk8.as_ref(),
            &rng,
        )
        .unwrap(),
        ed: Ed25519KeyPair::from_pkcs8(ed_pk8.as_ref()).unwrap(),
        rsa: RsaKeyPair::from_der(RSA_DER).unwrap(),
    }
}

fn rsa_public_der_components(k: &RsaKeyPair) -> (Vec<u8>, Vec<u8>) {
    let c: signature::RsaPublicKeyComponents<Vec<u8>> = k.public().into();
    (c.n, c.e)
}

fn jwks_of(k: &Keys) -> serde_json::Value {
    let es = k.es.public_key().as_ref();
    let (n, e) = rsa_public_der_components(&k.rsa);
    json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "es", "use": "sig", "x": b64(&es[1..33]), "y": b64(&es[33..65])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": b64(k.ed.public_key().as_ref())},
        {"kty": "RSA", "kid": "rsa", "alg": "RS256", "n": b64(&n), "e": b64(&e)},
        {"kty": "RSA", "kid": "enc", "use": "enc", "n": b64(&n), "e": b64(&e)},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}
    ]})
}

fn issuer(k: &Keys) -> JwtIssuer {
    JwtIssuer {
        issuer: "https://idp.example.com".into(),
        audiences: vec!["ztai".into()],
        algorithms: vec![
            JwtAlgorithm::Es256,
            JwtAlgorithm::EdDsa,
            JwtAlgorithm::Rs256,
        ],
        leeway: Duration::from_secs(30),
        mapping: ClaimMapping {
            group_map: [("engineering".to_string(), "staff".to_string())].into(),
            default_groups: vec!["sso".into()],
            ..ClaimMapping::default()
        },
        jwks: Jwks::parse(jwks_of(k).to_string().as_bytes()).unwrap(),
    }
}

fn claims() -> serde_json::Value {
    json!({
        "iss": "https://idp.example.com", "aud": ["other", "ztai"], "sub": "alice",
        "exp": NOW + 300, "nbf": NOW - 10, "iat": NOW - 10, "jti": "t-1",
        "groups": ["engineering", "readers"]
    })
}

fn sign_with(
    header: serde_json::Value,
    claims: &serde_json::Value,
    sign: impl Fn(&[u8]) -> Vec<u8>,
) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

fn es256(k: &Keys, kid: &str, claims: &serde_json::Value) -> String {
    sign_with(
        json!({"alg": "ES256", "typ": "JWT", "kid": kid}),
        claims,
        |m| {
            k.es.sign(&SystemRandom::new(), m)
                .unwrap()
                .as_ref()
                .to_vec()
        },
    )
}

fn rs256(k: &Keys, kid: &str, claims: &serde_json::Value) -> String {
    sign_with(json!({"alg": "RS256", "kid": kid}), claims, |m| {
        let mut sig = vec![0; k.rsa.public().modulus_len()];
        k.rsa
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                m,
                &mut sig,
            )
            .unwrap();
        sig
    })
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[test]
fn valid_tokens_of_every_key_kind_become_principals() {
    let k = keys();
    let iss = [issuer(&k)];
    let p = verify(&es256(&k, "es", &claims()), &iss, at(NOW)).unwrap();
    assert_eq!(p.kind, PrincipalKind::User);
    assert_eq!(p.id, "alice");
    assert_eq!(
        p.groups,
        vec!["readers", "sso", "staff"],
        "mapped, passed through, default"
    );
    assert_eq!(p.credential_id, "jwt:t-1");
    let ed = sign_with(json!({"alg": "EdDSA", "kid": "ed"}), &claims(), |m| {
        k.ed.sign(m).as_ref().to_vec()
    });
    assert_eq!(verify(&ed, &iss, at(NOW)).unwrap().id, "alice");
    assert_eq!(
        verify(&rs256(&k, "rsa", &claims()), &iss, at(NOW))
            .unwrap()
            .id,
        "alice"
    );
    assert_eq!(
        iss[0].jwks.len(),
        3,
        "the encryption and symmetric keys are not signing keys"
    );
    assert_eq!(iss[0].jwks.skipped, 2);
}

#[test]
fn alg_none_is_refused() {
    let k = keys();
    let token = format!(
        "{}.{}.",
        b64(json!({"alg": "none"}).to_string().as_bytes()),
        b64(claims().to_string().as_bytes())
    );
    assert_eq!(
        verify(&token, &[issuer(&k)], at(NOW)),
        Err(JwtError::Algorithm("none".into()))
    );
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_refused() {
    let k = keys();
    let (n, _) = rsa_public_der_components(&k.rsa);
    // The classic confusion: HMAC keyed with the public key bytes a verifier would load.
    for key_bytes in [n.clone(), jwks_of(&k).to_string().into_bytes()] {
        let token = sign_with(json!({"alg": "HS256", "kid": "rsa"}), &claims(), |m| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key_bytes);
            ring::hmac::sign(&key, m).as_ref().to_vec()
        });
        assert_eq!(
            verify(&token, &[issuer(&k)], at(NOW)),
            Err(JwtError::Algorithm("HS256".into()))
        );
    }
    // And an RSA key is never used for ES256 even if the header says so.
    let token = sign_with(json!({"alg": "ES256", "kid": "rsa"}), &claims(), |m| {
        k.es.sign(&SystemRandom::new(), m)
            .unwrap()
            .as_ref()
            .to_vec()
    });
    assert_eq!(
        verify(&token, &[issuer(&k)], at(NOW)),
        Err(JwtError::KeyMismatch)
    );
}

#[test]
fn an_algorithm_off_the_issuers_allowlist_is_refused() {
    let k = keys();
    let mut iss = issuer(&k);
    iss.algorithms = vec![JwtAlgorithm::Es256];
    assert_eq!(
        verify(&rs256(&k, "rsa", &claims()), &[iss], at(NOW)),
        Err(JwtError::Algorithm("RS256".into()))
    );
}

#[test]
fn expiry_and_not_before_hold_with_leeway() {
    let k = keys();
    let iss = [issuer(&k)];
    let t = es256(&k, "es", &claims());
    assert!(
        verify(&t, &iss, at(NOW + 300 + 30)).is_ok(),
        "inside the leeway"
    );
    assert_eq!(verify(&t, &iss, at(NOW + 300 + 31)), Err(JwtError::Expired));
    assert_eq!(verify(&t, &iss, at(NOW - 41)), Err(JwtError::NotYetValid));
    assert!(verify(&t, &iss, at(NOW - 39)).is_ok());
    let mut forever = claims();
    forever.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        verify(&es256(&k, "es", &forever), &iss, at(NOW)),
        Err(JwtError::NoExpiry)
    );
}

#[test]
fn wrong_issuer_or_audience_is_refused() {
    let k = keys();
    let iss = [issuer(&k)];
    let mut c = claims();
    c["iss"] = json!("https://evil.example.com");
    assert_eq!(
        verify(&es256(&k, "es", &c), &iss, at(NOW)),
        Err(JwtError::UnknownIssuer("https://evil.example.com".into()))
    );
    let mut c = claims();
    c["aud"] = json!("someone-else");
    assert_eq!(
        verify(&es256(&k, "es", &c), &iss, at(NOW)),
        Err(JwtError::Audience)
    );
    let mut c = claims();
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        verify(&es256(&k, "es", &c), &iss, at(NOW)),
        Err(JwtError::Audience)
    );
}

#[test]
fn an_unknown_kid_is_refused_and_named() {
    let k = keys();
    assert_eq!(
        verify(
            &es256(&k, "rotated-2027", &claims()),
            &[issuer(&k)],
            at(NOW)
        ),
        Err(JwtError::UnknownKey("rotated-2027".into()))
    );
}

#[test]
fn a_tampered_payload_or_stripped_signature_is_refused() {
    let k = keys();
    let iss = [issuer(&k)];
    let t = es256(&k, "es", &claims());
    let parts: Vec<&str> = t.split('.').collect();
    let mut admin = claims();
    admin["sub"] = json!("root");
    admin["groups"] = json!(["admins"]);
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64(admin.to_string().as_bytes()),
        parts[2]
    );
    assert_eq!(verify(&forged, &iss, at(NOW)), Err(JwtError::Signature));
    let stripped = format!("{}.{}.", parts[0], parts[1]);
    assert_eq!(verify(&stripped, &iss, at(NOW)), Err(JwtError::Signature));
    let two_parts = format!("{}.{}", parts[0], parts[1]);
    assert_eq!(verify(&two_parts, &iss, at(NOW)), Err(JwtError::Malformed));
    // A token signed by a key the issuer never published, under a published kid.
    let other = keys();
    assert_eq!(
        verify(&es256(&other, "es", &claims()), &iss, at(NOW)),
        Err(JwtError::Signature)
    );
}

#[test]
fn hostile_shapes_are_malformed_not_panics() {
    let k = keys();
    let iss = [issuer(&k)];
    for t in [
        "",
        ".",
        "..",
        "...",
        "a.b.c",
        "ey.ey.ey",
        "%%%.%%%.%%%",
        "eyJhbGciOiJFUzI1NiJ9.bm90IGpzb24.AAAA",
    ] {
        assert_eq!(verify(t, &iss, at(NOW)), Err(JwtError::Malformed), "{t:?}");
    }
    assert_eq!(
        verify(&"a".repeat(MAX_TOKEN_BYTES + 1), &iss, at(NOW)),
        Err(JwtError::TooLarge)
    );
    let crit = sign_with(
        json!({"alg": "ES256", "kid": "es", "crit": ["exp"]}),
        &claims(),
        |m| {
            k.es.sign(&SystemRandom::new(), m)
                .unwrap()
                .as_ref()
                .to_vec()
        },
    );
    assert_eq!(verify(&crit, &iss, at(NOW)), Err(JwtError::Critical));
    let mut c = claims();
    c["sub"] = json!("evil:admin");
    assert_eq!(
        verify(&es256(&k, "es", &c), &iss, at(NOW)),
        Err(JwtError::Subject("sub".into()))
    );
}

#[test]
fn a_kidless_token_needs_a_one_key_set() {
    let k = keys();
    let no_kid = sign_with(json!({"alg": "ES256"}), &claims(), |m| {
        k.es.sign(&SystemRandom::new(), m)
            .unwrap()
            .as_ref()
            .to_vec()
    });
    assert_eq!(
        verify(&no_kid, &[issuer(&k)], at(NOW)),
        Err(JwtError::UnknownKey(String::new())),
        "ambiguous among three keys"
    );
    let es = k.es.public_key().as_ref();
    let mut one = issuer(&k);
    one.jwks = Jwks::parse(
        json!({"keys": [{"kty": "EC", "crv": "P-256", "x": b64(&es[1..33]), "y": b64(&es[33..65])}]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    assert_eq!(verify(&no_kid, &[one], at(NOW)).unwrap().id, "alice");
}

#[test]
fn the_cache_serves_a_verified_token_only_until_it_expires() {
    let k = keys();
    let iss = [issuer(&k)];
    let t = es256(&k, "es", &claims());
    let (p, until) = verify_until(&t, &iss, at(NOW)).unwrap();
    assert_eq!(until, at(NOW + 300 + 30), "exp plus leeway");
    let mut cache = VerifiedCache::new(2);
    assert!(cache.get(&t, at(NOW)).is_none());
    cache.insert(&t, p.clone(), until);
    assert_eq!(cache.get(&t, at(NOW + 100)), Some(p.clone()));
    assert!(
        cache.get(&t, at(NOW + 331)).is_none(),
        "expired tokens are not served"
    );
    let mut forged = t.clone();
    forged.push('A');
    assert!(
        cache.get(&forged, at(NOW)).is_none(),
        "keyed by the whole token"
    );
    cache.insert("b", p.clone(), until);
    cache.insert("c", p.clone(), until);
    assert_eq!(
        cache.len(),
        1,
        "cleared when full, never grown past capacity"
    );
    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn device_posture_is_read_from_the_configured_claim_only() {
    let k = keys();
    let mut iss = issuer(&k);
    let mut c = claims();
    c["device"] =
        json!({"managed": true, "disk_encrypted": true, "jailbroken": false, "bad name": true});
    c["posture"] = json!(["managed", "os_current", "managed", "x y"]);
    let token = es256(&k, "es", &c);
    // Not configured: nothing is taken, whatever the token claims.
    let p = verify(&token, std::slice::from_ref(&iss), at(NOW)).unwrap();
    assert!(p.device_posture.is_empty());
    iss.mapping.posture_claim = Some("device".into());
    let p = verify(&token, std::slice::from_ref(&iss), at(NOW)).unwrap();
    assert_eq!(p.device_posture, ["disk_encrypted", "managed"]);
    iss.mapping.posture_claim = Some("posture".into());
    let p = verify(&token, std::slice::from_ref(&iss), at(NOW)).unwrap();
    assert_eq!(p.device_posture, ["managed", "os_current"]);
    // A claim of another shape gives no posture rather than an error.
    iss.mapping.posture_claim = Some("exp".into());
    let p = verify(&token, std::slice::from_ref(&iss), at(NOW)).unwrap();
    assert!(p.device_posture.is_empty());
}
