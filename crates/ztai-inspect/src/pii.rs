//! Personal data with validation: a candidate counts only when its structure checks out (Luhn
//! and issuer ranges for cards, country length and mod-97 for IBANs, invalid SSN areas refused,
//! base58check/bech32/EIP-55 for wallets, octet ranges for IP addresses), and the weaker shapes
//! (bare digit runs as phone numbers, dates, ID numbers, personal web sites) only next to a word
//! that says what they are. That is what keeps order numbers, versions and timestamps from being
//! flagged.
//!
//! Candidates come from bounded regexes (so the streaming redactor's window holds any match);
//! validators are pure functions in `checks`; names and street addresses, which have no
//! checksum, are in `people`. One case-insensitive pass over context words serves every
//! detector that needs context.

mod checks;
mod people;

use crate::{Detector, InspectError};
use aho_corasick::{AhoCorasick, MatchKind};
pub use checks::luhn_valid;
use regex::Regex;
use std::net::Ipv6Addr;
use ztai_core::{Channel, Finding, FindingCategory, Severity, Span};

/// What a context word announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Birth,
    Phone,
    Ssn,
    Website,
    DriverLicense,
    Passport,
    NationalId,
}

const CONTEXT_WORDS: &[(&str, Context)] = &[
    ("born", Context::Birth),
    ("birth", Context::Birth),
    ("dob", Context::Birth),
    ("d.o.b", Context::Birth),
    ("phone", Context::Phone),
    ("tel", Context::Phone),
    ("mobile", Context::Phone),
    ("cell", Context::Phone),
    ("fax", Context::Phone),
    ("call", Context::Phone),
    ("desk", Context::Phone),
    ("office", Context::Phone),
    ("contact", Context::Phone),
    ("reach", Context::Phone),
    ("whatsapp", Context::Phone),
    ("sms", Context::Phone),
    ("text me", Context::Phone),
    ("ssn", Context::Ssn),
    ("social security", Context::Ssn),
    ("ss#", Context::Ssn),
    ("my website", Context::Website),
    ("my site", Context::Website),
    ("my blog", Context::Website),
    ("my homepage", Context::Website),
    ("my home page", Context::Website),
    ("my page", Context::Website),
    ("my profile", Context::Website),
    ("my portfolio", Context::Website),
    ("website:", Context::Website),
    ("homepage:", Context::Website),
    ("personal site", Context::Website),
    ("driver's license", Context::DriverLicense),
    ("drivers license", Context::DriverLicense),
    ("driver license", Context::DriverLicense),
    ("driver's licence", Context::DriverLicense),
    ("driving licence", Context::DriverLicense),
    ("driving license", Context::DriverLicense),
    ("license number", Context::DriverLicense),
    ("licence number", Context::DriverLicense),
    ("passport", Context::Passport),
    ("national id", Context::NationalId),
    ("id number", Context::NationalId),
    ("identity number", Context::NationalId),
    ("identity card", Context::NationalId),
    ("id card", Context::NationalId),
    ("tax id", Context::NationalId),
    ("taxpayer id", Context::NationalId),
    ("national insurance", Context::NationalId),
    ("personal number", Context::NationalId),
    ("personnummer", Context::NationalId),
];

/// Context words found in a text: (end offset, what they announce), in text order.
struct Contexts(Vec<(usize, Context)>);

impl Contexts {
    fn any(&self, kind: Context) -> bool {
        self.0.iter().any(|(_, k)| *k == kind)
    }

    /// Whether a word of `kind` ends at most `within` bytes before `pos`.
    fn before(&self, kind: Context, pos: usize, within: usize) -> bool {
        self.0
            .iter()
            .any(|&(end, k)| k == kind && end <= pos && pos - end <= within)
    }
}

/// The PII detector.
#[derive(Debug)]
pub struct PiiDetector {
    email: Regex,
    card: Regex,
    phone: Regex,
    ssn: Regex,
    iban: Regex,
    ipv4: Regex,
    ipv6: Regex,
    /// An extension after a phone number (`ext. 204`, `x12`, `#3`), part of the finding.
    phone_extension: Regex,
    mac: Regex,
    wallet: Regex,
    date: Regex,
    url: Regex,
    id_value: Regex,
    contexts: AhoCorasick,
    people: people::People,
}

fn build(p: &str) -> Result<Regex, InspectError> {
    Regex::new(p).map_err(|e| InspectError::Build {
        detector: "pii",
        message: e.to_string(),
    })
}

fn pii(
    kind: &str,
    severity: Severity,
    confidence: f32,
    start: usize,
    end: usize,
    channel: Channel,
) -> Finding {
    Finding {
        kind: kind.into(),
        category: FindingCategory::Pii,
        severity,
        confidence,
        detector: "pii",
        span: Span::new(start, end),
        channel,
    }
}

/// Whether `start..end` is not part of a longer run of letters and digits, nor of a dotted,
/// dashed, slashed or coloned number (a version, date, time or address).
fn standalone(text: &str, start: usize, end: usize) -> bool {
    let b = text.as_bytes();
    let at = |i: usize| b.get(i).copied();
    let before_ok = start == 0
        || match at(start - 1) {
            Some(c) if c.is_ascii_alphanumeric() || c == b'_' => false,
            Some(b'.' | b'-' | b'/' | b':') => {
                !(start >= 2 && at(start - 2).is_some_and(|c| c.is_ascii_alphanumeric()))
            }
            _ => true,
        };
    let after_ok = match at(end) {
        None => true,
        Some(c) if c.is_ascii_alphanumeric() || c == b'_' => false,
        Some(b'.' | b'-' | b'/' | b':') => !at(end + 1).is_some_and(|c| c.is_ascii_digit()),
        _ => true,
    };
    before_ok && after_ok
}

fn overlaps_any(found: &[Finding], start: usize, end: usize) -> bool {
    found
        .iter()
        .any(|f| f.span.start < end && start < f.span.end)
}

fn digits_of(s: &str) -> Vec<u8> {
    s.bytes().filter(u8::is_ascii_digit).collect()
}

fn number(s: &[u8]) -> u32 {
    s.iter().fold(0u32, |acc, &c| {
        acc.saturating_mul(10)
            .saturating_add(u32::from(c.wrapping_sub(b'0')))
    })
}

impl PiiDetector {
    pub fn new() -> Result<Self, InspectError> {
        // Searched in an ASCII-lowercased copy, case-sensitively, so the SIMD prefilter applies.
        let contexts = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(CONTEXT_WORDS.iter().map(|(w, _)| *w))
            .map_err(|e| InspectError::Build {
                detector: "pii",
                message: format!("context words: {e}"),
            })?;
        // Bounded parts keep every match within the streaming hold-back window.
        Ok(PiiDetector {
            email: build(
                r"(?-u:\b)[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,4}[A-Za-z]{2,24}(?-u:\b)",
            )?,
            // Grouped layouts are matched group by group (4-4-4-4[-1..3], Amex 4-6-5) and a bare
            // run is 12-19 digits, so two cards side by side are never read as one run that
            // straddles both (which would make detection depend on where a scan starts).
            card: build(
                r"(?-u:\b)(?:[0-9]{4} [0-9]{4} [0-9]{4} [0-9]{4}(?: [0-9]{1,3})?|[0-9]{4}-[0-9]{4}-[0-9]{4}-[0-9]{4}(?:-[0-9]{1,3})?|[0-9]{4} [0-9]{6} [0-9]{5}|[0-9]{4}-[0-9]{6}-[0-9]{5}|[0-9]{12,19})(?-u:\b)",
            )?,
            phone: build(
                r"(?:\+[1-9][0-9]{0,2}[ .-]?)?(?:\(0\)[ .-]?)?(?:\([0-9]{1,5}\)[ .-]?)?[0-9]{1,15}(?:[ .-][0-9]{1,8}){0,6}",
            )?,
            phone_extension: build(r"^(?i:,? ?(?:ext\.?|extension|x|#) ?[0-9]{1,6})(?-u:\b)")?,
            ssn: build(r"[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3} [0-9]{2} [0-9]{4}|[0-9]{9}")?,
            iban: build(r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?")?,
            ipv4: build(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")?,
            // Hex groups with an embedded IPv4 tail (mapped `::ffff:192.0.2.1`, compatible,
            // NAT64) first, else plain groups; either with a zone (`fe80::1%eth0`).
            ipv6: build(
                r"(?:[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){1,6}:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7})(?:%[0-9A-Za-z_~-]{1,32}(?:\\.[0-9A-Za-z_~-]{1,16})?)?",
            )?,
            mac: build(
                r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}|[0-9A-Fa-f]{2}(?:-[0-9A-Fa-f]{2}){5}",
            )?,
            wallet: build(
                r"0x[0-9a-fA-F]{40}|bc1[02-9ac-hj-np-z]{11,71}|[13][1-9A-HJ-NP-Za-km-z]{25,34}",
            )?,
            date: build(
                r"(?i)[0-9]{1,2}/[0-9]{1,2}/(?:19|20)?[0-9]{2}|[0-9]{1,2}-[0-9]{1,2}-(?:19|20)[0-9]{2}|[0-9]{1,2}\.[0-9]{1,2}\.(?:19|20)[0-9]{2}|(?:19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}(?:[ T][0-9]{2}:[0-9]{2}(?::[0-9]{2})?)?|(?:19|20)[0-9]{2}[/.][0-9]{1,2}[/.][0-9]{1,2}|(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]{0,6}\.? [0-9]{1,2}(?:st|nd|rd|th)?,? (?:19|20)[0-9]{2}|[0-9]{1,2}(?:st|nd|rd|th)? (?:of )?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]{0,6}\.?,? (?:19|20)[0-9]{2}",
            )?,
            url: build(
                r#"(?:https?://|www\.)[A-Za-z0-9.-]{1,100}(?::[0-9]{1,5})?(?:/[^\s"'<>)\]]{0,200})?"#,
            )?,
            id_value: build(r"[A-Za-z0-9][A-Za-z0-9-]{4,19}")?,
            contexts,
            people: people::People::new()?,
        })
    }

    /// Context words in `lower`, the text with ASCII letters lower-cased.
    fn contexts(&self, lower: &str) -> Contexts {
        Contexts(
            self.contexts
                .find_iter(lower)
                .filter_map(|m| {
                    let (_, kind) = CONTEXT_WORDS.get(m.pattern().as_usize())?;
                    Some((m.end(), *kind))
                })
                .collect(),
        )
    }

    /// Runs every detector; with `gated`, the cheap exact gates skip those that cannot match.
    fn detect_all(&self, text: &str, channel: Channel, out: &mut Vec<Finding>, gated: bool) {
        let bytes = text.as_bytes();
        let digits = crate::gate::count_bytes(bytes, |b| b.is_ascii_digit());
        let colons = crate::gate::count_bytes(bytes, |b| b == b':');
        if !gated || bytes.contains(&b'@') {
            self.detect_emails(text, channel, out);
        }
        let lower = text.to_ascii_lowercase();
        let ctx = self.contexts(&lower);
        let mut numeric: Vec<Finding> = Vec::new();
        if !gated || digits >= 12 {
            self.detect_cards(text, channel, &mut numeric);
        }
        if !gated || digits >= 9 {
            self.detect_ibans(text, channel, &mut numeric);
            self.detect_ssns(text, channel, &ctx, &mut numeric);
        }
        let dashes = crate::gate::count_bytes(bytes, |b| b == b'-');
        if !gated || colons >= 5 || dashes >= 5 {
            self.detect_macs(text, channel, &mut numeric);
        }
        self.detect_dotted_macs(text, channel, &mut numeric);
        // IPv6 before IPv4, so a mapped address is one finding, not its IPv4 tail.
        if !gated || colons >= 2 {
            self.detect_ipv6(text, channel, &mut numeric);
        }
        if !gated || digits >= 4 {
            self.detect_ips(text, channel, &mut numeric);
        }
        if !gated || digits >= 1 {
            self.detect_wallets(text, channel, &mut numeric);
        }
        if !gated || digits >= 5 {
            self.detect_dates(text, channel, &ctx, &mut numeric);
        }
        if !gated
            || ctx.any(Context::DriverLicense)
            || ctx.any(Context::Passport)
            || ctx.any(Context::NationalId)
        {
            self.detect_id_numbers(text, channel, &ctx, &mut numeric);
        }
        if !gated || digits >= 7 {
            self.detect_phones(text, channel, &ctx, &mut numeric);
        }
        if !gated || ctx.any(Context::Website) {
            self.detect_websites(text, channel, &ctx, &mut numeric);
        }
        out.append(&mut numeric);
        self.people.detect(text, &lower, channel, out, gated);
    }

    pub(crate) fn detect_emails(&self, text: &str, channel: Channel, out: &mut Vec<Finding>) {
        for m in self.email.find_iter(text) {
            out.push(pii(
                "email",
                Severity::Medium,
                0.95,
                m.start(),
                m.end(),
                channel,
            ));
        }
    }

    pub(crate) fn detect_cards(&self, text: &str, channel: Channel, out: &mut Vec<Finding>) {
        // A candidate that fails validation may overlap a real card that starts inside it, so
        // the search resumes one byte later rather than after the candidate: which cards are
        // found must not depend on where a scan starts (streams are scanned in windows).
        let mut pos = 0;
        while let Some(m) = self.card.find_at(text, pos) {
            let digits = digits_of(m.as_str());
            if !(12..=19).contains(&digits.len())
                || !checks::luhn_valid(&digits)
                || !checks::issuer_known(&digits)
            {
                pos = m.start() + 1;
                continue;
            }
            out.push(pii(
                "credit_card",
                Severity::High,
                0.95,
                m.start(),
                m.end(),
                channel,
            ));
            pos = m.end();
        }
    }

    fn detect_ibans(&self, text: &str, channel: Channel, out: &mut Vec<Finding>) {
        for m in self.iban.find_iter(text) {
            let before = m
                .start()
                .checked_sub(1)
                .and_then(|i| text.as_bytes().get(i));
            if before.is_some_and(|b| b.is_ascii_alphanumeric()) {
                continue;
            }
            // The pattern may run into a following word; keep the country's length.
            let compact: Vec<u8> = m.as_str().bytes().filter(|b| *b != b' ').collect();
            let valid_len = (15..=compact.len())
                .rev()
                .find(|&n| compact.get(..n).is_some_and(checks::iban_valid));
            let Some(n) = valid_len else {
                continue;
            };
            // Map `n` compact characters back to an end offset in the text.
            let mut seen = 0;
            let mut end = m.start();
            for (i, b) in m.as_str().bytes().enumerate() {
                if b != b' ' {
                    seen += 1;
                }
                if seen == n {
                    end = m.start() + i + 1;
                    break;
                }
            }
            if standalone(text, m.start(), end) {
                out.push(pii("iban", Severity::High, 0.95, m.start(), end, channel));
            }
        }
    }

    fn detect_ssns(&self, text: &str, channel: Channel, ctx: &Contexts, out: &mut Vec<Finding>) {
        for m in self.ssn.find_iter(text) {
            if !standalone(text, m.start(), m.end()) || overlaps_any(out, m.start(), m.end()) {
                continue;
            }
            let d = digits_of(m.as_str());
            let (Some(a), Some(g), Some(s)) = (d.get(..3), d.get(3..5), d.get(5..)) else {
                continue;
            };
            if !checks::ssn_valid(number(a), number(g), number(s)) {
                continue;
            }
            let dashed = m.as_str().contains('-');
            let context = ctx.before(Context::Ssn, m.start(), 40);
            // Spaced and bare runs are too common to count without the word.
            if dashed || context {
                let confidence = if context { 0.95 } else { 0.75 };
                out.push(pii(
                    "us_ssn",
                    Severity::High,
                    confidence,
                    m.start(),
                    m.end(),
                    channel,
                ));
            }
        }
    }

    fn detect_ips(&self, text: &str, channel: Channel, out: &mut Vec<Finding>) {
        for m in self.ipv4.find_iter(text) {
            if !standalone(text, m.start(), m.end()) {
                continue;
            }
            let Ok(ip) = m.as_str().parse::<std::net::Ipv4Addr>() else {
                continue; // an octet above 255 or with a leading zero
            };
            if overlaps_any(out, m.start(), m.end()) {
                continue; // the tail of a mapped IPv6 address, already found whole
            }
            out.push(pii(
                "ip_address",
                ipv4_severity(ip),
                0.9,
                m.start(),
                m.end(),
                channel,
            ));
        }
    }

    /// IPv6 in every written form: full, compressed (`2001:db8::1`, `::1`), with an embedded
    /// IPv4 address (`::ffff:192.0.2.1`) and with a zone (`fe80::1%eth0`). Each is found and its
    /// severity says what it locates: loopback, unspecified, link-local, unique-local,
    /// multicast and documentation addresses locate a network, not a person (`low`); a mapped
    /// address is judged by the IPv4 address inside it.
    fn detect_ipv6(&self, text: &str, channel: Channel, out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        for m in self.ipv6.find_iter(text) {
            let before_ok = m.start() == 0
                || b.get(m.start() - 1)
                    .is_none_or(|c| !c.is_ascii_alphanumeric() && !matches!(c, b':' | b'.'));
            let after_ok = b.get(m.end()).is_none_or(|c| {
                !c.is_ascii_alphanumeric()
                    && *c != b':'
                    && !(*c == b'.' && next_is_alnum(b, m.end()))
            });
            if !before_ok || !after_ok || overlaps_any(out, m.start(), m.end()) {
                continue;
            }
            let (address, zone) = match m.as_str().split_once('%') {
                Some((a, z)) => (a, Some(z)),
                None => (m.as_str(), None),
            };
            let Ok(ip) = address.parse::<Ipv6Addr>() else {
                continue;
            };
            let groups = address.split(':').filter(|g| !g.is_empty()).count();
            let dotted = address.contains('.');
            // `a::b` is as often a path in code (`ab::cd`) as an address: a compressed form
            // with fewer than three groups needs a digit, and the unspecified `::` alone is
            // punctuation.
            let plausible = groups >= 3
                || dotted
                || zone.is_some()
                || (address.contains("::")
                    && groups >= 1
                    && address.bytes().any(|c| c.is_ascii_digit()));
            if !plausible {
                continue;
            }
            let severity = match ip.to_ipv4_mapped() {
                Some(v4) => ipv4_severity(v4),
                None => ipv6_severity(ip),
            };
            out.push(pii(
                "ip_address",
                severity,
                0.9,
                m.start(),
                m.end(),
                channel,
            ));
        }
    }

    fn detect_macs(&self, text: &str, channel: Channel, out: &mut Vec<Finding>) {
        for m in self.mac.find_iter(text) {
            if standalone(text, m.start(), m.end()) && !overlaps_any(out, m.start(), m.end()) {
                out.push(pii(
                    "mac_address",
                    Severity::Low,
                    0.85,
                    m.start(),
                    m.end(),
                    channel,
                ));
            }
        }
    }

    /// Cisco-style `0011.2233.4455`, found from each `.` rather than by a regex: prose is full
    /// of dots and hex letters, and a regex without a literal to anchor on scans every byte.
    fn detect_dotted_macs(&self, text: &str, channel: Channel, out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        let hex4 = |at: usize| {
            b.get(at..at + 4)
                .is_some_and(|s| s.iter().all(u8::is_ascii_hexdigit))
        };
        for (p, _) in text.match_indices('.') {
            let Some(start) = p.checked_sub(4) else {
                continue;
            };
            let end = start + 14;
            if hex4(start)
                && hex4(p + 1)
                && b.get(p + 5) == Some(&b'.')
                && hex4(p + 6)
                && standalone(text, start, end)
                && !overlaps_any(out, start, end)
            {
                out.push(pii("mac_address", Severity::Low, 0.85, start, end, channel));
            }
        }
    }

    fn detect_wallets(&self, text: &str, channel: Channel, out: &mut Vec<Finding>) {
        for m in self.wallet.find_iter(text) {
            if !standalone(text, m.start(), m.end()) {
                continue;
            }
            let s = m.as_str();
            let valid = if s.starts_with("0x") {
                checks::ethereum_address_valid(s)
            } else {
                checks::bitcoin_address_valid(s)
            };
            if valid {
                out.push(pii(
                    "crypto_wallet",
                    Severity::Medium,
                    0.9,
                    m.start(),
                    m.end(),
                    channel,
                ));
            }
        }
    }

    /// Calendar dates to the day. Next to a birth word one is a date of birth (medium); any
    /// other is reported as a `date` of low severity, as dates tied to a person are identifiers
    /// (HIPAA Safe Harbor lists them) and Presidio and LLM Guard report them too. Low keeps
    /// them out of verdicts at the default threshold while redaction can still take them.
    fn detect_dates(&self, text: &str, channel: Channel, ctx: &Contexts, out: &mut Vec<Finding>) {
        for m in self.date.find_iter(text) {
            if !standalone(text, m.start(), m.end()) || overlaps_any(out, m.start(), m.end()) {
                continue;
            }
            let date_part = m.as_str().split([' ', 'T']).next().unwrap_or_default();
            let iso = date_part.len() == 10 && date_part.as_bytes().get(4) == Some(&b'-');
            let checked = if iso { date_part } else { m.as_str() };
            if !date_plausible(checked) {
                continue;
            }
            if ctx.before(Context::Birth, m.start(), 60) {
                out.push(pii(
                    "date_of_birth",
                    Severity::Medium,
                    0.85,
                    m.start(),
                    m.end(),
                    channel,
                ));
            } else {
                out.push(pii("date", Severity::Low, 0.6, m.start(), m.end(), channel));
            }
        }
    }

    fn detect_id_numbers(
        &self,
        text: &str,
        channel: Channel,
        ctx: &Contexts,
        out: &mut Vec<Finding>,
    ) {
        for &(end, kind) in &ctx.0 {
            let label = match kind {
                Context::DriverLicense => "us_driver_license",
                Context::Passport => "passport_number",
                Context::NationalId => "national_id",
                _ => continue,
            };
            // The first word with two digits within 30 bytes after the context word
            // ("passport number is X12345678").
            let window_end = (end + 40).min(text.len());
            let Some(window) = text.get(end..window_end) else {
                continue;
            };
            let value = self.id_value.find_iter(window).find(|m| {
                m.start() <= 30
                    && m.as_str().bytes().filter(u8::is_ascii_digit).count() >= 2
                    && standalone(text, end + m.start(), end + m.end())
            });
            if let Some(v) = value {
                let (s, e) = (end + v.start(), end + v.end());
                if !overlaps_any(out, s, e) {
                    out.push(pii(label, Severity::High, 0.8, s, e, channel));
                }
            }
        }
    }

    fn detect_phones(&self, text: &str, channel: Channel, ctx: &Contexts, out: &mut Vec<Finding>) {
        for m in self.phone.find_iter(text) {
            // An extension written onto the number (`555-0132x12`) is part of it.
            let extension_end = text
                .get(m.end()..)
                .and_then(|rest| self.phone_extension.find(rest))
                .map_or(m.end(), |x| m.end() + x.end());
            let Some((s, e)) = phone_span(text, m.start(), m.end(), extension_end) else {
                continue;
            };
            if overlaps_any(out, s, e) {
                continue;
            }
            let Some(candidate) = text.get(s..e) else {
                continue;
            };
            let context = ctx.before(Context::Phone, s, 32);
            if let Some(confidence) = phone_confidence(candidate, context) {
                let e = if e == m.end() { extension_end } else { e };
                out.push(pii(
                    "phone_number",
                    Severity::Medium,
                    confidence,
                    s,
                    e,
                    channel,
                ));
            }
        }
    }

    fn detect_websites(
        &self,
        text: &str,
        channel: Channel,
        ctx: &Contexts,
        out: &mut Vec<Finding>,
    ) {
        for m in self.url.find_iter(text) {
            if ctx.before(Context::Website, m.start(), 24) && !overlaps_any(out, m.start(), m.end())
            {
                let end = m.start()
                    + m.as_str()
                        .trim_end_matches(['.', ',', ';', ':', '!', '?'])
                        .len();
                out.push(pii(
                    "personal_url",
                    Severity::Low,
                    0.8,
                    m.start(),
                    end,
                    channel,
                ));
            }
        }
    }
}

/// Internal and reserved IPv4 addresses locate a network, not a person.
fn ipv4_severity(ip: std::net::Ipv4Addr) -> Severity {
    let [a, b, ..] = ip.octets();
    let internal = ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_documentation()
        || ip.is_broadcast()
        || ip.is_multicast()
        // Shared address space (RFC 6598), carrier-grade NAT.
        || (a == 100 && b & 0xc0 == 64);
    if internal {
        Severity::Low
    } else {
        Severity::Medium
    }
}

/// As for IPv4: loopback, unspecified, unique-local (fc00::/7), link-local (fe80::/10),
/// multicast (ff00::/8) and documentation (2001:db8::/32, 3fff::/20) addresses are `low`.
fn ipv6_severity(ip: Ipv6Addr) -> Severity {
    let [s0, s1, ..] = ip.segments();
    let internal = ip.is_loopback()
        || ip.is_unspecified()
        || s0 & 0xfe00 == 0xfc00
        || s0 & 0xffc0 == 0xfe80
        || s0 & 0xff00 == 0xff00
        || (s0 == 0x2001 && s1 == 0x0db8)
        || s0 & 0xfff0 == 0x3ff0;
    if internal {
        Severity::Low
    } else {
        Severity::Medium
    }
}

/// Whether the byte after `at` + 1 is a letter or digit (a `.` inside a longer token).
fn next_is_alnum(b: &[u8], at: usize) -> bool {
    b.get(at + 1).is_some_and(|c| c.is_ascii_alphanumeric())
}

/// Whether a matched date string names a real day (month/day order either way round).
fn date_plausible(s: &str) -> bool {
    let nums: Vec<u32> = s
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .map(|p| number(p.as_bytes()))
        .collect();
    let year = |y: u32| if y < 100 { y + 1900 } else { y };
    match nums.as_slice() {
        // Month-name forms carry one or two numbers: the day and the year.
        [d, y] => (1..=31).contains(d) && (1900..=2100).contains(y),
        [a, b, c] if *a >= 1900 => checks::date_valid(*a, *b, *c),
        [a, b, c] => checks::date_valid(year(*c), *a, *b) || checks::date_valid(year(*c), *b, *a),
        _ => false,
    }
}

/// The span of a phone-number candidate after trimming what the pattern swept in: a leading
/// postcode (`30971 21 253 109 8211`), or `None` when the candidate is part of a longer number.
/// `extension_end` is where an extension written after the number ends (`end` without one).
fn phone_span(
    text: &str,
    start: usize,
    end: usize,
    extension_end: usize,
) -> Option<(usize, usize)> {
    if !standalone(text, start, extension_end) {
        return None;
    }
    let cand = text.get(start..end)?;
    let groups: Vec<(usize, usize)> = digit_groups(cand);
    let digits: usize = groups.iter().map(|(s, e)| e - s).sum();
    let first = groups.first()?;
    let plain_start = !cand.starts_with(['+', '(']);
    // A five-digit group first, followed by a number of its own, is a postcode.
    if plain_start
        && groups.len() > 2
        && first.1 - first.0 == 5
        && !cand.starts_with('0')
        && digits - 5 >= 7
    {
        let next = groups.get(1)?;
        return Some((start + next.0, end));
    }
    Some((start, end))
}

/// The digit runs of `s`, as byte ranges.
fn digit_groups(s: &str) -> Vec<(usize, usize)> {
    let mut groups = Vec::new();
    let mut cur: Option<usize> = None;
    for (i, b) in s.bytes().enumerate() {
        match (b.is_ascii_digit(), cur) {
            (true, None) => cur = Some(i),
            (false, Some(st)) => {
                groups.push((st, i));
                cur = None;
            }
            _ => {}
        }
    }
    if let Some(st) = cur {
        groups.push((st, s.len()));
    }
    groups
}

/// How sure a phone-number candidate is, or `None` when it is something else: a date, an IP
/// address, an SSN, a ZIP+4, years, a decimal, a large number written with separators, or a bare
/// digit run with no word saying it is a phone number.
fn phone_confidence(cand: &str, context: bool) -> Option<f32> {
    let groups = digit_groups(cand);
    let digits: usize = groups.iter().map(|(s, e)| e - s).sum();
    if !(7..=15).contains(&digits) {
        return None;
    }
    let lens: Vec<usize> = groups.iter().map(|(s, e)| e - s).collect();
    let group_str = |i: usize| {
        groups
            .get(i)
            .and_then(|&(s, e)| cand.get(s..e))
            .unwrap_or("")
    };
    let seps: Vec<&str> = groups
        .windows(2)
        .filter_map(|w| match (w.first(), w.get(1)) {
            (Some(a), Some(b)) => cand.get(a.1..b.0),
            _ => None,
        })
        .collect();
    let all_seps = |s: &str| !seps.is_empty() && seps.iter().all(|x| *x == s);
    let international = cand.starts_with('+');
    let area = cand.contains('(');
    let shape =
        |want: &[usize]| lens.len() == want.len() && lens.iter().zip(want).all(|(a, b)| a == b);
    if all_seps(".") && lens.len() == 4 && lens.iter().all(|l| *l <= 3) {
        return None; // IPv4
    }
    if !international && !area && lens.len() >= 3 {
        let (a, b, c) = (group_str(0), group_str(1), group_str(2));
        let sep_ok =
            seps.first().is_some_and(|s| *s == "-" || *s == ".") && seps.get(1) == seps.first();
        if sep_ok && date_plausible(&format!("{a}/{b}/{c}")) && (a.len() == 4 || c.len() == 4) {
            return None; // a date, perhaps followed by a time
        }
    }
    if all_seps("-") && (shape(&[3, 2, 4]) || shape(&[5, 4])) {
        return None; // SSN or ZIP+4
    }
    if lens.iter().all(|l| *l == 4)
        && (0..lens.len()).all(|i| matches!(group_str(i).get(..2), Some("19" | "20")))
    {
        return None; // years
    }
    if all_seps(".") && (lens.len() == 2 || lens.contains(&1)) {
        return None; // a decimal or a version
    }
    if (all_seps(" ") || all_seps(".") || all_seps(","))
        && (1..lens.len()).all(|i| lens.get(i) == Some(&3))
        && (1..lens.len()).any(|i| group_str(i) == "000")
    {
        return None; // 10 000 000
    }
    if lens.len() == 1 && !international {
        // A bare run needs the word.
        return context.then_some(0.7);
    }
    if lens.len() == 2 && !international && !area && !context && !cand.starts_with('0') {
        // Two groups alone are as often a house number and a postcode (`3178 254`).
        return None;
    }
    Some(if context || international { 0.9 } else { 0.6 })
}

impl Detector for PiiDetector {
    fn id(&self) -> &'static str {
        "pii"
    }

    fn categories(&self) -> &'static [FindingCategory] {
        &[FindingCategory::Pii]
    }

    fn detect(&self, text: &str, channel: Channel, out: &mut Vec<Finding>) {
        self.detect_all(text, channel, out, true);
    }
}

impl PiiDetector {
    /// Every detector, no gate skipped: the reference the gates are tested against.
    #[cfg(test)]
    pub(crate) fn detect_ungated(&self, text: &str, channel: Channel, out: &mut Vec<Finding>) {
        self.detect_all(text, channel, out, false);
    }
}

#[cfg(test)]
mod tests;
