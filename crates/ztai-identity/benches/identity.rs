//! Cost of authenticating a credential (the hot path's first stage): an API key, a JWT on first
//! sight (ES256 and EdDSA, signature and claims), a two-block task token (signatures alone, and
//! with the Datalog answer for one model), a client certificate's SPIFFE ID (read and mapped), and
//! each kind served from its cache.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use ztai_core::PrincipalKind;
use ztai_identity::{ApiKeyRegistry, KeyEntry, generate_key};

fn bench(c: &mut Criterion) {
    let mut registry = ApiKeyRegistry::new();
    let mut keys = Vec::new();
    for i in 0..10_000 {
        let k = generate_key();
        registry.insert(
            k.key_id.clone(),
            KeyEntry {
                secret_hash: k.secret_hash,
                principal_kind: PrincipalKind::User,
                principal_id: format!("user{i}"),
                groups: vec!["staff".into()],
                revoked: false,
            },
        );
        keys.push(k.full_key);
    }
    let key = keys[5_000].clone();
    c.bench_function("identity/api_key_authenticate_10k_keys", |b| {
        b.iter(|| registry.authenticate(black_box(&key)).unwrap())
    });

    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
    use ztai_identity::jwt::{ClaimMapping, Jwks, JwtAlgorithm, JwtIssuer, verify};
    let rng = SystemRandom::new();
    let es_pk8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let es =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, es_pk8.as_ref(), &rng).unwrap();
    let ed =
        Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
    let p = es.public_key().as_ref();
    let jwks = serde_json::json!({"keys": [
        {"kty": "EC", "crv": "P-256", "kid": "es", "x": B64.encode(&p[1..33]), "y": B64.encode(&p[33..65])},
        {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": B64.encode(ed.public_key().as_ref())}
    ]});
    let issuers = [JwtIssuer {
        issuer: "https://idp.example.com".into(),
        audiences: vec!["ztai".into()],
        algorithms: vec![JwtAlgorithm::Es256, JwtAlgorithm::EdDsa],
        leeway: std::time::Duration::from_secs(30),
        mapping: ClaimMapping::default(),
        jwks: Jwks::parse(jwks.to_string().as_bytes()).unwrap(),
    }];
    let now = std::time::SystemTime::now();
    let exp = now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    let claims = serde_json::json!({"iss": "https://idp.example.com", "aud": "ztai", "sub": "alice",
        "exp": exp, "groups": ["staff", "readers"], "email": "alice@example.com", "name": "Alice Example"});
    let token = |alg: &str, kid: &str, sign: &dyn Fn(&[u8]) -> Vec<u8>| {
        let input = format!(
            "{}.{}",
            B64.encode(serde_json::json!({"alg": alg, "kid": kid, "typ": "JWT"}).to_string()),
            B64.encode(claims.to_string())
        );
        let sig = sign(input.as_bytes());
        format!("{input}.{}", B64.encode(sig))
    };
    let es_token = token("ES256", "es", &|m| {
        es.sign(&rng, m).unwrap().as_ref().to_vec()
    });
    let ed_token = token("EdDSA", "ed", &|m| ed.sign(m).as_ref().to_vec());
    c.bench_function("identity/jwt_es256_first_sight", |b| {
        b.iter(|| verify(black_box(&es_token), &issuers, now).unwrap())
    });
    c.bench_function("identity/jwt_eddsa_first_sight", |b| {
        b.iter(|| verify(black_box(&ed_token), &issuers, now).unwrap())
    });
    let mut cache = ztai_identity::jwt::VerifiedCache::new(10_000);
    let (p, until) = ztai_identity::jwt::verify_until(&es_token, &issuers, now).unwrap();
    cache.insert(&es_token, p, until);
    c.bench_function("identity/jwt_cached", |b| {
        b.iter(|| cache.get(black_box(&es_token), now).unwrap())
    });

    // Task tokens: a two-block Biscuit (minted, then narrowed for a sub-agent), verified and
    // asked about one model, as the gateway does on first sight; then the cached path.
    use ztai_identity::task_token::{
        Narrowing, Right, TaskGrant, TaskTokenCache, TokenAuthority, attenuate,
    };
    let authority = TokenAuthority::generate();
    let unix = now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let minted = authority
        .issue(
            &TaskGrant {
                agent: "support-bot".into(),
                user: "alice".into(),
                user_groups: vec!["staff".into()],
                task: Some("ticket 42".into()),
                rights: vec![
                    Right::new("model", "small"),
                    Right::new("model", "large"),
                    Right::new("tool", "orders.lookup"),
                ],
                expires_at: unix + 900,
            },
            unix,
        )
        .unwrap();
    let two_blocks = attenuate(
        &minted,
        &Narrowing {
            delegate_to: Some("summariser".into()),
            only: [("model".to_string(), vec!["small".to_string()])].into(),
            expires_at: Some(unix + 600),
        },
        unix,
    )
    .unwrap();
    let verifier = authority.verifier();
    c.bench_function("identity/task_token_two_blocks_verify", |b| {
        b.iter(|| verifier.verify(black_box(&two_blocks)).unwrap())
    });
    c.bench_function("identity/task_token_two_blocks_first_sight", |b| {
        b.iter(|| {
            let v = verifier.verify(black_box(&two_blocks)).unwrap();
            v.authorize("model", "small", unix).unwrap();
        })
    });
    let verified = verifier.verify(&two_blocks).unwrap();
    c.bench_function("identity/task_token_two_blocks_datalog", |b| {
        b.iter(|| {
            verified
                .authorize(black_box("model"), "small", unix)
                .unwrap()
        })
    });
    let tokens = TaskTokenCache::new(10_000);
    tokens.get_or_verify(&two_blocks, &verifier).unwrap();
    c.bench_function("identity/task_token_cached", |b| {
        b.iter(|| {
            let v = tokens
                .get_or_verify(black_box(&two_blocks), &verifier)
                .unwrap();
            v.authorize("model", "small", unix).unwrap();
        })
    });

    // A client certificate the TLS layer has verified: read its SPIFFE ID and map it (once per
    // connection in the gateway), then the per-request mapping alone.
    use ztai_identity::spiffe::{PeerCertificate, SpiffeMapping, SpiffeRule};
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(
        "spiffe://prod.example/ns/billing/sa/api"
            .try_into()
            .unwrap(),
    ));
    let svid = params
        .self_signed(&rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .der()
        .to_vec();
    let mapping = SpiffeMapping {
        trust_domains: vec!["prod.example".into()],
        rules: vec![SpiffeRule {
            id: "spiffe://prod.example/ns/billing/sa/api".into(),
            kind: PrincipalKind::Service,
            principal: Some("billing".into()),
            groups: vec!["staff".into()],
        }],
    };
    c.bench_function("identity/mtls_svid_parse_and_map", |b| {
        b.iter(|| {
            mapping
                .principal(&PeerCertificate::from_der(black_box(&svid)))
                .unwrap()
        })
    });
    let peer = PeerCertificate::from_der(&svid);
    c.bench_function("identity/mtls_mapped_per_request", |b| {
        b.iter(|| mapping.principal(black_box(&peer)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
