//! Model output is untrusted text: normalising, detecting and redacting it in any chunking must
//! never panic and must equal whole-text redaction. Tokenised redaction must give back exactly
//! the original text through its own session, and a reveal of arbitrary (hostile) text with a
//! session's vault must never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use ztai_core::{Channel, FindingCategory};
use ztai_inspect::{Inspector, Redactor, Replacement, StreamRedactor, redact};

fn inspector() -> &'static Inspector {
    static I: OnceLock<Inspector> = OnceLock::new();
    I.get_or_init(|| Inspector::with_default_rules().expect("built-in rules compile"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let cats = vec![FindingCategory::Secret, FindingCategory::Pii];
    let i = inspector();
    let findings = i.inspect(text, Channel::Output).expect("small input");
    let whole = redact(text, &findings, &cats);
    let mut session = Redactor::new(Replacement::Token, [7; 32]);
    let tokenised = session.redact(text, &findings, &cats);
    assert_eq!(session.reveal(&tokenised), text);
    let _ = session.reveal(text);
    let _ = session.tokens_in(text);
    let mut r = StreamRedactor::new(cats, Channel::Output).with_window(64);
    let mut out = String::new();
    let step = (data.len() % 13) + 1;
    let mut pos = 0;
    while pos < text.len() {
        let mut end = (pos + step).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        out.push_str(&r.push(i, &text[pos..end]).expect("small input"));
        pos = end;
    }
    out.push_str(&r.finish(i).expect("small input"));
    assert_eq!(out, whole);
});
