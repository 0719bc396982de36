//! Secrets: provider key formats, private keys, JWTs, credentials in URLs and generic assignments.
//!
//! Provider formats are matched by their documented prefixes and lengths; the generic
//! `password = …` rule additionally needs high entropy and rejects placeholders, so configuration
//! examples and hashes in lock files are not flagged. Every pattern has a bounded length so the
//! streaming redactor's hold-back window can always contain a whole match.

use crate::gate::LiteralGate;
use crate::{Detector, InspectError};
use regex::Regex;
use ztai_core::{Channel, Finding, FindingCategory, Severity, Span};

/// A compiled `RuleSpec`.
struct Rule {
    kind: &'static str,
    severity: Severity,
    regex: Regex,
    group: usize,
    min_entropy: f64,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule").field("kind", &self.kind).finish()
    }
}

/// One rule: what it finds, how, and the literals one of which every match contains (see
/// `gate`).
struct RuleSpec {
    kind: &'static str,
    severity: Severity,
    pattern: &'static str,
    /// Capture group holding the secret value (0 = whole match).
    group: usize,
    /// Minimum Shannon entropy (bits per char) the value must have; 0 = no check.
    min_entropy: f64,
    literals: &'static [&'static str],
    /// The pattern matches case-insensitively, so its literals are too.
    case_insensitive: bool,
}

const RULES: &[RuleSpec] = &[
    RuleSpec {
        kind: "private_key",
        severity: Severity::Critical,
        pattern: r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\z)",
        group: 0,
        min_entropy: 0.0,
        literals: &["-----BEGIN"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "aws_access_key_id",
        severity: Severity::High,
        pattern: r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}(?-u:\b)",
        group: 0,
        min_entropy: 0.0,
        literals: &["AKIA", "ASIA", "ABIA", "ACCA", "A3T"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "aws_secret_access_key",
        severity: Severity::Critical,
        pattern: r#"(?i)(?-u:\b)aws_?secret_?access_?key(?-u:\b)["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{40})(?-u:\b)"#,
        group: 1,
        min_entropy: 3.0,
        literals: &["aws"],
        case_insensitive: true,
    },
    RuleSpec {
        kind: "github_token",
        severity: Severity::High,
        pattern: r"(?-u:\b)gh[pousr]_[A-Za-z0-9]{36,76}(?-u:\b)",
        group: 0,
        min_entropy: 0.0,
        literals: &["ghp_", "gho_", "ghu_", "ghs_", "ghr_"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "github_fine_grained_pat",
        severity: Severity::High,
        pattern: r"(?-u:\b)github_pat_[A-Za-z0-9_]{82}(?-u:\b)",
        group: 0,
        min_entropy: 0.0,
        literals: &["github_pat_"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "gitlab_token",
        severity: Severity::High,
        pattern: r"(?-u:\b)glpat-[A-Za-z0-9_-]{20}(?-u:\b)",
        group: 0,
        min_entropy: 0.0,
        literals: &["glpat-"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "openai_api_key",
        severity: Severity::High,
        pattern: r"(?-u:\b)sk-(?:(?:proj|svcacct|admin)-[A-Za-z0-9_-]{40,200}|[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}|[A-Za-z0-9]{48})(?-u:\b)",
        group: 0,
        min_entropy: 0.0,
        literals: &["sk-"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "anthropic_api_key",
        severity: Severity::High,
        pattern: r"(?-u:\b)sk-ant-(?:api|admin)[0-9][0-9]-[A-Za-z0-9_-]{80,120}",
        group: 0,
        min_entropy: 0.0,
        literals: &["sk-ant-"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "slack_token",
        severity: Severity::High,
        pattern: r"(?-u:\b)xox[abposr]-(?:[0-9]{6,15}-){1,3}[A-Za-z0-9-]{10,64}(?-u:\b)",
        group: 0,
        min_entropy: 0.0,
        literals: &["xox"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "slack_webhook",
        severity: Severity::High,
        pattern: r"https://hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9+/]{40,100}",
        group: 0,
        min_entropy: 0.0,
        literals: &["https://hooks.slack.com/"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "stripe_key",
        severity: Severity::High,
        pattern: r"(?-u:\b)(?:sk|rk)_(?:live|test)_[0-9a-zA-Z]{24,99}(?-u:\b)",
        group: 0,
        min_entropy: 0.0,
        literals: &["_live_", "_test_"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "google_api_key",
        severity: Severity::High,
        pattern: r"(?-u:\b)AIza[0-9A-Za-z_-]{35}(?-u:\b)",
        group: 0,
        min_entropy: 0.0,
        literals: &["AIza"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "huggingface_token",
        severity: Severity::High,
        pattern: r"(?-u:\b)hf_[A-Za-z]{34}(?-u:\b)",
        group: 0,
        min_entropy: 0.0,
        literals: &["hf_"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "sendgrid_api_key",
        severity: Severity::High,
        pattern: r"(?-u:\b)SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}(?-u:\b)",
        group: 0,
        min_entropy: 0.0,
        literals: &["SG."],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "twilio_api_key",
        severity: Severity::High,
        pattern: r"(?-u:\b)SK[0-9a-fA-F]{32}(?-u:\b)",
        group: 0,
        min_entropy: 0.0,
        literals: &["SK"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "npm_token",
        severity: Severity::High,
        pattern: r"(?-u:\b)npm_[A-Za-z0-9]{36}(?-u:\b)",
        group: 0,
        min_entropy: 0.0,
        literals: &["npm_"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "jwt",
        severity: Severity::Medium,
        pattern: r"(?-u:\b)eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        group: 0,
        min_entropy: 0.0,
        literals: &["eyJ"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "connection_string_password",
        severity: Severity::High,
        pattern: r"(?-u:\b)[a-zA-Z][a-zA-Z0-9+.-]{1,20}://[^\s:/@]{1,64}:([^\s:/@]{3,128})@[A-Za-z0-9.-]{1,100}",
        group: 1,
        min_entropy: 0.0,
        literals: &["://"],
        case_insensitive: false,
    },
    RuleSpec {
        kind: "generic_secret_assignment",
        severity: Severity::Medium,
        pattern: r#"(?i)(?-u:\b)(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|password|passwd|pwd|client[_-]?secret)(?-u:\b)["']?\s*[:=]\s*["']?([A-Za-z0-9/+_\-.!@#$%^&*]{12,128})"#,
        group: 1,
        min_entropy: 3.3,
        literals: &["api", "secret", "access", "auth", "passw", "pwd"],
        case_insensitive: true,
    },
];

/// Values that look like secrets but are documentation placeholders.
fn is_placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    const WORDS: &[&str] = &[
        "example",
        "placeholder",
        "changeme",
        "your_",
        "your-",
        "yourkey",
        "xxxxxxxx",
        "dummy",
        "sample",
        "redacted",
        "<",
        "${",
        "{{",
        "env(",
        "process.env",
    ];
    WORDS.iter().any(|w| lower.contains(w))
        || value
            .bytes()
            .all(|b| b == value.as_bytes().first().copied().unwrap_or(0))
}

/// Hex digests (sha1/sha256/sha512 and git object ids) in lock files look random but are not
/// secrets.
fn is_hash_digest(value: &str) -> bool {
    matches!(value.len(), 32 | 40 | 56 | 64 | 96 | 128)
        && value.bytes().all(|b| b.is_ascii_hexdigit())
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

fn finding(rule: &Rule, start: usize, end: usize, channel: Channel) -> Finding {
    Finding {
        kind: rule.kind.to_string(),
        category: FindingCategory::Secret,
        severity: rule.severity,
        confidence: if rule.min_entropy > 0.0 { 0.7 } else { 0.95 },
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
                        min_entropy: spec.min_entropy,
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

    /// Runs the rules `wanted` selects.
    pub(crate) fn detect_rules(
        &self,
        text: &str,
        channel: Channel,
        out: &mut Vec<Finding>,
        wanted: impl Fn(usize) -> bool,
    ) {
        for (i, rule) in self.rules.iter().enumerate() {
            if !wanted(i) {
                continue;
            }
            if rule.group == 0 && rule.min_entropy == 0.0 {
                // No capture needed: the cheaper search path.
                for m in rule.regex.find_iter(text) {
                    out.push(finding(rule, m.start(), m.end(), channel));
                }
                continue;
            }
            // Capturing is costly; most texts have no match, which a plain search settles.
            if !rule.regex.is_match(text) {
                continue;
            }
            for caps in rule.regex.captures_iter(text) {
                let Some(m) = caps.get(rule.group) else {
                    continue;
                };
                let value = m.as_str();
                if rule.group != 0 || rule.min_entropy > 0.0 {
                    if is_placeholder(value) || is_hash_digest(value) {
                        continue;
                    }
                    if shannon_entropy(value) < rule.min_entropy {
                        continue;
                    }
                }
                out.push(finding(rule, m.start(), m.end(), channel));
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

    #[test]
    fn provider_keys_are_found_with_exact_spans() {
        let cases = [
            (
                "key AKIAIOSFODNN7EXAMPLF here",
                "aws_access_key_id",
                "AKIAIOSFODNN7EXAMPLF",
            ),
            (
                "token=ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
                "github_token",
                "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
            ),
            (
                "use sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7dEf0hIj3kLm6n now",
                "openai_api_key",
                "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7dEf0hIj3kLm6n",
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
                "postgres://app:s3cr3tP4ss@db.internal:5432/x",
                "connection_string_password",
                "s3cr3tP4ss",
            ),
        ];
        for (text, kind, value) in cases {
            let found = kinds(text);
            assert!(
                found.contains(&(kind.to_string(), value.to_string())),
                "{text}: {found:?}"
            );
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
        let cut = "x -----BEGIN PRIVATE KEY-----\nMIIBOgIBAAJBAKj34";
        assert_eq!(kinds(cut)[0].1, &cut[2..]);
    }

    #[test]
    fn generic_assignments_need_entropy_and_skip_placeholders_and_hashes() {
        assert_eq!(
            kinds("password = \"hunter2hunter2\"").len(),
            0,
            "low entropy"
        );
        assert_eq!(kinds("api_key: YOUR_API_KEY_HERE_123").len(), 0);
        assert_eq!(kinds("secret=<your-secret-here>").len(), 0);
        assert_eq!(
            kinds("integrity sha=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                .len(),
            0
        );
        assert_eq!(
            kinds("password = 'Zq8#rT2!vLp9@xW4'")[0].1,
            "Zq8#rT2!vLp9@xW4"
        );
    }

    #[test]
    fn ordinary_prose_and_near_misses_are_clean() {
        for text in [
            "The AKIA prefix identifies AWS keys.",
            "ghp_short",
            "sk-not-a-key",
            "Visit https://example.com/path for details.",
            "my password is long but I won't tell you",
        ] {
            assert!(kinds(text).is_empty(), "{text}: {:?}", kinds(text));
        }
    }

    #[test]
    fn entropy_is_zero_for_empty_and_uniform_text() {
        assert_eq!(shannon_entropy(""), 0.0);
        assert_eq!(shannon_entropy("aaaa"), 0.0);
        assert!((shannon_entropy("abcd") - 2.0).abs() < 1e-9);
    }
}
