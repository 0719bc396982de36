//! Findings: what a detector saw in a piece of content.
//!
//! A finding carries where it is (a span into the inspected text), how bad it is and how sure the
//! detector was, but never the matched value itself: findings flow into policy context, metrics and
//! the audit log, and none of those may hold the secret or personal data that was found.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Ordered severities; policy compares them numerically (`none` = 0 … `critical` = 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low = 1,
    Medium = 2,
    High = 3,
    Critical = 4,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Some(Severity::Low),
            "medium" => Some(Severity::Medium),
            "high" => Some(Severity::High),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    /// The number policy sees.
    pub fn rank(self) -> i64 {
        self as i64
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The broad family a finding belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingCategory {
    PromptInjection,
    Pii,
    Secret,
    Obfuscation,
    Custom,
    Leak,
}

impl FindingCategory {
    /// Every category, in the order they are documented.
    pub const ALL: [FindingCategory; 6] = [
        FindingCategory::PromptInjection,
        FindingCategory::Pii,
        FindingCategory::Secret,
        FindingCategory::Obfuscation,
        FindingCategory::Custom,
        FindingCategory::Leak,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingCategory::PromptInjection => "prompt_injection",
            FindingCategory::Pii => "pii",
            FindingCategory::Secret => "secret",
            FindingCategory::Obfuscation => "obfuscation",
            FindingCategory::Custom => "custom",
            FindingCategory::Leak => "leak",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "prompt_injection" => Some(FindingCategory::PromptInjection),
            "pii" => Some(FindingCategory::Pii),
            "secret" => Some(FindingCategory::Secret),
            "obfuscation" => Some(FindingCategory::Obfuscation),
            "custom" => Some(FindingCategory::Custom),
            "leak" => Some(FindingCategory::Leak),
            _ => None,
        }
    }
}

impl fmt::Display for FindingCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which channel content came from; the same text is judged differently by channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// What the caller typed.
    Input,
    /// Retrieved documents and tool results: data, never instructions.
    Untrusted,
    /// What the model answered.
    Output,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Input => "input",
            Channel::Untrusted => "untrusted",
            Channel::Output => "output",
        }
    }
}

/// A half-open byte range `[start, end)` into the inspected text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span {
            start: start.min(end),
            end: end.max(start),
        }
    }

    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn overlaps(&self, other: &Span) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// One thing a detector found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Specific type, e.g. `email`, `credit_card`, `aws_access_key_id`.
    pub kind: String,
    pub category: FindingCategory,
    pub severity: Severity,
    /// How sure the detector is, 0.0 to 1.0.
    pub confidence: f32,
    /// Which detector produced it.
    pub detector: &'static str,
    pub span: Span,
    pub channel: Channel,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities_order_by_badness() {
        assert!(Severity::Critical > Severity::High);
        assert!(Severity::High > Severity::Medium);
        assert!(Severity::Medium > Severity::Low);
        assert_eq!(Severity::parse("HIGH"), Some(Severity::High));
        assert_eq!(Severity::parse("severe"), None);
    }

    #[test]
    fn span_new_orders_its_ends() {
        let s = Span::new(9, 3);
        assert_eq!((s.start, s.end), (3, 9));
        assert!(s.overlaps(&Span::new(8, 12)));
        assert!(!s.overlaps(&Span::new(9, 12)));
    }

    #[test]
    fn category_round_trips() {
        for c in FindingCategory::ALL {
            assert_eq!(FindingCategory::parse(c.as_str()), Some(c));
        }
    }
}
