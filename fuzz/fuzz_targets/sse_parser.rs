//! Upstream event streams are untrusted bytes: the parser must never panic, and splitting the
//! same bytes anywhere must yield the same events.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ztai_gateway::sse::SseParser;

fuzz_target!(|data: &[u8]| {
    let split = data.first().map(|b| usize::from(*b)).unwrap_or(0) % (data.len() + 1);
    let (a, b) = data.split_at(split);
    let mut whole = SseParser::new(4096);
    let mut e1 = Vec::new();
    let r1 = whole.feed(data, &mut e1);
    let mut parts = SseParser::new(4096);
    let mut e2 = Vec::new();
    let r2 = parts.feed(a, &mut e2).and_then(|_| parts.feed(b, &mut e2));
    if r1.is_ok() && r2.is_ok() {
        assert_eq!(e1, e2);
    }
});
