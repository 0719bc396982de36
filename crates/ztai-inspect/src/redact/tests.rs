use super::*;
use proptest::prelude::*;

fn inspector() -> Inspector {
    Inspector::with_default_rules().unwrap()
}

fn redact_all(text: &str) -> String {
    let i = inspector();
    let f = i.inspect(text, Channel::Output).unwrap();
    redact(text, &f, &[FindingCategory::Secret, FindingCategory::Pii])
}

fn stream(text: &str, cuts: &[usize], window: usize) -> String {
    let r = StreamRedactor::new(
        vec![FindingCategory::Secret, FindingCategory::Pii],
        Channel::Output,
    )
    .with_window(window);
    stream_through(r, text, cuts)
}

/// Feeds `text` to `r` cut at `cuts` (those on char boundaries, in order) and returns all it
/// released.
fn stream_through(mut r: StreamRedactor, text: &str, cuts: &[usize]) -> String {
    let i = inspector();
    let mut out = String::new();
    let mut pos = 0;
    for &c in cuts {
        let c = c.min(text.len());
        if c <= pos || !text.is_char_boundary(c) {
            continue;
        }
        out.push_str(&r.push(&i, &text[pos..c]).unwrap());
        pos = c;
    }
    out.push_str(&r.push(&i, &text[pos..]).unwrap());
    out.push_str(&r.finish(&i).unwrap());
    out
}

const KEY: &str = "AKIAIOSFODNN7EXAMPLF";
const GH: &str = "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789";

#[test]
fn whole_text_redaction_replaces_values_with_typed_placeholders() {
    let text = format!("mail bob@example.com key {KEY} card 4111 1111 1111 1111 end");
    assert_eq!(
        redact_all(&text),
        "mail [EMAIL] key [AWS_ACCESS_KEY_ID] card [CREDIT_CARD] end"
    );
}

#[test]
fn redaction_is_idempotent() {
    let once = redact_all(&format!("a {KEY} b x@y.io"));
    assert_eq!(redact_all(&once), once);
}

#[test]
fn overlapping_findings_merge_so_no_fragment_survives() {
    let text = "0123456789";
    let f = |s, e| Finding {
        kind: "k".into(),
        category: FindingCategory::Secret,
        severity: ztai_core::Severity::High,
        confidence: 1.0,
        detector: "t",
        span: Span::new(s, e),
        channel: Channel::Output,
    };
    assert_eq!(redact(text, &[f(2, 5), f(4, 8)], &[]), "01[K]89");
    assert_eq!(redact(text, &[f(2, 8), f(3, 4)], &[]), "01[K]89");
    // Spans past the end or inside a multi-byte char are clamped, never panic.
    assert_eq!(redact("héllo", &[f(2, 99)], &[]), "h[K]");
}

#[test]
fn category_filter_leaves_other_findings_alone() {
    let text = format!("x@y.io {KEY}");
    let i = inspector();
    let f = i.inspect(&text, Channel::Output).unwrap();
    assert_eq!(
        redact(&text, &f, &[FindingCategory::Secret]),
        "x@y.io [AWS_ACCESS_KEY_ID]"
    );
}

#[test]
fn a_secret_split_across_two_chunks_is_redacted_before_release() {
    let text = format!("here is the token {GH} and more text after it");
    let split = text.find("ghp_").unwrap() + 10;
    let i = inspector();
    let mut r = StreamRedactor::new(vec![FindingCategory::Secret], Channel::Output).with_window(64);
    let first = r.push(&i, &text[..split]).unwrap();
    assert!(
        !first.contains("ghp_"),
        "no byte of the token before it is complete: {first:?}"
    );
    let rest = r.push(&i, &text[split..]).unwrap() + &r.finish(&i).unwrap();
    let all = first + &rest;
    assert_eq!(
        all,
        "here is the token [GITHUB_TOKEN] and more text after it"
    );
    assert_eq!(r.findings().len(), 1);
    assert_eq!(
        &text[r.findings()[0].span.start..r.findings()[0].span.end],
        GH
    );
}

#[test]
fn private_key_blocks_are_held_until_their_end_marker() {
    let body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7".repeat(20);
    let text = format!("key:\n-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\nok");
    let cuts: Vec<usize> = (1..text.len()).step_by(37).collect();
    let out = stream(&text, &cuts, 64);
    assert_eq!(out, "key:\n[PRIVATE_KEY]\nok");
}

#[test]
fn multibyte_text_streams_without_splitting_chars() {
    let text = "日本語のテキスト bob@example.com 終わり ünïcödé";
    let cuts: Vec<usize> = (0..text.len()).collect();
    assert_eq!(stream(text, &cuts, 8), redact_all(text));
}

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,12}".prop_map(|s| s),
        Just(KEY.to_string()),
        Just(GH.to_string()),
        Just("alice.smith@example.org".to_string()),
        Just("4111 1111 1111 1111".to_string()),
        Just("sk_live_4eC39HqLyjWDarjtT1zdp7dc".to_string()),
        "[ -~]{0,16}".prop_map(|s| s),
        "\\PC{0,6}".prop_map(|s| s),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    // For any split of a stream into chunks, the released text equals whole-text redaction and
    // holds no fragment of a secret.
    #[test]
    fn streaming_equals_whole_text_redaction_for_any_chunking(
        tokens in proptest::collection::vec(token(), 0..30),
        cuts in proptest::collection::vec(0usize..2000, 0..40),
        window in 48usize..300,
    ) {
        let text = tokens.join(" ");
        let mut cuts = cuts;
        cuts.sort();
        let out = stream(&text, &cuts, window);
        prop_assert_eq!(&out, &redact_all(&text));
        for secret in [KEY, GH, "alice.smith@example.org", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"] {
            prop_assert!(!out.contains(&secret[..secret.len().min(12)]) || !text.contains(secret));
        }
    }

    // A stream redacted through a session's redactor gives the same text as the whole answer
    // redacted by a fresh redactor with the same key, for any chunking, and its tokens come back.
    #[test]
    fn session_redaction_of_a_stream_equals_whole_text_redaction(
        tokens in proptest::collection::vec(token(), 0..20),
        cuts in proptest::collection::vec(0usize..1500, 0..30),
        numbered in any::<bool>(),
    ) {
        let mode = if numbered { Replacement::Numbered } else { Replacement::Token };
        let text = tokens.join(" ");
        let mut cuts = cuts;
        cuts.sort();
        let i = inspector();
        let cats = vec![FindingCategory::Secret, FindingCategory::Pii];
        let shared = std::sync::Arc::new(std::sync::Mutex::new(Redactor::new(mode, [9; 32])));
        let r = StreamRedactor::new(cats.clone(), Channel::Output).with_redactor(shared.clone());
        let out = stream_through(r, &text, &cuts);
        let mut whole = Redactor::new(mode, [9; 32]);
        let f = i.inspect(&text, Channel::Output).unwrap();
        prop_assert_eq!(&out, &whole.redact(&text, &f, &cats));
        if mode == Replacement::Token {
            prop_assert_eq!(shared.lock().unwrap().reveal(&out), text);
        }
    }

    #[test]
    fn redaction_never_panics_and_is_idempotent(text in "\\PC{0,200}") {
        let once = redact_all(&text);
        prop_assert_eq!(redact_all(&once), once);
    }
}

#[test]
fn cards_side_by_side_are_found_wherever_a_stream_window_starts() {
    // Found by the property test: a window starting mid-card used to misalign the search and
    // release a whole card unredacted.
    let card = "4111 1111 1111 1111";
    let text = format!("{card} {card} {card} {card} {card} alice.smith@example.org {GH}");
    for window in [20, 33, 47, 66, 100] {
        assert_eq!(
            stream(&text, &[], window),
            redact_all(&text),
            "window {window}"
        );
        assert!(!stream(&text, &[], window).contains("4111"));
    }
}

mod replacement_modes {
    use crate::{Inspector, Redactor, Replacement};
    use ztai_core::Channel;

    const TEXT: &str = "mail jane@example.com, then bob@example.org, then jane@example.com again";

    fn redacted(r: &mut Redactor, text: &str) -> String {
        let inspector = Inspector::with_default_rules().unwrap();
        let findings = inspector.inspect(text, Channel::Output).unwrap();
        r.redact(text, &findings, &[ztai_core::FindingCategory::Pii])
    }

    #[test]
    fn numbered_placeholders_keep_one_number_per_value() {
        let mut r = Redactor::new(Replacement::Numbered, [1; 32]);
        assert_eq!(
            redacted(&mut r, TEXT),
            "mail [EMAIL_1], then [EMAIL_2], then [EMAIL_1] again"
        );
    }

    #[test]
    fn masks_keep_the_shape_and_nothing_else() {
        let mut r = Redactor::new(Replacement::Mask, [1; 32]);
        let out = redacted(&mut r, "mail jane@example.com now");
        assert_eq!(
            out,
            format!("mail {} now", "*".repeat("jane@example.com".len()))
        );
    }

    #[test]
    fn hashes_are_keyed_per_session() {
        let mut a = Redactor::new(Replacement::Hash, [1; 32]);
        let mut b = Redactor::new(Replacement::Hash, [2; 32]);
        let (ra, rb) = (redacted(&mut a, TEXT), redacted(&mut b, TEXT));
        assert!(!ra.contains("jane") && !ra.contains("example"), "{ra}");
        // Equal values hash equally within a session, differently across sessions.
        let first = ra.split(", ").next().unwrap().to_string();
        assert!(
            ra.ends_with(&format!("{} again", first.trim_start_matches("mail "))),
            "{ra}"
        );
        assert_ne!(ra, rb);
    }

    #[test]
    fn tokens_come_back_only_through_their_own_session() {
        let mut mine = Redactor::new(Replacement::Token, [3; 32]);
        let other = Redactor::new(Replacement::Token, [4; 32]);
        let out = redacted(&mut mine, TEXT);
        assert!(!out.contains("jane@") && out.contains(":tok_"), "{out}");
        assert_eq!(mine.reveal(&out), TEXT);
        assert_eq!(
            other.reveal(&out),
            out,
            "another session cannot reverse them"
        );
        // Redacting the redacted text changes nothing: tokens are not personal data.
        let again = redacted(&mut mine, &out);
        assert_eq!(again, out);
        assert!(
            !format!("{mine:?}").contains("jane"),
            "Debug never prints the vault"
        );
    }

    #[test]
    fn tokens_are_listed_by_kind_and_only_this_sessions_are_put_back() {
        let mut mine = Redactor::new(Replacement::Token, [5; 32]);
        let out = redacted(
            &mut mine,
            "write to jane@example.com or 4111 1111 1111 1111",
        );
        let kinds: Vec<String> = mine.tokens_in(&out).into_iter().map(|t| t.kind).collect();
        assert_eq!(kinds, ["email", "credit_card"], "{out}");
        // Brackets that are not tokens, a forged token, and a token of another session are left
        // as they are; overlapping brackets do not hide a real token.
        let other = {
            let mut o = Redactor::new(Replacement::Token, [6; 32]);
            redacted(&mut o, "jane@example.com")
        };
        let mixed = format!("[note] [[{out}] [EMAIL:tok_00000000000000000000] {other} [");
        let back = mine.reveal(&mixed);
        assert!(
            back.contains("jane@example.com or 4111 1111 1111 1111"),
            "{back}"
        );
        assert!(back.contains("[EMAIL:tok_00000000000000000000]"), "{back}");
        assert!(back.contains(&other), "{back}");
        assert!(back.starts_with("[note] [["), "{back}");
        assert_eq!(mine.tokens_in(&mixed).len(), 2);
    }

    #[test]
    fn a_full_session_still_redacts_but_remembers_nothing_more() {
        let mut r = Redactor::new(Replacement::Token, [7; 32]).with_max_values(1);
        let out = redacted(&mut r, TEXT);
        assert!(!out.contains("jane@") && !out.contains("bob@"), "{out}");
        assert_eq!(r.tokens(), 1);
        // The first value keeps its token; the second is hashed, not revealable.
        let back = r.reveal(&out);
        assert_eq!(back.matches("jane@example.com").count(), 2, "{back}");
        assert!(!back.contains("bob@"), "{back}");
        // A byte cap works the same way: a long value does not fit, short ones still do.
        let mut b = Redactor::new(Replacement::Token, [7; 32]).with_max_bytes(80);
        let long = format!("mail {}@example.com and bob@example.org", "x".repeat(60));
        let out = redacted(&mut b, &long);
        assert!(!out.contains("xxxx") && !out.contains("bob@"), "{out}");
        assert_eq!(b.tokens(), 1, "{out}");
        assert_eq!(b.reveal(&out).matches("bob@example.org").count(), 1);
        let mut n = Redactor::new(Replacement::Numbered, [7; 32]).with_max_values(1);
        assert_eq!(
            redacted(&mut n, TEXT),
            "mail [EMAIL_1], then [EMAIL], then [EMAIL_1] again"
        );
    }

    #[test]
    fn modes_parse_by_name() {
        for (name, mode) in [
            ("placeholder", Replacement::Placeholder),
            ("numbered", Replacement::Numbered),
            ("mask", Replacement::Mask),
            ("hash", Replacement::Hash),
            ("token", Replacement::Token),
        ] {
            assert_eq!(Replacement::parse(name), Some(mode));
        }
        assert_eq!(Replacement::parse("shred"), None);
    }
}
