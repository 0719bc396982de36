//! `ztai model verify` reads signature files (Sigstore bundles: JSON, base64, DSSE, in-toto,
//! X.509 certificates, Rekor entries) that anyone may have written. Whatever they hold, parsing
//! and verification end in an error, never a panic, and a bundle verifies only when it carries a
//! payload and signature that the real signers made (the reference vectors seed the corpus; their
//! JSON around the signed parts may change, the signed parts may not).
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

/// The (payload, signature) pairs of the genuine vectors.
fn genuine() -> &'static Vec<(String, String)> {
    static G: OnceLock<Vec<(String, String)>> = OnceLock::new();
    G.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/ztai-supply/tests/data/model_signing");
        let mut out = Vec::new();
        for v in ["v1.0.1", "v1.1.0"] {
            for m in ["elliptic-key", "certificate", "sigstore"] {
                let bytes = std::fs::read(format!("{dir}/{v}-{m}/model.sig")).expect("a vector");
                let b = Bundle::parse(&bytes).expect("a genuine bundle");
                let env = b.dsse_envelope.expect("an envelope");
                out.push((env.payload, env.signatures[0].sig.clone()));
            }
        }
        out
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = Bundle::parse(data) {
        for v in verifiers() {
            if verify_bundle(&bundle, v).is_ok() {
                let env = bundle.dsse_envelope.as_ref().expect("a verified bundle has an envelope");
                let pair = (env.payload.clone(), env.signatures[0].sig.clone());
                assert!(genuine().contains(&pair), "a bundle the real signers did not make verified");
            }
        }
    }
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = Manifest::from_statement(&json);
    }
    let _ = PublicKey::from_pem(data);
    let _ = Verifier::certificates(&[data.to_vec()]);
});
