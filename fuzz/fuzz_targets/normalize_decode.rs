//! The normaliser and the decoders read whatever a caller, a document or a model sends. For any
//! input they must not panic, must stay within their bounds, and every span they report must be
//! a valid range of the original text on character boundaries (redaction slices with it).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use ztai_core::Channel;
use ztai_inspect::{Decoders, Inspector, normalize};

fn inspector() -> &'static Inspector {
    static I: OnceLock<Inspector> = OnceLock::new();
    I.get_or_init(|| Inspector::with_default_rules().expect("the built-in engine"))
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut found = Vec::new();
    let n = normalize(&text, Channel::Untrusted, &mut found);
    let view = n.as_str();
    for f in &found {
        assert!(f.span.start <= f.span.end && f.span.end <= text.len());
        assert!(text.is_char_boundary(f.span.start) && text.is_char_boundary(f.span.end));
    }
    // Every span of the view maps back inside the original, on boundaries.
    let bounds: Vec<usize> = view.char_indices().map(|(i, _)| i).chain([view.len()]).collect();
    for w in bounds.windows(2).step_by(7) {
        let s = n.original_span(ztai_core::Span::new(w[0], w[1]));
        assert!(s.end <= text.len() && text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
    }
    let mut budget = 64 * 1024;
    let mut segments = Vec::new();
    Decoders::new().expect("decoders").decode(view, &mut budget, &mut segments);
    assert!(segments.len() <= 32);
    for s in &segments {
        assert!(s.span.end <= view.len());
    }
    // The whole pipeline: spans in the original, on boundaries.
    if let Ok(findings) = inspector().inspect(&text, Channel::Untrusted) {
        for f in findings {
            assert!(f.span.end <= text.len(), "{f:?}");
            assert!(text.is_char_boundary(f.span.start) && text.is_char_boundary(f.span.end), "{f:?}");
        }
    }
});
