//! `ztai audit verify-proof` and `verify --checkpoint` read files an auditor was handed: proofs
//! (JSON) and checkpoint notes (signed-note text). Whatever they hold must be refused with an
//! error, never crash, and never verify without a valid signature by the pinned key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use ztai_audit::checkpoint::{CheckpointSigner, CheckpointVerifier};

fn verifier() -> &'static CheckpointVerifier {
    static V: OnceLock<CheckpointVerifier> = OnceLock::new();
    V.get_or_init(|| {
        let (_, signer) = CheckpointSigner::generate("ztai-fuzz").expect("a key");
        CheckpointVerifier::parse(&signer.verifier_key()).expect("its verifier")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Nothing the fuzzer writes can carry a signature by a key generated in this process.
    assert!(verifier().verify(text).is_err());
    let _ = CheckpointVerifier::parse(text);
    if let Ok(proof) = serde_json::from_str::<ztai_audit::AuditProof>(text) {
        assert!(ztai_audit::verify_proof(&proof, verifier()).is_err());
    }
});
