//! Task tokens come from any caller. Whatever bytes arrive — as text, or base64-encoded so the
//! fuzzer reaches Biscuit's protobuf and Datalog decoding — reading, narrowing and verifying must
//! answer with an error or a result, never crash, and nothing the fuzzer writes may verify (it
//! never sees the private key).
#![no_main]
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use ztai_identity::task_token::{Narrowing, TaskTokenVerifier, TokenAuthority, attenuate, inspect};

fn verifier() -> &'static TaskTokenVerifier {
    static V: OnceLock<TaskTokenVerifier> = OnceLock::new();
    V.get_or_init(|| TokenAuthority::generate().verifier())
}

fuzz_target!(|data: &[u8]| {
    let encoded = base64::engine::general_purpose::URL_SAFE.encode(data);
    let text = std::str::from_utf8(data).ok();
    for candidate in [Some(encoded.as_str()), text].into_iter().flatten() {
        let _ = inspect(candidate);
        let _ = attenuate(
            candidate,
            &Narrowing {
                delegate_to: Some("fuzz".into()),
                ..Default::default()
            },
            1_800_000_000,
        );
        assert!(verifier().verify(candidate).is_err());
    }
});
