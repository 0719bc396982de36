//! Custom dictionaries: an organisation's own terms (confidential project names, client names,
//! banned topics) found as whole words, whatever their case or obfuscation.
//!
//! Every dictionary is compiled into one Aho-Corasick automaton, so a thousand terms cost one
//! pass. The detector runs on the normalised view (see `normalize`), so a term spelt with
//! look-alike letters or split by invisible characters is still found, and its span maps back to
//! the original text for redaction.

use crate::{Detector, InspectError};
use aho_corasick::{AhoCorasick, MatchKind};
use ztai_core::{Channel, Finding, FindingCategory, Severity, Span};

/// The most terms all dictionaries together may hold.
pub const MAX_TERMS: usize = 100_000;
/// The longest term accepted, in bytes.
pub const MAX_TERM_BYTES: usize = 256;

/// One named list of terms and the severity of finding one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dictionary {
    /// Reported as the finding's type; lower-case letters, digits and `_`.
    pub name: String,
    pub severity: Severity,
    pub terms: Vec<String>,
}

impl Dictionary {
    /// Parses a term list: one term per line, blank lines and lines starting with `#` skipped,
    /// surrounding whitespace trimmed.
    pub fn parse(name: &str, severity: Severity, list: &str) -> Result<Self, InspectError> {
        let terms = list
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_string)
            .collect();
        let d = Dictionary {
            name: name.to_string(),
            severity,
            terms,
        };
        d.validate()?;
        Ok(d)
    }

    fn validate(&self) -> Result<(), InspectError> {
        let bad = |message: String| {
            Err(InspectError::Build {
                detector: "custom",
                message,
            })
        };
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return bad(format!(
                "dictionary name `{}` must be lower-case letters, digits and `_`",
                self.name
            ));
        }
        if self.terms.is_empty() {
            return bad(format!("dictionary `{}` has no terms", self.name));
        }
        if let Some(t) = self
            .terms
            .iter()
            .find(|t| t.trim().is_empty() || t.len() > MAX_TERM_BYTES)
        {
            return bad(format!(
                "dictionary `{}`: term `{}` is empty or longer than {MAX_TERM_BYTES} bytes",
                self.name,
                t.chars().take(40).collect::<String>()
            ));
        }
        Ok(())
    }
}

/// The custom-dictionary detector.
#[derive(Debug)]
pub struct CustomDictionaries {
    automaton: AhoCorasick,
    /// Pattern index → (dictionary name, severity).
    owner: Vec<(String, Severity)>,
}

impl CustomDictionaries {
    pub fn new(dictionaries: &[Dictionary]) -> Result<Self, InspectError> {
        let mut terms = Vec::new();
        let mut owner = Vec::new();
        for d in dictionaries {
            d.validate()?;
            for t in &d.terms {
                // Terms are matched against the normalised view, so they are normalised too
                // (`Ｐｒｏｊｅｃｔ` and `Project` are one term).
                let mut ignored = Vec::new();
                terms.push(
                    crate::normalize(t, Channel::Input, &mut ignored)
                        .as_str()
                        .to_string(),
                );
                owner.push((d.name.clone(), d.severity));
            }
        }
        if terms.len() > MAX_TERMS {
            return Err(InspectError::Build {
                detector: "custom",
                message: format!(
                    "{} dictionary terms is more than the limit of {MAX_TERMS}",
                    terms.len()
                ),
            });
        }
        let automaton = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&terms)
            .map_err(|e| InspectError::Build {
                detector: "custom",
                message: format!("dictionary automaton: {e}"),
            })?;
        Ok(CustomDictionaries { automaton, owner })
    }
}

/// Whether `start..end` is a whole word: no letter or digit runs on at either end (a term that
/// itself starts or ends with punctuation needs no boundary there).
fn whole_word(text: &str, start: usize, end: usize) -> bool {
    let inner_first = text.get(start..).and_then(|s| s.chars().next());
    let inner_last = text.get(..end).and_then(|s| s.chars().next_back());
    let before = text.get(..start).and_then(|s| s.chars().next_back());
    let after = text.get(end..).and_then(|s| s.chars().next());
    let joins = |outer: Option<char>, inner: Option<char>| matches!((outer, inner), (Some(o), Some(i)) if o.is_alphanumeric() && i.is_alphanumeric());
    !joins(before, inner_first) && !joins(after, inner_last)
}

impl Detector for CustomDictionaries {
    fn id(&self) -> &'static str {
        "custom"
    }

    fn categories(&self) -> &'static [FindingCategory] {
        &[FindingCategory::Custom]
    }

    fn detect(&self, text: &str, channel: Channel, out: &mut Vec<Finding>) {
        for m in self.automaton.find_iter(text) {
            if !whole_word(text, m.start(), m.end()) {
                continue;
            }
            let Some((name, severity)) = self.owner.get(m.pattern().as_usize()) else {
                continue;
            };
            out.push(Finding {
                kind: name.clone(),
                category: FindingCategory::Custom,
                severity: *severity,
                confidence: 1.0,
                detector: "custom",
                span: Span::new(m.start(), m.end()),
                channel,
            });
        }
    }

    fn on_normalized(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Inspector;

    fn dicts() -> CustomDictionaries {
        CustomDictionaries::new(&[
            Dictionary::parse(
                "codenames",
                Severity::High,
                "# projects\nBlue Falcon\nNightjar\n\n",
            )
            .unwrap(),
            Dictionary::parse("topics", Severity::Medium, "layoffs").unwrap(),
        ])
        .unwrap()
    }

    fn found(text: &str) -> Vec<(String, &str)> {
        let mut out = vec![];
        dicts().detect(text, Channel::Input, &mut out);
        out.iter()
            .map(|f| (f.kind.clone(), &text[f.span.start..f.span.end]))
            .collect()
    }

    #[test]
    fn terms_are_whole_words_in_any_case() {
        assert_eq!(
            found("Status of BLUE FALCON and nightjar; no layoffs."),
            vec![
                ("codenames".to_string(), "BLUE FALCON"),
                ("codenames".to_string(), "nightjar"),
                ("topics".to_string(), "layoffs")
            ]
        );
        assert!(found("Nightjars and bluefalcon are not the terms").is_empty());
    }

    #[test]
    fn obfuscated_terms_are_found_through_the_normalised_view() {
        let inspector = Inspector::new(vec![Box::new(dicts())], crate::DEFAULT_MAX_BYTES);
        // Cyrillic і and о, and a zero-width space inside the word.
        let text = "ask about N\u{0456}ght\u{200b}jar t\u{043e}day";
        let findings = inspector.inspect(text, Channel::Input).unwrap();
        let custom: Vec<&str> = findings
            .iter()
            .filter(|f| f.category == FindingCategory::Custom)
            .map(|f| &text[f.span.start..f.span.end])
            .collect();
        assert_eq!(custom, vec!["N\u{0456}ght\u{200b}jar"]);
    }

    #[test]
    fn bad_dictionaries_are_refused_with_the_reason() {
        let err = Dictionary::parse("Bad Name", Severity::Low, "x").unwrap_err();
        assert!(err.to_string().contains("lower-case"), "{err}");
        let err = Dictionary::parse("empty", Severity::Low, "# only a comment\n").unwrap_err();
        assert!(err.to_string().contains("no terms"), "{err}");
        let long = "x".repeat(MAX_TERM_BYTES + 1);
        assert!(Dictionary::parse("long", Severity::Low, &long).is_err());
    }
}
