//! Bearer tokens and JWKS documents come from outside: a token from any caller, a key set from an
//! identity provider's endpoint. Whatever they hold must be refused with an error, never crash,
//! and no token the fuzzer writes may verify (it holds no key of the issuer).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};
use ztai_identity::jwt::{ClaimMapping, JwtAlgorithm, JwtIssuer, Jwks, verify};

fn issuers() -> &'static [JwtIssuer] {
    static I: OnceLock<Vec<JwtIssuer>> = OnceLock::new();
    I.get_or_init(|| {
        // A real P-256 public key (the fuzzer never has its private half).
        let jwks = br#"{"keys":[{"kty":"EC","crv":"P-256","kid":"k1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},{"kty":"OKP","crv":"Ed25519","kid":"k2","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;
        vec![JwtIssuer {
            issuer: "https://idp.example.com".into(),
            audiences: vec!["ztai".into()],
            algorithms: vec![JwtAlgorithm::Es256, JwtAlgorithm::EdDsa, JwtAlgorithm::Rs256],
            leeway: Duration::from_secs(30),
            mapping: ClaimMapping::default(),
            jwks: Jwks::parse(jwks).expect("the fixed key set"),
        }]
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = Jwks::parse(data);
    let Ok(text) = std::str::from_utf8(data) else { return };
    assert!(verify(text, issuers(), SystemTime::now()).is_err());
});
