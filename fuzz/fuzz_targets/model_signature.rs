//! `ztai model verify` reads signature files (Sigstore bundles: JSON, base64, DSSE, in-toto,
//! X.509 certificates, Rekor entries) that anyone may have written. Whatever they hold, parsing
//! and verification end in an error, never a panic, and nothing the fuzzer writes verifies with
//! a key, a certificate root or a Sigstore trust root it cannot have signed with.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use ztai_supply::manifest::Manifest;
use ztai_supply::signing::{Bundle, PublicKey, Verifier, sigstore::SigstoreVerifier, verify_bundle};

const KEY: &[u8] = include_bytes!("../../crates/ztai-supply/tests/data/model_signing/keys/certificate/signing-key-pub.pem");
const ROOT: &[u8] = include_bytes!("../../crates/ztai-supply/tests/data/model_signing/keys/certificate/ca-cert.pem");
const TRUST: &[u8] = include_bytes!("../../crates/ztai-supply/tests/data/model_signing/sigstore_prod_client_trust_config.json");

fn verifiers() -> &'static [Verifier] {
    static V: OnceLock<Vec<Verifier>> = OnceLock::new();
    V.get_or_init(|| {
        vec![
            Verifier::Key(PublicKey::from_pem(KEY).expect("the test key")),
            Verifier::certificates(&[ROOT.to_vec()]).expect("the test root"),
            Verifier::Sigstore(Box::new(SigstoreVerifier::new(TRUST, "fuzz@example.com", "https://fuzz.example").expect("trust"))),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = Bundle::parse(data) {
        for v in verifiers() {
            assert!(verify_bundle(&bundle, v).is_err(), "a fuzzed bundle verified");
        }
    }
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = Manifest::from_statement(&json);
    }
    let _ = PublicKey::from_pem(data);
    let _ = Verifier::certificates(&[data.to_vec()]);
});
