//! Person names and street addresses: the personal data with no checksum to validate.
//!
//! A name is found by what surrounds it, not by what it is: a title (`Dr.`, `Mrs.`), a phrase
//! that introduces one (`my name is`, `Dear`, `directed by`), or a given name from our gazetteer
//! followed by a capitalised surname. An address is a house number with a street word in the
//! shapes the common address styles use (`12 Timms Drive`, `Parijsstraat 8`, `Rua do Arenque
//! 1634`, `P.O. Box 287`, `Suite 757`). Both are heuristics with measured recall (see
//! BENCHMARKS.md); they are low severity so a policy can choose to act on them or not.

use crate::InspectError;
use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;
use std::collections::HashSet;
use ztai_core::{Channel, Finding, FindingCategory, Severity, Span};

const FIRST_NAMES: &str = include_str!("../../data/first-names.txt");

/// Phrases after which a capitalised name is a person, with whether the name may be written in
/// lower case there (people type `my name is lena andersson`).
const INTRODUCERS: &[(&str, bool)] = &[
    ("my name is ", true),
    ("name is ", false),
    ("name: ", true),
    ("my name's ", true),
    ("call me ", false),
    ("dear ", false),
    ("directed by ", false),
    ("written by ", false),
    ("sung by ", false),
    ("produced by ", false),
    ("signed by ", false),
    ("assistant to ", false),
    ("follow up with ", true),
    ("change it to ", false),
    ("correct it to ", false),
    ("last name ", false),
    ("last name is ", true),
    ("first name ", false),
    ("first name is ", true),
    ("surname ", false),
    ("regards, ", false),
    ("sincerely, ", false),
    ("attn: ", false),
    ("patient ", false),
    ("user ", false),
    ("contact ", false),
    ("customer ", false),
    ("employee ", false),
];

/// The name tokens after an introducer: up to three words, optionally a middle initial.
const NAME: &str = r"\p{Lu}[\p{Ll}'’-]+(?: (?:\p{Lu}\.? )?\p{Lu}[\p{Ll}'’-]+){0,2}";
const LOWER_NAME: &str = r"\p{L}[\p{Ll}'’-]+(?: (?:\p{L}\.? )?\p{L}[\p{Ll}'’-]+){0,1}";

#[derive(Debug)]
pub(super) struct People {
    name_at: Regex,
    lower_name_at: Regex,
    full_name_at: Regex,
    introducers: AhoCorasick,
    first_names: HashSet<&'static str>,
    street_en: Regex,
    street_compound: Regex,
    street_romance: Regex,
    street_box: Regex,
}

fn build(p: &str) -> Result<Regex, InspectError> {
    Regex::new(p).map_err(|e| InspectError::Build {
        detector: "pii",
        message: e.to_string(),
    })
}

fn found(kind: &str, severity: Severity, start: usize, end: usize, channel: Channel) -> Finding {
    Finding {
        kind: kind.into(),
        category: FindingCategory::Pii,
        severity,
        confidence: 0.6,
        detector: "pii",
        span: Span::new(start, end),
        channel,
    }
}

impl People {
    pub(super) fn new() -> Result<Self, InspectError> {
        // Searched in an ASCII-lowercased copy, case-sensitively, so the SIMD prefilter applies.
        let introducers = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(INTRODUCERS.iter().map(|(w, _)| *w))
            .map_err(|e| InspectError::Build {
                detector: "pii",
                message: format!("name introducers: {e}"),
            })?;
        let first_names = FIRST_NAMES
            .lines()
            .filter(|l| !l.starts_with('#'))
            .flat_map(str::split_whitespace)
            .collect();
        Ok(People {
            name_at: build(&format!(r"\A{NAME}"))?,
            lower_name_at: build(&format!(r"\A{LOWER_NAME}"))?,
            full_name_at: build(
                r"\A\p{Lu}\p{Ll}+(?: \p{Lu}\.?)? \p{Lu}[\p{Ll}'’-]+(?:-\p{Lu}[\p{Ll}'’-]+)?",
            )?,
            introducers,
            first_names,
            street_en: build(
                r"[0-9]{1,6}[A-Za-z]?(?: (?:St\.|\p{Lu}[\p{Ll}'’-]+))(?: \p{Lu}[\p{Ll}'’-]+){0,3} (?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Parkway|Pkwy|Highway|Hwy|Square|Sq|Circle|Cir|Trail|Crescent|Close|Grove|Row|Greens?|Gardens|Hill|Park|Mews|Walk|View|Ridge|Loop|Path|Pike|Alley|Plaza|Point|Heights|Meadows?|Crossing|Estates?)\b\.?(?: (?:North|South|East|West))?(?:,?\s(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Room|#)\.? ?[0-9A-Za-z-]{1,6}){0,2}",
            )?,
            street_compound: build(
                r"\p{Lu}\p{Ll}{2,}(?:straße|strasse|str\.|weg|gasse|platz|allee|damm|ufer|gatan|vägen|gränd|torget|gade|vej|veien|vegen|vei|stien|gata|laan|straat|plein|kade|gracht|katu|tie|polku|kuja|utca|tun|bakken|haugen) [0-9]{1,4}[A-Za-z]?\b(?:,?\s(?:Apt|Apartment|Suite|Unit|Flat)\.? ?[0-9A-Za-z-]{1,6}){0,2}",
            )?,
            street_romance: build(
                r"(?:[0-9]{1,5},? )?(?:Rue|rue|Avenue|Boulevard|Chemin|Impasse|Allée|Via|Viale|Piazza|Corso|Calle|Avenida|Paseo|Plaza|Carrer|Rua|Travessa|Largo|Praça|ul\.|ulica|Ulitsa|Strada)(?: (?:de|del|de la|des|du|da|do|dos|das|di|della|dei|al|el|la|le))* \p{Lu}[\p{L}'’-]+(?: \p{Lu}[\p{L}'’-]+){0,3}(?:,? [0-9]{1,5}[A-Za-z]?\b)?(?:,?\s(?:Apt|Apartment|Suite|Unit|Flat)\.? ?[0-9A-Za-z-]{1,6}){0,2}",
            )?,
            street_box: build(
                r"\b(?:P\.? ?O\.? Box|PO Box|PSC|CMR|Unit|Apt\.?|Apartment|Suite) [0-9]{1,6}\b(?:,? Box [0-9]{1,6}\b)?",
            )?,
        })
    }

    /// `lower` is `text` with ASCII letters lower-cased (same byte offsets).
    pub(super) fn detect(
        &self,
        text: &str,
        lower: &str,
        channel: Channel,
        out: &mut Vec<Finding>,
        gated: bool,
    ) {
        // Titles and gazetteer names need a capital letter; addresses need a digit.
        let has_upper = !gated || text.chars().any(char::is_uppercase);
        let start = out.len();
        if !gated || text.bytes().any(|b| b.is_ascii_digit()) {
            self.detect_addresses(text, channel, out);
        }
        let addresses: Vec<Span> = out
            .get(start..)
            .unwrap_or_default()
            .iter()
            .map(|f| f.span)
            .collect();
        self.detect_names(text, lower, channel, out, has_upper, &addresses);
    }

    fn detect_names(
        &self,
        text: &str,
        lower: &str,
        channel: Channel,
        out: &mut Vec<Finding>,
        has_upper: bool,
        addresses: &[Span],
    ) {
        let mut names: Vec<(usize, usize)> = Vec::new();
        if has_upper {
            self.capitalised_names(text, lower, &mut names);
        }
        for m in self.introducers.find_iter(lower) {
            let Some(&(_, lower_ok)) = INTRODUCERS.get(m.pattern().as_usize()) else {
                continue;
            };
            // The phrase must start a word.
            let starts_word = m.start() == 0
                || text
                    .get(..m.start())
                    .and_then(|h| h.chars().next_back())
                    .is_none_or(|c| !c.is_alphanumeric());
            let Some(rest) = text.get(m.end()..) else {
                continue;
            };
            if !starts_word {
                continue;
            }
            let hit = self
                .name_at
                .find(rest)
                .or_else(|| lower_ok.then(|| self.lower_name_at.find(rest)).flatten());
            if let Some(n) = hit {
                let word = rest.get(..n.end()).unwrap_or_default();
                if !is_common_word(word) {
                    names.push((m.end() + n.start(), m.end() + n.end()));
                }
            }
        }
        names.sort_unstable();
        let mut last_end = 0;
        for (s, e) in names {
            // A street named after a person is an address, which was found first.
            let in_address = addresses.iter().any(|a| a.start < e && s < a.end);
            if s >= last_end && !in_address {
                out.push(found("person", Severity::Low, s, e, channel));
                last_end = e;
            }
        }
    }

    /// Names led by a title (`Dr. Cettina Fanucci`) or by a given name from the gazetteer
    /// (`Thelma Mitchell`), found by walking the capitalised words: prose has few, and an
    /// anchored match at each is far cheaper than a Unicode regex over the whole text.
    /// Whether `word` is in the gazetteer; `lower` is the same bytes ASCII-lower-cased, which
    /// spares an allocation for the common all-ASCII word.
    fn is_first_name(&self, word: &str, lower: Option<&str>) -> bool {
        match lower {
            Some(l) if word.is_ascii() => self.first_names.contains(l),
            _ => self.first_names.contains(word.to_lowercase().as_str()),
        }
    }

    pub(super) fn capitalised_names(
        &self,
        text: &str,
        lower: &str,
        names: &mut Vec<(usize, usize)>,
    ) {
        let bytes = text.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            // Candidates: ASCII capitals and the lead byte of any non-ASCII character.
            if !(b.is_ascii_uppercase() || b >= 0xC0) {
                continue;
            }
            let Some(rest) = text.get(i..) else {
                continue;
            };
            let Some(c) = rest.chars().next() else {
                continue;
            };
            let prev = text.get(..i).and_then(|h| h.chars().next_back());
            if !c.is_uppercase() || prev.is_some_and(char::is_alphanumeric) {
                continue;
            }
            let word_len = rest
                .find(|ch: char| !ch.is_alphabetic())
                .unwrap_or(rest.len());
            let word = rest.get(..word_len).unwrap_or_default();
            if TITLES.contains(&word) {
                let after = rest.get(word_len..).unwrap_or_default();
                let after = after.strip_prefix('.').unwrap_or(after);
                let skipped = rest.len() - after.len();
                if let Some(tail) = after.strip_prefix(' ')
                    && let Some(m) = self.name_at.find(tail)
                {
                    let start = i + skipped + 1;
                    names.push((start + m.start(), start + m.end()));
                }
            } else if self.is_first_name(word, lower.get(i..i + word_len))
                && let Some(m) = self.full_name_at.find(rest)
            {
                let last = m.as_str().rsplit(' ').next().unwrap_or_default();
                if !STREET_WORDS.contains(&last) {
                    names.push((i, i + m.end()));
                }
            }
        }
    }

    fn detect_addresses(&self, text: &str, channel: Channel, out: &mut Vec<Finding>) {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for re in [
            &self.street_en,
            &self.street_compound,
            &self.street_romance,
            &self.street_box,
        ] {
            spans.extend(re.find_iter(text).map(|m| (m.start(), m.end())));
        }
        spans.sort_unstable_by_key(|&(s, e)| (s, std::cmp::Reverse(e)));
        let mut last_end = 0;
        for (s, e) in spans {
            if s >= last_end {
                out.push(found("street_address", Severity::Medium, s, e, channel));
                last_end = e;
            }
        }
    }
}

/// Titles that precede a name.
const TITLES: &[&str] = &[
    "Mr", "Mrs", "Ms", "Miss", "Mx", "Dr", "Prof", "Sir", "Dame", "Lady", "Lord", "Rev", "Capt",
    "Sgt", "Judge",
];

/// Words that end street names, so `Kimberly Way` is not read as a person.
const STREET_WORDS: &[&str] = &[
    "Street",
    "St",
    "Avenue",
    "Ave",
    "Road",
    "Rd",
    "Boulevard",
    "Lane",
    "Drive",
    "Court",
    "Way",
    "Place",
    "Terrace",
    "Parkway",
    "Highway",
    "Square",
    "Circle",
    "Trail",
    "Crescent",
    "Close",
    "Grove",
    "Row",
    "Green",
    "Greens",
    "Gardens",
    "Hill",
    "Park",
    "Mews",
    "Walk",
    "View",
    "Ridge",
    "Pass",
    "Bypass",
    "Flat",
    "Lodge",
    "Fort",
    "Bridge",
    "Station",
    "Plaza",
    "Heights",
    "Crossing",
];

/// Capitalised words that introducer phrases are often followed by but that are not names.
fn is_common_word(word: &str) -> bool {
    const WORDS: &[&str] = &[
        "The", "This", "That", "A", "An", "It", "Is", "I", "We", "You", "He", "She", "They", "Not",
        "No", "Yes", "Sir", "Madam", "All", "Team", "Customer", "User", "Support", "Please",
        "Thanks", "Thank", "Hello", "Hi", "Mr", "Mrs", "Ms", "Miss", "Mx", "Dr", "Prof",
    ];
    let first = word.split(' ').next().unwrap_or(word);
    WORDS.contains(&first)
}
