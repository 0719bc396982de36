//! The cascade into the semantic tier.
//!
//! A transformer encoder costs milliseconds where the classifier costs microseconds, so it is
//! asked only about what the cheap tiers left undecided: text no rule and no classifier window
//! flagged, whose classifier score still reached the band's lower edge. Everything else is
//! decided by the cheap tiers alone. The encoder itself lives in another crate (it needs a tensor
//! library); this module owns the decision of what reaches it, the finding it produces and the
//! counters that say what share of traffic it saw. An encoder that fails refuses the content:
//! a second opinion that silently did not happen would be a hole.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ztai_core::{Channel, Finding, FindingCategory, Severity, Span};

use crate::classifier::WindowScore;
use crate::{InspectError, NormalizedText};

/// The classifier score from which undecided text reaches the encoder. On the development
/// corpora's out-of-source folds 0.5 kept four fifths of the F1 that 0.2 gained with half the
/// texts reaching the encoder (docs/inspection.md, "The semantic tier").
pub const DEFAULT_BAND: f32 = 0.5;
/// Bytes of text the encoder reads: the whole text when it is shorter, else this much around
/// the classifier's most suspicious window.
pub const ENCODER_MAX_BYTES: usize = 4096;

/// A second opinion on text (the semantic tier), implemented outside this crate.
pub trait SemanticScorer: Send + Sync + std::fmt::Debug {
    /// Whether `text` carries an injection by this scorer's threshold, with its score; `Err`
    /// says why it could not be scored.
    fn judge(&self, text: &str, channel: Channel) -> Result<Judgement, String>;
}

/// What the semantic tier says about one text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    /// Whether the score reached the scorer's threshold.
    pub flagged: bool,
    /// The out-of-source precision at the threshold: the finding's calibrated confidence.
    pub precision: f32,
}

/// The tier as the inspector holds it: the scorer, the band and the counters.
#[derive(Debug)]
pub struct SemanticTier {
    scorer: Arc<dyn SemanticScorer>,
    band: f32,
    considered: AtomicU64,
    reached: AtomicU64,
    flagged: AtomicU64,
}

/// How much of the traffic the tier saw (since start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SemanticStats {
    /// Texts the classifier scored on the channels the tier serves.
    pub considered: u64,
    /// Texts that reached the encoder.
    pub reached: u64,
    /// Texts the encoder flagged.
    pub flagged: u64,
}

impl SemanticTier {
    /// `band`: the classifier score from which undecided text reaches the scorer (0 sends every
    /// undecided text, above 1 none).
    pub fn new(scorer: Arc<dyn SemanticScorer>, band: f32) -> Self {
        SemanticTier {
            scorer,
            band,
            considered: AtomicU64::new(0),
            reached: AtomicU64::new(0),
            flagged: AtomicU64::new(0),
        }
    }

    pub fn band(&self) -> f32 {
        self.band
    }

    pub fn stats(&self) -> SemanticStats {
        SemanticStats {
            considered: self.considered.load(Ordering::Relaxed),
            reached: self.reached.load(Ordering::Relaxed),
            flagged: self.flagged.load(Ordering::Relaxed),
        }
    }

    /// Asks the scorer about `norm` when the cheap tiers left it undecided and the classifier's
    /// score reached the band. The encoder was trained on prompts, documents and tool results;
    /// model output is left to the cheap tiers.
    pub(crate) fn second_opinion(
        &self,
        norm: &NormalizedText<'_>,
        channel: Channel,
        scored: WindowScore,
        decided: bool,
        out: &mut Vec<Finding>,
    ) -> Result<(), InspectError> {
        if channel == Channel::Output {
            return Ok(());
        }
        self.considered.fetch_add(1, Ordering::Relaxed);
        if decided || scored.probability < self.band {
            return Ok(());
        }
        self.reached.fetch_add(1, Ordering::Relaxed);
        let text = norm.as_str();
        let (start, end) = focus(text, scored.start, scored.end, ENCODER_MAX_BYTES);
        let focused = text.get(start..end).unwrap_or(text);
        let judgement = self
            .scorer
            .judge(focused, channel)
            .map_err(|message| InspectError::Semantic { message })?;
        if judgement.flagged {
            self.flagged.fetch_add(1, Ordering::Relaxed);
            out.push(Finding {
                kind: "semantic_injection".into(),
                category: FindingCategory::PromptInjection,
                severity: Severity::Medium,
                confidence: judgement.precision,
                detector: "semantic_encoder",
                span: norm.original_span(Span::new(start, end)),
                channel,
            });
        }
        Ok(())
    }
}

/// A span of at most `max` bytes of `text` on char boundaries: all of it when it fits, else
/// centred on the window `start..end` (clamped into the text).
fn focus(text: &str, start: usize, end: usize, max: usize) -> (usize, usize) {
    if text.len() <= max {
        return (0, text.len());
    }
    let middle = start.saturating_add(end) / 2;
    let mut from = middle.saturating_sub(max / 2).min(text.len() - max);
    while !text.is_char_boundary(from) {
        from += 1;
    }
    let mut to = from.saturating_add(max).min(text.len());
    while !text.is_char_boundary(to) {
        to -= 1;
    }
    (from, to)
}

#[cfg(test)]
mod tests;
