//! `ztai audit verify-proof` and `verify --checkpoint` read files an auditor was handed: proofs
//! (JSON) and checkpoint notes (signed-note text); the gateway reads approvers' signed decisions
//! (signed notes) from the admin API and countersigns them. Whatever they hold must be refused
//! with an error, never crash, and never verify without a valid signature by the pinned key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use ztai_audit::checkpoint::{CheckpointSigner, CheckpointVerifier};

fn keys() -> &'static (CheckpointSigner, CheckpointVerifier) {
    static K: OnceLock<(CheckpointSigner, CheckpointVerifier)> = OnceLock::new();
    K.get_or_init(|| {
        let (_, signer) = CheckpointSigner::generate("ztai-fuzz").expect("a key");
        let verifier = CheckpointVerifier::parse(&signer.verifier_key()).expect("its verifier");
        (signer, verifier)
    })
}

fn verifier() -> &'static CheckpointVerifier {
    &keys().1
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Nothing the fuzzer writes can carry a signature by a key generated in this process.
    assert!(verifier().verify(text).is_err());
    assert!(verifier().verify_note(text).is_err());
    // Countersigning never panics; whatever it returns keeps the fuzzer's body.
    if let Ok(cosigned) = keys().0.cosign(text) {
        let body = text.split_once("\n\n").map(|(b, _)| b).unwrap_or_default();
        assert!(cosigned.starts_with(body));
    }
    let _ = CheckpointVerifier::parse(text);
    if let Ok(proof) = serde_json::from_str::<ztai_audit::AuditProof>(text) {
        assert!(ztai_audit::verify_proof(&proof, verifier()).is_err());
    }
});
