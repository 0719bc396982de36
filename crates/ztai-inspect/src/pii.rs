//! Personal data with validation: a match counts only when its structure checks out (Luhn and
//! issuer ranges for cards, a real top-level-domain shape for email), which is what keeps order
//! numbers and version strings from being flagged.

use crate::{Detector, InspectError};
use regex::Regex;
use ztai_core::{Channel, Finding, FindingCategory, Severity, Span};

/// The PII detector.
#[derive(Debug)]
pub struct PiiDetector {
    email: Regex,
    card: Regex,
}

impl PiiDetector {
    pub fn new() -> Result<Self, InspectError> {
        let build = |p: &str| {
            Regex::new(p).map_err(|e| InspectError::Build {
                detector: "pii",
                message: e.to_string(),
            })
        };
        Ok(PiiDetector {
            // Bounded parts keep every match within the streaming hold-back window.
            email: build(
                r"(?-u:\b)[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,4}[A-Za-z]{2,24}(?-u:\b)",
            )?,
            // Grouped layouts are matched group by group (4-4-4-4[-1..3], Amex 4-6-5) and a bare
            // run is 13-19 digits, so two cards side by side are never read as one run that
            // straddles both (which would make detection depend on where a scan starts).
            card: build(
                r"(?-u:\b)(?:[0-9]{4} [0-9]{4} [0-9]{4} [0-9]{4}(?: [0-9]{1,3})?|[0-9]{4}-[0-9]{4}-[0-9]{4}-[0-9]{4}(?:-[0-9]{1,3})?|[0-9]{4} [0-9]{6} [0-9]{5}|[0-9]{4}-[0-9]{6}-[0-9]{5}|[0-9]{13,19})(?-u:\b)",
            )?,
        })
    }
}

/// Luhn checksum over the ASCII digits of `digits`.
pub fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut double = false;
    for &d in digits.iter().rev() {
        if !d.is_ascii_digit() {
            return false;
        }
        let mut v = u32::from(d - b'0');
        if double {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
        double = !double;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// Whether the digits fall in a known issuer's range with that issuer's length.
fn issuer_known(d: &[u8]) -> bool {
    let prefix = |n: usize| -> u32 {
        d.iter()
            .take(n)
            .fold(0u32, |acc, &c| acc * 10 + u32::from(c.wrapping_sub(b'0')))
    };
    let len = d.len();
    let p1 = prefix(1);
    let p2 = prefix(2);
    let p3 = prefix(3);
    let p4 = prefix(4);
    let p6 = prefix(6);
    (p1 == 4 && matches!(len, 13 | 16 | 19)) // Visa
        || ((51..=55).contains(&p2) || (2221..=2720).contains(&p4)) && len == 16 // Mastercard
        || (p2 == 34 || p2 == 37) && len == 15 // Amex
        || (p4 == 6011 || p2 == 65 || (644..=649).contains(&p3) || (622126..=622925).contains(&p6))
            && (16..=19).contains(&len) // Discover
        || (3528..=3589).contains(&p4) && (16..=19).contains(&len) // JCB
        || ((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39) && (14..=19).contains(&len) // Diners
        || p2 == 62 && (16..=19).contains(&len) // UnionPay
        || (p4 == 5018 || p4 == 5020 || p4 == 5038 || p4 == 6304 || p4 == 6759 || p4 == 6761 || p4 == 6763)
            && (12..=19).contains(&len) // Maestro
}

impl Detector for PiiDetector {
    fn id(&self) -> &'static str {
        "pii"
    }

    fn categories(&self) -> &'static [FindingCategory] {
        &[FindingCategory::Pii]
    }

    fn detect(&self, text: &str, channel: Channel, out: &mut Vec<Finding>) {
        // Exact gates that spare the scans on ordinary prose: every email holds an ASCII `@`,
        // and every card at least 13 ASCII digits.
        if text.as_bytes().contains(&b'@') {
            self.detect_emails(text, channel, out);
        }
        if text.bytes().filter(u8::is_ascii_digit).count() >= 13 {
            self.detect_cards(text, channel, out);
        }
    }
}

impl PiiDetector {
    pub(crate) fn detect_emails(&self, text: &str, channel: Channel, out: &mut Vec<Finding>) {
        for m in self.email.find_iter(text) {
            out.push(Finding {
                kind: "email".into(),
                category: FindingCategory::Pii,
                severity: Severity::Medium,
                confidence: 0.95,
                detector: "pii",
                span: Span::new(m.start(), m.end()),
                channel,
            });
        }
    }

    pub(crate) fn detect_cards(&self, text: &str, channel: Channel, out: &mut Vec<Finding>) {
        // A candidate that fails validation may overlap a real card that starts inside it, so
        // the search resumes one byte later rather than after the candidate: which cards are
        // found must not depend on where a scan starts (streams are scanned in windows).
        let mut pos = 0;
        while let Some(m) = self.card.find_at(text, pos) {
            let digits: Vec<u8> = m.as_str().bytes().filter(u8::is_ascii_digit).collect();
            if !(13..=19).contains(&digits.len()) || !luhn_valid(&digits) || !issuer_known(&digits)
            {
                pos = m.start() + 1;
                continue;
            }
            out.push(Finding {
                kind: "credit_card".into(),
                category: FindingCategory::Pii,
                severity: Severity::High,
                confidence: 0.95,
                detector: "pii",
                span: Span::new(m.start(), m.end()),
                channel,
            });
            pos = m.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(String, &str)> {
        let d = PiiDetector::new().unwrap();
        let mut out = vec![];
        d.detect(text, Channel::Output, &mut out);
        out.iter()
            .map(|f| (f.kind.clone(), &text[f.span.start..f.span.end]))
            .collect()
    }

    #[test]
    fn emails_are_found_with_exact_spans() {
        assert_eq!(
            found("write to jane.doe+ai@mail.example.co.uk, thanks"),
            vec![("email".to_string(), "jane.doe+ai@mail.example.co.uk")]
        );
        assert!(found("not an email: a@b, foo@bar, @handle").is_empty());
    }

    #[test]
    fn valid_cards_in_any_common_layout_are_found() {
        for card in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "5500-0000-0000-0004",
            "378282246310005",
            "6011000990139424",
        ] {
            let text = format!("card: {card}.");
            assert_eq!(
                found(&text),
                vec![("credit_card".to_string(), card)],
                "{card}"
            );
        }
    }

    #[test]
    fn only_ascii_digits_make_a_card() {
        // U+11DA0 is a Unicode decimal digit; a card must not swallow it.
        assert_eq!(
            found("4111 1111 1111 1111 \u{11da0}x"),
            vec![("credit_card".to_string(), "4111 1111 1111 1111")]
        );
    }

    #[test]
    fn luhn_failures_and_unknown_issuers_are_not_cards() {
        assert!(found("4111111111111112").is_empty(), "bad checksum");
        assert!(
            found("order 1234567812345670").is_empty(),
            "no issuer starts with 1"
        );
        assert!(found("phone 0000000000000").is_empty());
        assert!(!luhn_valid(b""));
        assert!(!luhn_valid(b"12a4"));
    }
}
