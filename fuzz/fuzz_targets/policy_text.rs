//! Policy files come from operators but are parsed on reload; a malformed one must be refused
//! with an error, never crash the gateway.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztai_policy::{PolicyEngine, PolicySource};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = PolicyEngine::from_sources(vec![PolicySource { name: "fuzz.cedar".into(), text: text.into() }]);
});
