//! Secrets: provider key formats, private keys, JWTs, credentials in URLs, headers, command lines
//! and generic assignments.
//!
//! Each rule (`rules.rs`) pairs a pattern with a `Check` its value must pass. Provider formats
//! are matched by their documented prefixes and lengths and must look random; context rules
//! (`password = …`, `Authorization: …`, `curl -u user:pass`) additionally reject placeholders,
//! template variables, identifiers and hashes, so configuration examples, documentation and
//! lock files are not flagged. The rejection heuristics live here, beside the checks that use
//! them, because they are what separates a detector people keep enabled from one they turn off.

mod rules;

use crate::gate::LiteralGate;
use crate::{Detector, InspectError};
use base64::Engine as _;
use regex::{Captures, Regex};
use rules::RULES;
use ztai_core::{Channel, Finding, FindingCategory, Severity, Span};

/// What a rule's value must satisfy beyond its pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// The format alone is conclusive.
    Format,
    /// Not a placeholder, and random enough for a generated token.
    Token,
    /// `Token`, and the value mixes upper case, lower case and digits (formats whose alphabet
    /// would otherwise admit ordinary words).
    MixedToken,
    /// `MixedToken`, and the case changes as often as in random text: for short prefixes
    /// (`rnd_`, `nfp_`) that camel-case identifiers (`rnd_generateSeed2024`) also start with.
    RandomToken,
    /// A PEM block with a body of real key material.
    PemBody,
    /// Header and payload decode to JSON objects, the header naming `alg` or `typ`.
    Jwt,
    /// A password or credential in context (URL, header): not a placeholder or a variable.
    Password,
    /// `user:password` on a command line: the password (or a lone user part) is the secret.
    UserPassword,
    /// A field of a configuration format (an XML element or `key`/`value` attribute pair, a
    /// URL query parameter, a connection-string keyword): group 1 is its name, which must say
    /// secret; a field named as a password holds one whatever it looks like (short, a word),
    /// unless it is a placeholder or a template; a key or token must look generated.
    NamedValue,
    /// `name = value`: the name says secret, the value is neither a placeholder nor an
    /// identifier, path or version, and looks generated.
    Assignment,
}

/// A compiled `RuleSpec`.
struct Rule {
    kind: &'static str,
    severity: Severity,
    regex: Regex,
    group: usize,
    check: Check,
    bounded: bool,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule").field("kind", &self.kind).finish()
    }
}

/// Words that mark a value as documentation rather than a credential.
const PLACEHOLDER_WORDS: &[&str] = &[
    "example",
    "placeholder",
    "changeme",
    "change_me",
    "your_",
    "your-",
    "yourkey",
    "dummy",
    "sample",
    "redacted",
    "xxxx",
    "<",
    ">",
    "${",
    "{{",
    "$(",
    "%s",
    "%(",
    "env(",
    "process.env",
    "os.environ",
    "getenv",
    "[redacted]",
    "********",
    "..",
];

/// Whole values that are words people type in place of a secret.
const PLACEHOLDER_VALUES: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "secret",
    "token",
    "apikey",
    "api_key",
    "changeme",
    "test",
    "testing",
    "user",
    "username",
    "admin",
    "root",
    "guest",
    "xxx",
    "yyy",
    "zzz",
    "foo",
    "bar",
    "foobar",
    "null",
    "none",
    "nil",
    "undefined",
    "true",
    "false",
    "empty",
    "string",
    "value",
    "mypassword",
    "yourpassword",
    "password123",
    "secret123",
    "letmein",
    "qwerty",
];

/// Whether `value` is a documentation placeholder, a template variable or a filler run.
fn is_placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    if PLACEHOLDER_WORDS.iter().any(|w| lower.contains(w))
        || PLACEHOLDER_VALUES.contains(&lower.as_str())
    {
        return true;
    }
    // Shell and template variables: `$NAME`, `$1`, `%NAME%`.
    let bytes = value.as_bytes();
    if (bytes.first() == Some(&b'$')
        && bytes
            .get(1)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_'))
        || (bytes.first() == Some(&b'%') && bytes.last() == Some(&b'%'))
    {
        return true;
    }
    // Filler: a run of six identical characters does not happen in generated tokens
    // (`AKIAXXXXXXXXXXXXXXXX`, `0000000000`, `aaaaaaaa`).
    let mut run = 1;
    for pair in bytes.windows(2) {
        if pair.first() == pair.get(1) {
            run += 1;
            if run >= 6 {
                return true;
            }
        } else {
            run = 1;
        }
    }
    false
}

/// Shannon entropy in bits per character.
pub fn shannon_entropy(s: &str) -> f64 {
    let mut counts = [0u32; 256];
    let mut n = 0u32;
    for b in s.bytes() {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c += 1;
        }
        n += 1;
    }
    if n == 0 {
        return 0.0;
    }
    let n = f64::from(n);
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Whether `value` has the entropy of a generated string of its length. Short strings cannot
/// reach high per-character entropy, so the bar scales with length.
fn looks_random(value: &str) -> bool {
    let bar = match value.len() {
        0..=7 => 2.0,
        8..=15 => 2.5,
        16..=23 => 2.8,
        _ => 3.0,
    };
    shannon_entropy(value) >= bar
}

fn mixes_classes(value: &str) -> bool {
    let b = value.as_bytes();
    b.iter().any(u8::is_ascii_uppercase)
        && b.iter().any(u8::is_ascii_lowercase)
        && b.iter().any(u8::is_ascii_digit)
}

/// The parts of an identifier: split at punctuation and at lower→upper case changes, lowered.
fn identifier_parts(name: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                parts.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            parts.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        parts.push(cur);
    }
    parts
}

/// Name endings that say the value is a secret.
const SECRET_NAME_ENDINGS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pass",
    "pwd",
    "pw",
    "secret",
    "secrets",
    "token",
    "tokens",
    "key",
    "keys",
    "apikey",
    "credential",
    "credentials",
    "creds",
    "auth",
    "pat",
];

/// Name parts that say the value is about a secret but is not one.
const NOT_SECRET_NAME_PARTS: &[&str] = &[
    "public",
    "pub",
    "csrf",
    "xsrf",
    "id",
    "ids",
    "name",
    "names",
    "url",
    "uri",
    "file",
    "path",
    "dir",
    "length",
    "len",
    "size",
    "type",
    "format",
    "version",
    "count",
    "prefix",
    "header",
    "field",
    "param",
    "index",
    "hash",
    "pattern",
    "regex",
    "chars",
    "algorithm",
    "alg",
    "mode",
    "method",
    "provider",
    "store",
    "policy",
    "expiry",
    "expires",
    "expiration",
    "ttl",
    "timeout",
    "endpoint",
    "host",
    "duration",
    "label",
    "description",
    "hint",
    "env",
    "var",
    "arn",
    "ref",
    "location",
    "region",
    "usage",
    "scope",
    "scopes",
    "kind",
];

/// Whether an assignment's name says its value is a secret (`client_secret`, `slackToken`,
/// `IBMCLOUDIAMAPIKEY`) and not something about one (`token_url`, `publicKey`, `keyId`).
fn secret_name(name: &str) -> bool {
    let trimmed = name
        .trim_start_matches('-')
        .trim_end_matches(|c: char| c.is_ascii_digit() || c == '_' || c == '-');
    let parts = identifier_parts(trimmed);
    if parts
        .iter()
        .any(|p| NOT_SECRET_NAME_PARTS.contains(&p.as_str()))
    {
        return false;
    }
    let Some(last) = parts.last() else {
        return false;
    };
    // Run-together names (`SOFTLAYERAPIKEY`, `clientsecret`) end with the word too.
    SECRET_NAME_ENDINGS
        .iter()
        .any(|e| last == e || (last.len() > e.len() + 2 && last.ends_with(e) && e.len() >= 5))
        || last.ends_with("apikey")
        || last.ends_with("password")
}

/// Whether a secret name (see `secret_name`) names a password rather than a key or token.
fn password_name(name: &str) -> bool {
    identifier_parts(name).last().is_some_and(|last| {
        matches!(
            last.as_str(),
            "password" | "passwd" | "passphrase" | "pass" | "pwd" | "pw"
        ) || last.ends_with("password")
            || last.ends_with("passwd")
    })
}

/// Checks a configuration field's value (see `Check::NamedValue`).
fn named_value_ok(name: &str, value: &str) -> bool {
    if !secret_name(name) || !password_ok(value) {
        return false;
    }
    if password_name(name) {
        value.chars().count() >= 4
    } else {
        value.len() >= 12 && !looks_like_identifier(value) && looks_random(value)
    }
}

/// Whether `value` reads as words, an identifier, a dotted member access, a path or a version
/// rather than a generated secret.
fn looks_like_identifier(value: &str) -> bool {
    let segments: Vec<&str> = value
        .split(['-', '_', '.', '/', ' '])
        .filter(|s| !s.is_empty())
        .collect();
    // Every segment a word or a short number: `insert_key_here`, `DOC_Vector_5_32`,
    // `SalesResults-1.2`, `NEXUS-GPT4-API-KEY`.
    let wordy = segments.len() > 1
        && segments.iter().all(|s| {
            s.len() <= 4 || (s.bytes().all(|b| b.is_ascii_alphabetic()) && !random_case(s))
        });
    // A single run of letters that is camel-case words (`APIOrganizationExist`,
    // `PasswordMinLength`) rather than a random mix of cases (`yqDVtkqPECriaLRi`).
    let camel_words =
        value.bytes().all(|b| b.is_ascii_alphabetic()) && (!random_case(value) || camel(value));
    // `module.member`, `XSalsa20.key_length`.
    let member = {
        let mut it = value.splitn(2, '.');
        matches!((it.next(), it.next()), (Some(a), Some(b))
            if !a.is_empty() && !b.is_empty()
            && a.bytes().next().is_some_and(|c| c.is_ascii_alphabetic())
            && a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
            && b.bytes().next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
            && b.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_'))
    };
    const EXTENSIONS: &[&str] = &[
        ".pem", ".p12", ".pfx", ".key", ".crt", ".cer", ".der", ".jks", ".keytab", ".json",
        ".yaml", ".yml", ".txt", ".env", ".png", ".jpg", ".gif", ".svg", ".html", ".js", ".py",
        ".conf", ".cfg", ".ini", ".xml",
    ];
    let lower = value.to_ascii_lowercase();
    let file = EXTENSIONS.iter().any(|e| lower.ends_with(e));
    wordy || camel_words || member || file
}

/// Whether a run is shaped like camel-case words: capitals at most one letter in three and
/// never two in a row (`DbPassword`, `PasswordMinLength`, `generateSeedValue2024`), where random
/// text has about as many capitals as small letters. Short words change case often enough to
/// look random to `random_case`.
fn camel(s: &str) -> bool {
    let b = s.as_bytes();
    let upper = b.iter().filter(|c| c.is_ascii_uppercase()).count();
    let letters = b.iter().filter(|c| c.is_ascii_alphabetic()).count();
    upper * 3 <= letters && !b.windows(2).any(|w| w.iter().all(u8::is_ascii_uppercase))
}

/// Whether letters change case more often than words do: more than one case change per four
/// letters.
fn random_case(s: &str) -> bool {
    let letters: Vec<u8> = s.bytes().filter(u8::is_ascii_alphabetic).collect();
    let changes = letters
        .windows(2)
        .filter(|w| {
            matches!((w.first(), w.get(1)), (Some(a), Some(b))
                if a.is_ascii_uppercase() != b.is_ascii_uppercase())
        })
        .count();
    letters.len() >= 8 && changes * 4 > letters.len()
}

fn jwt_valid(token: &str) -> bool {
    let mut parts = token.split('.');
    let decode = |p: Option<&str>| -> Option<serde_json::Map<String, serde_json::Value>> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p?.trim_end_matches('='))
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    };
    let Some(header) = decode(parts.next()) else {
        return false;
    };
    (header.contains_key("alg") || header.contains_key("typ")) && decode(parts.next()).is_some()
}

/// A PEM private key needs a body: at least 32 base64 characters after the header lines. A
/// block inside a JSON or YAML string (a cloud service-account file) has its line breaks
/// escaped as `\n`, which count as line breaks.
fn pem_has_body(block: &str) -> bool {
    let unescaped = block.replace("\\r\\n", "\n").replace("\\n", "\n");
    let body = unescaped
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .filter(|l| !l.contains(':'));
    body.flat_map(str::bytes)
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        .count()
        >= 32
}

fn password_ok(value: &str) -> bool {
    // `host:8080@…` is a port, not a password.
    let port = value.len() <= 5 && value.bytes().all(|b| b.is_ascii_digit());
    let inner = value
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .unwrap_or(value);
    !port
        && !inner.is_empty()
        && !is_placeholder(inner)
        && !matches!(
            inner.as_bytes().first(),
            Some(b'$' | b'%' | b'{' | b'[' | b'(' | b'<')
        )
}

/// The value of a `user:password` pair that is the secret, as a byte range of `caps`' text.
fn user_password(caps: &Captures<'_>) -> Option<(usize, usize)> {
    let user = caps.get(1);
    let pass = caps.get(2).filter(|m| !m.as_str().is_empty());
    let m = match pass {
        Some(p) => p,
        // `-u ":secret"` and `-u "secret:"`: a lone part is the secret.
        None => user.filter(|m| !m.as_str().is_empty())?,
    };
    let value = m.as_str();
    let inner = value
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .unwrap_or(value);
    let strong = inner.len() >= 6
        && looks_random(inner)
        && (inner.bytes().any(|b| !b.is_ascii_alphabetic()) || random_case(inner));
    // Both parts must be literal: `"$USER:$PASS"` and `{{ .user }}:{{ .pass }}` are templates.
    let user_literal = user.is_none_or(|u| password_ok(u.as_str()) || u.as_str().is_empty());
    (strong && password_ok(value) && user_literal).then(|| (m.start(), m.end()))
}

/// The identifier that ends at `keyword_end`: the keyword match itself plus up to 40 name
/// characters before it (`secret_access_` + `key`), with a leading `--` for command-line flags.
fn assignment_name(text: &str, keyword_start: usize, keyword_end: usize) -> &str {
    let bytes = text.as_bytes();
    let name_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    let mut start = keyword_start;
    while start > 0
        && keyword_start - start < 40
        && bytes.get(start - 1).is_some_and(|&b| name_char(b))
    {
        start -= 1;
    }
    text.get(start..keyword_end).unwrap_or_default()
}

/// Checks a `name = value` match: group 1 the keyword (with its short suffix), 2 the
/// separator, 3 the value.
fn assignment_ok(text: &str, caps: &Captures<'_>) -> bool {
    let (Some(keyword), Some(sep), Some(value)) = (caps.get(1), caps.get(2), caps.get(3)) else {
        return false;
    };
    let name = assignment_name(text, keyword.start(), keyword.end());
    if is_placeholder(value.as_str()) {
        return false;
    }
    let value = value.as_str().trim_end_matches(['.', ',']);
    // Whitespace alone separates a name from its value only on command lines
    // (`--api-key VALUE`); in prose it is just the next word.
    if sep.as_str().trim().is_empty() && !name.starts_with("--") {
        return false;
    }
    // `=` inside a value makes it another assignment (`id=jfrog_secret`); base64 pads only
    // at the end.
    let inner_equals = value.trim_end_matches('=').contains('=');
    // People choose passwords, machines generate keys: eight characters make a password (with
    // the class and randomness checks below), a generated key has at least ten.
    let min_len = if password_name(name) { 8 } else { 10 };
    value.len() >= min_len
        && !inner_equals
        && secret_name(name)
        && !is_placeholder(value)
        && !looks_like_identifier(value)
        && looks_random(value)
        && (value.bytes().any(|b| !b.is_ascii_alphabetic()) || random_case(value))
}

/// Whether the value at `start..end` stands alone rather than being a slice of a longer run.
fn is_bounded(text: &str, start: usize, end: usize) -> bool {
    let token = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let bytes = text.as_bytes();
    let before_ok = start == 0 || bytes.get(start - 1).is_none_or(|&b| !token(b));
    let after_ok = match bytes.get(end) {
        None => true,
        Some(&b) if token(b) || b == b'#' || b == b'*' => false,
        // `name.png`: a file name, not a token followed by a full stop.
        Some(b'.') => bytes
            .get(end + 1)
            .is_none_or(|b| !b.is_ascii_alphanumeric()),
        Some(_) => true,
    };
    before_ok && after_ok
}

fn finding(rule: &Rule, start: usize, end: usize, channel: Channel) -> Finding {
    Finding {
        kind: rule.kind.to_string(),
        category: FindingCategory::Secret,
        severity: rule.severity,
        confidence: match rule.check {
            Check::Format | Check::PemBody | Check::Jwt => 0.95,
            Check::Token | Check::MixedToken | Check::RandomToken => 0.9,
            Check::Password | Check::UserPassword | Check::NamedValue => 0.8,
            Check::Assignment => 0.7,
        },
        detector: "secrets",
        span: Span::new(start, end),
        channel,
    }
}

/// The secrets detector.
#[derive(Debug)]
pub struct SecretDetector {
    rules: Vec<Rule>,
    gate: LiteralGate,
}

impl SecretDetector {
    pub fn new() -> Result<Self, InspectError> {
        let rules = RULES
            .iter()
            .map(|spec| {
                Regex::new(spec.pattern)
                    .map(|regex| Rule {
                        kind: spec.kind,
                        severity: spec.severity,
                        regex,
                        group: spec.group,
                        check: spec.check,
                        bounded: spec.bounded,
                    })
                    .map_err(|e| InspectError::Build {
                        detector: "secrets",
                        message: format!("rule `{}`: {e}", spec.kind),
                    })
            })
            .collect::<Result<_, _>>()?;
        let literals: Vec<(&[&str], bool)> = RULES
            .iter()
            .map(|spec| (spec.literals, spec.case_insensitive))
            .collect();
        Ok(SecretDetector {
            rules,
            gate: LiteralGate::new("secrets", &literals)?,
        })
    }

    /// The span of the secret `caps` holds for `rule`, if its value passes the rule's check.
    fn accept(rule: &Rule, text: &str, caps: &Captures<'_>) -> Option<(usize, usize)> {
        match rule.check {
            Check::UserPassword => user_password(caps),
            Check::NamedValue => {
                let (name, m) = (caps.get(1)?, caps.get(rule.group)?);
                named_value_ok(name.as_str(), m.as_str()).then_some((m.start(), m.end()))
            }
            Check::Assignment => {
                let m = caps.get(rule.group)?;
                (assignment_ok(text, caps)
                    && (!rule.bounded || is_bounded(text, m.start(), m.end())))
                .then_some((m.start(), m.end()))
            }
            _ => {
                let m = caps.get(rule.group)?;
                Self::accept_match(rule, text, m.start(), m.end())
            }
        }
    }

    /// Applies the rule's value check to `start..end`.
    fn accept_match(rule: &Rule, text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
        let value = text.get(start..end)?;
        let ok = match rule.check {
            // These need their capture groups and are settled in `accept`.
            Check::UserPassword | Check::Assignment | Check::NamedValue => false,
            Check::Format => true,
            Check::Token => !is_placeholder(value) && looks_random(value),
            Check::MixedToken => {
                !is_placeholder(value) && looks_random(value) && mixes_classes(value)
            }
            Check::RandomToken => {
                !is_placeholder(value)
                    && looks_random(value)
                    && mixes_classes(value)
                    && random_case(value)
                    && !camel(value)
            }
            // A block still arriving (no end marker yet) is held as a key, so a stream never
            // releases the start of one whose body has not come.
            Check::PemBody => !value.contains("-----END") || pem_has_body(value),
            Check::Jwt => jwt_valid(value),
            Check::Password => password_ok(value),
        };
        let bounded = !rule.bounded || is_bounded(text, start, end);
        (ok && bounded).then_some((start, end))
    }

    /// Runs the rules `wanted` selects. Rules run from the most specific (a vendor's format) to
    /// the most general (a secret-looking assignment), and a value an earlier rule reported is
    /// not reported again by a later one: one secret, one finding, named as precisely as the
    /// rules can (`xml_password`, not also `generic_secret_assignment`).
    pub(crate) fn detect_rules(
        &self,
        text: &str,
        channel: Channel,
        out: &mut Vec<Finding>,
        wanted: impl Fn(usize) -> bool,
    ) {
        let first = out.len();
        for (i, rule) in self.rules.iter().enumerate() {
            if !wanted(i) {
                continue;
            }
            // Capturing is costly: rules whose value is the whole match never capture, and the
            // others capture only within each match a plain search found.
            let needs_captures = rule.group != 0
                || matches!(
                    rule.check,
                    Check::UserPassword | Check::Assignment | Check::NamedValue
                );
            for m in rule.regex.find_iter(text) {
                let accepted = if needs_captures {
                    rule.regex
                        .captures_at(text, m.start())
                        .filter(|c| c.get(0).is_some_and(|g| g.start() == m.start()))
                        .and_then(|caps| Self::accept(rule, text, &caps))
                } else {
                    Self::accept_match(rule, text, m.start(), m.end())
                };
                if let Some((start, end)) = accepted {
                    // Only a value wholly inside an earlier finding is dropped: a later
                    // rule that sees more of the secret (a longer span) still reports it, so
                    // redaction never shrinks.
                    let reported = out
                        .get(first..)
                        .unwrap_or_default()
                        .iter()
                        .any(|f| f.span.start <= start && end <= f.span.end);
                    if !reported {
                        out.push(finding(rule, start, end, channel));
                    }
                }
            }
        }
    }
}

impl Detector for SecretDetector {
    fn id(&self) -> &'static str {
        "secrets"
    }

    fn categories(&self) -> &'static [FindingCategory] {
        &[FindingCategory::Secret]
    }

    fn detect(&self, text: &str, channel: Channel, out: &mut Vec<Finding>) {
        let wanted = self.gate.wanted(text);
        self.detect_rules(text, channel, out, |i| wanted.get(i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(String, String)> {
        let d = SecretDetector::new().unwrap();
        let mut out = vec![];
        d.detect(text, Channel::Input, &mut out);
        out.iter()
            .map(|f| (f.kind.clone(), text[f.span.start..f.span.end].to_string()))
            .collect()
    }

    fn assert_finds(text: &str, kind: &str, value: &str) {
        let found = kinds(text);
        assert!(
            found.contains(&(kind.to_string(), value.to_string())),
            "{text}: {found:?}"
        );
    }

    fn assert_clean(text: &str) {
        assert!(kinds(text).is_empty(), "{text}: {:?}", kinds(text));
    }

    // Synthetic values with the documented layouts; none of them is a real credential.
    const OPENAI: &str = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tT3BlbkFJUv1wXy4zAb7dEf0hIj3k";
    const ANTHROPIC: &str = "sk-ant-api03-U8JZpDE0iGXlD6gNCFbaEPFjbD0kH8Oool8DklZDOCj2ISaJiHkTj0rLGlkoMXGjtEkDnNfribxUdl7dXTPyLsxPFkThfAA";

    #[test]
    fn provider_keys_are_found_with_exact_spans() {
        let cases = [
            (
                "key AKIAIOSFODNN7EXAMPLF here",
                "aws_access_key_id",
                "AKIAIOSFODNN7EXAMPLF",
            ),
            // Digits 0, 1, 8 and 9 occur in real key ids, though base32 has none of them.
            (
                "aws key AKIAZ7QK3M2XLP4TRW9B",
                "aws_access_key_id",
                "AKIAZ7QK3M2XLP4TRW9B",
            ),
            (
                "ASIA0QK3M2XLP4TRW81B temporary",
                "aws_access_key_id",
                "ASIA0QK3M2XLP4TRW81B",
            ),
            (
                "token=ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
                "github_token",
                "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
            ),
            (
                "glpat-Hq3xR7vK2mN9pL4wT8yZ",
                "gitlab_token",
                "glpat-Hq3xR7vK2mN9pL4wT8yZ",
            ),
            (
                "stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc",
                "stripe_key",
                "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            ),
            (
                "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
                "google_api_key",
                "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe",
            ),
            (
                "bot 110201543:AAHdqTcvCH1vGWJxfSe1ofSAs0K5PALDsaw",
                "telegram_bot_token",
                "110201543:AAHdqTcvCH1vGWJxfSe1ofSAs0K5PALDsaw",
            ),
            (
                "slack: xoxb-263594206564-FGqddMF8t08v8N7Oq4i57vs1",
                "slack_token",
                "xoxb-263594206564-FGqddMF8t08v8N7Oq4i57vs1",
            ),
            (
                "mc a2937653ed38c31a43ea46e2b19257db-us2",
                "mailchimp_api_key",
                "a2937653ed38c31a43ea46e2b19257db-us2",
            ),
            (
                "client_secret: .IQ8Q~79R7TOWOspFnWcEG-dYt4KXqFqxK16cxr",
                "azure_ad_client_secret",
                ".IQ8Q~79R7TOWOspFnWcEG-dYt4KXqFqxK16cxr",
            ),
            (
                "token: hvs.CAESIP2jTxc9S2K7Z6CtcFWQv7-044m_oSsxnPE1H3nF89l3GiYKHGh2cy5sQmlIZVNyTWJNcDRsYWJpQjlhYjVlb1cQh6PL8wEYAg",
                "vault_token",
                "hvs.CAESIP2jTxc9S2K7Z6CtcFWQv7-044m_oSsxnPE1H3nF89l3GiYKHGh2cy5sQmlIZVNyTWJNcDRsYWJpQjlhYjVlb1cQh6PL8wEYAg",
            ),
            (
                "postgres://app:s3cr3tP4ss@db.internal:5432/x",
                "connection_string_password",
                "s3cr3tP4ss",
            ),
            (
                "REDIS_URL=redis://:S3cr3tRedisPass9@cache.internal:6379/0",
                "connection_string_password",
                "S3cr3tRedisPass9",
            ),
            (
                r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","d":"jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}"#,
                "jwk_private_key",
                "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI",
            ),
            (
                r#"{"d": "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI", "crv": "Ed25519", "kty": "OKP"}"#,
                "jwk_private_key",
                "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI",
            ),
        ];
        for (text, kind, value) in cases {
            assert_finds(text, kind, value);
        }
        let ppk = "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: deploy\nPublic-Lines: 2\nAAAAC3NzaC1lZDI1NTE5AAAAIOq3pLm9x\nzQ4v5b7p9Xq2mN8\nPrivate-Lines: 1\nAAAAIFb0zQ4v5b7p9Xq2mN8vL3kJ7hG5fD1sA9wE2rT6yU8iO0pQ3aZ5\n";
        assert_eq!(
            kinds(ppk).first().map(|k| k.0.as_str()),
            Some("private_key")
        );
        // A public JWK has no `d`; a JSON `d` without a key type is not a key.
        assert_clean(
            r#"{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU"}"#,
        );
        assert_clean(r#"{"d": "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI", "type": "x"}"#);
        assert_finds(&format!("use {OPENAI} now"), "openai_api_key", OPENAI);
        assert_finds(&format!("key={ANTHROPIC}"), "anthropic_api_key", ANTHROPIC);
    }

    #[test]
    fn a_token_inside_a_longer_run_is_not_that_token() {
        // 36 characters make a GitHub token; 40 do not, and neither does a prefix mid-word.
        assert_clean("ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789abcd");
        assert_clean("xghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789");
        assert_clean("TODAYINASIAASACKOFRICEFELLOVER");
        // A hex name with a file extension is an asset, not an Infracost token.
        assert_clean("video_box.ico-7a388b69018576d24b59331fd60aab0c.png");
        // A Vault-style `s.` run of letters only is an identifier.
        assert_clean("s.AcceptanceTimeoutSeconds");
    }

    #[test]
    fn placeholders_and_fillers_are_not_secrets() {
        for text in [
            "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "AKIAXXXXXXXXXXXXXXXX",
            "aws_access_key: AKIAIOSFODNN7EXAMPLE",
            "HUGGINGFACE_API_TOKEN=hf_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "apiKey: \"AIzaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
            "oktaKey = 00000000000000000000000000000000000TUVWXYZ",
            "SUMO_ACCESS_KEY=${SUMO_ACCESS_KEY:=$2}",
            "X-JFrog-Art-Api: $PASSWORD",
            "fn::secret: ops_eyJzaWduSW5B..[Redacted]",
        ] {
            assert_clean(text);
        }
    }

    #[test]
    fn pem_private_keys_are_found_whole_and_even_unterminated() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----";
        let text = format!("here: {pem} done");
        assert_eq!(
            kinds(&text),
            vec![("private_key".to_string(), pem.to_string())]
        );
        // A block still arriving is held as a key: its body may not be here yet.
        let cut = "x -----BEGIN PRIVATE KEY-----\nMIIBOgIBAAJBAKj34";
        assert_eq!(kinds(cut)[0].1, &cut[2..]);
        // A complete block with no key material is a template.
        assert_clean("-----BEGIN PRIVATE KEY-----\nanything\n-----END PRIVATE KEY-----");
        assert_clean("-----BEGIN OPENSSH PRIVATE KEY----------END OPENSSH PRIVATE KEY-----");
    }

    #[test]
    fn jwts_need_json_header_and_payload() {
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        assert_finds(&format!("Authorization: Bearer {jwt}"), "jwt", jwt);
        // The header lost its closing brace: not JSON, not a token.
        assert!(
            !kinds("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ.eyJzdWIiOiIxMjM0NTY3ODkwIn0.abc")
                .iter()
                .any(|(k, _)| k == "jwt")
        );
        assert_clean("eyJBB.eyJCC.eyJDDDD");
    }

    #[test]
    fn generic_assignments_need_a_secret_name_and_a_generated_value() {
        assert_finds(
            "password = 'Zq8#rT2!vLp9@xW4'",
            "generic_secret_assignment",
            "Zq8#rT2!vLp9@xW4",
        );
        assert_finds(
            "genericToken := `Zf3D0LXCM3EIMbgJpUNnkRtOfOueHznB`",
            "generic_secret_assignment",
            "Zf3D0LXCM3EIMbgJpUNnkRtOfOueHznB",
        );
        assert_finds(
            "\"IBMCLOUDIAMAPIKEY\": \"Tq7mW2xK9pL4vN8rZ3yB6cD1fG5hJ0sA\"",
            "generic_secret_assignment",
            "Tq7mW2xK9pL4vN8rZ3yB6cD1fG5hJ0sA",
        );
        assert_finds(
            "--softlayer-api-key Tq7mW2xK9pL4vN8rZ3yB6cD1fG5hJ0sA",
            "generic_secret_assignment",
            "Tq7mW2xK9pL4vN8rZ3yB6cD1fG5hJ0sA",
        );
        for text in [
            "password = \"aaaabbbbaaaabbbb\"",
            "api_key: YOUR_API_KEY_HERE_123",
            "secret=<your-secret-here>",
            "CLOUD_APIKEY: \"insert_key_here\"",
            "LLM_SECRET_NAME = \"NEXUS-GPT4-API-KEY\"",
            "key_length = XSalsa20.key_length",
            "publicToken = \"9Cnzj4p4WGeKLs1Pt8QuKUpRKfFLfRYC9AIKjbJTWit\"",
            "credentialId: \"B9mTcFSck2LzJO2S3ols63\"",
            "csrf-token=Mj2qykJO5rELyHgezQ69nzUX0i3OH67V7",
            "access_token_url='https://github.com/login/oauth/access_token'",
            "keyword: \"Befaehigung_P2\"",
            "API_ORG_EXIST = \"APIOrganizationExist\"",
            "app.keystore.file=env/cert.p12",
            "--mount=type=secret,id=jfrog_secret",
            "the secret ingredients are flour and love",
            "my password is long but I won't tell you",
            "integrity sha=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert_clean(text);
        }
    }

    #[test]
    fn headers_and_command_lines_carry_credentials() {
        assert_finds(
            "curl -H \"Authorization: Bearer cfcabd11c7ed9a41b1a3e063c32d5114\"",
            "authorization_header",
            "cfcabd11c7ed9a41b1a3e063c32d5114",
        );
        assert_finds(
            "curl --user kevin:'pRf7vG2h1L8nQkW9' -X PATCH",
            "command_line_password",
            "pRf7vG2h1L8nQkW9",
        );
        assert_finds(
            "curl -u \":d2LkV78zLx!t\" https://localhost:9200",
            "command_line_password",
            "d2LkV78zLx!t",
        );
        for text in [
            "curl -H \"Authorization: Bearer $API_KEY\"",
            "curl -H \"Authorization: Bearer XXXXXXXXXXXX\"",
            "curl -u username:token",
            "curl -u \"${username}\":\"${password}\"",
            "curl --user neo4j:[PASSWORD] http://[IP]:7474/db/data/",
            "curl -i -u 'test:test'",
            "docker run -u 1000:1000 image",
            "\"https://url:8000\";@something else",
        ] {
            assert_clean(text);
        }
    }

    #[test]
    fn ordinary_prose_and_near_misses_are_clean() {
        for text in [
            "The AKIA prefix identifies AWS keys.",
            "ghp_short",
            "sk-not-a-key",
            "Visit https://example.com/path for details.",
            "Use the key to open the door; the token is in the box.",
        ] {
            assert_clean(text);
        }
    }

    #[test]
    fn configuration_fields_named_password_hold_passwords_unless_templates() {
        assert_finds("<password>hunter2x</password>", "xml_password", "hunter2x");
        assert_finds(
            "Server=db;User Id=app;Password=Tr0ub4d;",
            "connection_string_password",
            "Tr0ub4d",
        );
        assert_finds(
            "https://h.test/x?a=1&password=swordfish9",
            "url_query_credential",
            "swordfish9",
        );
        // A token-named field needs a generated value; a password-named one does not.
        assert_clean("https://h.test/x?token=abc");
        assert_clean("https://h.test/docs?token=see_the_docs_page");
        for text in [
            "<password>${env.PW}</password>",
            "<password>{{ pw }}</password>",
            "<password></password>",
            "<passwordPolicy>strict</passwordPolicy>",
            "<add key=\"PasswordMinLength\" value=\"12\" />",
            "Server=db;User Id=app;Password=<secret>;",
            "https://h.test/reset?password_reset=true",
        ] {
            assert_clean(text);
        }
    }

    #[test]
    fn one_secret_is_one_finding_under_its_most_precise_kind() {
        // `Password=…;` in a connection string is also a `name=value` assignment.
        let found = kinds("Server=db;User Id=app;Password=Tr0ub4dor&3xx;");
        assert_eq!(
            found,
            vec![(
                "connection_string_password".to_string(),
                "Tr0ub4dor&3xx".to_string()
            )]
        );
    }

    #[test]
    fn pem_blocks_escaped_in_json_strings_have_a_body() {
        let body = "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu";
        let escaped = format!("-----BEGIN PRIVATE KEY-----\\n{body}\\n-----END PRIVATE KEY-----");
        assert_finds(
            &format!("{{\"private_key\": \"{escaped}\\n\"}}"),
            "private_key",
            &escaped,
        );
        assert_clean("\"-----BEGIN PRIVATE KEY-----\\nanything\\n-----END PRIVATE KEY-----\"");
    }

    #[test]
    fn short_prefixes_need_random_case() {
        assert_clean("rnd_generateSeedValueForTheTests2024");
        assert_finds(
            "key rnd_q8ZtK2mX9pLw4RvN7bYc1HsD5fJg3EaT here",
            "render_api_key",
            "rnd_q8ZtK2mX9pLw4RvN7bYc1HsD5fJg3EaT",
        );
    }

    #[test]
    fn camel_case_words_are_identifiers_not_secrets() {
        assert!(camel("DbPassword") && camel("PasswordMinLength"));
        assert!(!camel("yqDVtkqPECriaLRi") && !camel("aBcDeFgHiJ"));
        assert_clean("key=\"DbPassword\"");
    }

    #[test]
    fn identifier_parts_split_at_case_and_punctuation() {
        assert_eq!(identifier_parts("slackToken"), ["slack", "token"]);
        assert_eq!(identifier_parts("CLIENT_SECRET"), ["client", "secret"]);
        assert_eq!(identifier_parts("kms-key.id"), ["kms", "key", "id"]);
        assert!(secret_name("IBMCLOUDIAMAPIKEY"));
        assert!(secret_name("token1"));
        assert!(!secret_name("key_name"));
        assert!(!secret_name("keyPressed"));
    }

    #[test]
    fn entropy_is_zero_for_empty_and_uniform_text() {
        assert_eq!(shannon_entropy(""), 0.0);
        assert_eq!(shannon_entropy("aaaa"), 0.0);
        assert!((shannon_entropy("abcd") - 2.0).abs() < 1e-9);
    }
}
