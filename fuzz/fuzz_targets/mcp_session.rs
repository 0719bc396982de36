//! MCP session ids and tool definitions from untrusted peers: a session id is whatever a client
//! sends in `Mcp-Session-Id`, a tool definition whatever a server lists. Opening an id must
//! refuse garbage without panicking (and never accept an id it did not seal); a definition's
//! canonical form must parse back to the same value (numbers included), so a server that
//! re-serialises an unchanged tool differently is not mistaken for a rug pull.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ztai_gateway::mcp::{pins, session};

fuzz_target!(|data: &[u8]| {
    let sealer = match session::SessionSealer::new(&[7u8; 32]) {
        Ok(s) => s,
        Err(_) => return,
    };
    let text = String::from_utf8_lossy(data);
    assert!(sealer.open(&text, "files", 0).is_err());
    assert!(sealer.open(&format!("zmcp1.{text}"), "files", 0).is_err());
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let d = pins::definition(&value);
        let canonical = pins::canonical(&d);
        let back: serde_json::Value = serde_json::from_str(&canonical).expect("canonical JSON parses");
        // Numbers parse correctly rounded (serde_json's `float_roundtrip`), so the canonical
        // form is the value: any correct serialisation of it pins to the same digest.
        assert_eq!(back, d);
        assert_eq!(pins::canonical(&back), canonical);
        assert_eq!(pins::digest(&d), pins::digest(&back));
        let _ = pins::text_of(&d);
    }
});
