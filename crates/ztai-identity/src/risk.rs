//! Continuous verification: a risk score per principal, fed by what its recent requests carried.
//!
//! A finding that is evidence against its sender adds points by severity (low 1, medium 5,
//! high 20, critical 40) times its confidence — a calibrated probability for the statistical
//! detectors — to the principal that sent it; the score halves every `half_life` without new
//! findings and is capped at 100, so a burst of attacks raises it quickly and good behaviour
//! lowers it again without anyone resetting it. Evidence against the sender means attempts on the
//! system (prompt injection, obfuscation, leaks of what the gateway protects, an organisation's
//! own watch lists) and credentials on the move (a private key in a prompt is how a compromised
//! session exfiltrates). Personal data is not: ordinary work is full of it, policy judges it
//! request by request, and counting it would walk a support agent who pastes customers'
//! addresses into refusals. Policy reads the score as
//! `context.risk_score`. The monitoring issue will add other feeds through `RiskScores::add`.
//! Pure: time comes in as milliseconds from the caller's clock.

use std::collections::HashMap;
use std::sync::Mutex;
use ztai_core::{Finding, FindingCategory, Severity};

/// The highest score.
pub const MAX_SCORE: f64 = 100.0;
/// Scores below this are dropped when the table is full.
const FORGET_BELOW: f64 = 0.5;

/// Points a finding adds to its sender's score.
pub fn points(severity: Severity) -> f64 {
    match severity {
        Severity::Low => 1.0,
        Severity::Medium => 5.0,
        Severity::High => 20.0,
        Severity::Critical => 40.0,
    }
}

/// Points a finding adds to its sender's score: its severity's points weighed by its confidence,
/// and none for categories that are not evidence against the sender.
pub fn weight(finding: &Finding) -> f64 {
    match finding.category {
        FindingCategory::Pii => 0.0,
        FindingCategory::Secret
        | FindingCategory::PromptInjection
        | FindingCategory::Obfuscation
        | FindingCategory::Custom
        | FindingCategory::Leak => {
            let confidence = f64::from(finding.confidence);
            let confidence = if confidence.is_finite() {
                confidence.clamp(0.0, 1.0)
            } else {
                1.0
            };
            points(finding.severity) * confidence
        }
    }
}

/// Decaying risk scores by principal (`kind:id`), bounded in memory.
#[derive(Debug)]
pub struct RiskScores {
    half_life_ms: f64,
    capacity: usize,
    scores: Mutex<HashMap<String, (f64, u64)>>,
}

impl RiskScores {
    pub fn new(half_life: std::time::Duration, capacity: usize) -> Self {
        RiskScores {
            half_life_ms: (half_life.as_millis() as f64).max(1.0),
            capacity: capacity.max(1),
            scores: Mutex::new(HashMap::new()),
        }
    }

    fn decayed(&self, (score, at): (f64, u64), now_ms: u64) -> f64 {
        let elapsed = now_ms.saturating_sub(at) as f64;
        score * 0.5f64.powf(elapsed / self.half_life_ms)
    }

    /// Adds `amount` points to `principal` at `now_ms`.
    pub fn add(&self, principal: &str, amount: f64, now_ms: u64) {
        if amount <= 0.0 || !amount.is_finite() {
            return;
        }
        let mut scores = self.scores.lock().unwrap_or_else(|p| p.into_inner());
        if scores.len() >= self.capacity && !scores.contains_key(principal) {
            let half_life = self.half_life_ms;
            scores.retain(|_, (s, at)| {
                let elapsed = now_ms.saturating_sub(*at) as f64;
                *s * 0.5f64.powf(elapsed / half_life) >= FORGET_BELOW
            });
            if scores.len() >= self.capacity {
                // Still full of risky principals: keep them, do not track a new one.
                return;
            }
        }
        let current = scores
            .get(principal)
            .map(|e| self.decayed(*e, now_ms))
            .unwrap_or(0.0);
        scores.insert(
            principal.to_string(),
            ((current + amount).min(MAX_SCORE), now_ms),
        );
    }

    /// Adds the points of `findings` to `principal`.
    pub fn observe<'a>(
        &self,
        principal: &str,
        findings: impl IntoIterator<Item = &'a Finding>,
        now_ms: u64,
    ) {
        let total: f64 = findings.into_iter().map(weight).sum();
        self.add(principal, total, now_ms);
    }

    /// The score at `now_ms`, rounded down to a whole number from 0 to 100.
    pub fn score(&self, principal: &str, now_ms: u64) -> i64 {
        let scores = self.scores.lock().unwrap_or_else(|p| p.into_inner());
        scores
            .get(principal)
            .map(|e| self.decayed(*e, now_ms).floor() as i64)
            .unwrap_or(0)
            .clamp(0, MAX_SCORE as i64)
    }

    pub fn len(&self) -> usize {
        self.scores.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MIN: u64 = 60_000;

    #[test]
    fn findings_raise_the_score_and_time_lowers_it() {
        let r = RiskScores::new(Duration::from_secs(600), 100);
        assert_eq!(r.score("user:a", 0), 0);
        r.add("user:a", points(Severity::High), 0);
        r.add("user:a", points(Severity::High), 0);
        assert_eq!(r.score("user:a", 0), 40);
        // One half-life later the score has halved; two later, quartered.
        assert_eq!(r.score("user:a", 10 * MIN), 20);
        assert_eq!(r.score("user:a", 20 * MIN), 10);
        // Other principals are untouched.
        assert_eq!(r.score("user:b", 0), 0);
    }

    #[test]
    fn the_score_is_capped_and_ignores_nonsense() {
        let r = RiskScores::new(Duration::from_secs(600), 100);
        for _ in 0..10 {
            r.add("agent:x", points(Severity::Critical), 0);
        }
        assert_eq!(r.score("agent:x", 0), 100);
        r.add("agent:y", f64::NAN, 0);
        r.add("agent:y", -50.0, 0);
        r.add("agent:y", f64::INFINITY, 0);
        assert_eq!(r.score("agent:y", 0), 0);
        // A clock that goes backwards does not raise the score.
        assert_eq!(r.score("agent:x", 0), 100);
        assert!(r.score("agent:x", 0) <= 100);
    }

    fn finding(category: FindingCategory, severity: Severity, confidence: f32) -> Finding {
        Finding {
            kind: "k".into(),
            category,
            severity,
            confidence,
            detector: "test",
            span: ztai_core::Span::new(0, 1),
            channel: ztai_core::Channel::Input,
        }
    }

    #[test]
    fn findings_weigh_by_confidence_and_only_evidence_against_the_sender_counts() {
        use FindingCategory::*;
        let r = RiskScores::new(Duration::from_secs(600), 100);
        let sure = finding(PromptInjection, Severity::High, 1.0);
        let unsure = finding(PromptInjection, Severity::Medium, 0.2);
        r.observe("user:a", [&sure, &unsure], 0);
        assert_eq!(r.score("user:a", 0), 21);
        // A medium classifier finding at a calibrated probability of one half adds 2.5 points.
        let half = finding(PromptInjection, Severity::Medium, 0.5);
        assert!((weight(&half) - 2.5).abs() < 1e-9);
        // Personal data the caller sends does not count against it.
        assert_eq!(weight(&finding(Pii, Severity::Critical, 1.0)), 0.0);
        for c in [Secret, Obfuscation, Custom, Leak] {
            assert_eq!(weight(&finding(c, Severity::High, 1.0)), 20.0);
        }
        // A confidence out of range is clamped; a nonsense one counts in full (fail closed).
        assert_eq!(weight(&finding(Leak, Severity::Low, 7.0)), 1.0);
        assert_eq!(weight(&finding(Leak, Severity::Low, f32::NAN)), 1.0);
        assert_eq!(weight(&finding(Leak, Severity::Low, -1.0)), 0.0);
    }

    #[test]
    fn a_full_table_forgets_quiet_principals_first() {
        let r = RiskScores::new(Duration::from_secs(10), 2);
        r.add("user:old", 1.0, 0);
        r.add("user:risky", 100.0, 0);
        // Much later, the old one has decayed to nothing and makes room.
        r.add("user:new", 5.0, 60_000);
        assert_eq!(r.len(), 2);
        assert_eq!(r.score("user:new", 60_000), 5);
        assert_eq!(r.score("user:old", 60_000), 0);
        assert_eq!(r.score("user:risky", 60_000), 1);
    }
}
