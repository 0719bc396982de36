//! Redaction of findings, in whole texts and in streams.
//!
//! A redacted span is replaced by a typed placeholder such as `[EMAIL]` that no detector matches,
//! so redaction is idempotent. Overlapping spans are merged first, so no fragment of a value can
//! survive between two findings.
//!
//! `StreamRedactor` applies the same redaction to text that arrives in chunks. It holds back the
//! last `window` bytes of what it has seen (every detector pattern is bounded to fit) and never
//! releases any byte of a finding that may still be growing, so a value split across chunks is
//! redacted before any of it reaches the client. Its output for any chunking equals `redact` of
//! the whole text.

use crate::{InspectError, Inspector};
use ztai_core::{Channel, Finding, FindingCategory, Severity, Span};

/// The placeholder that replaces a finding of `kind`.
pub fn placeholder(kind: &str) -> String {
    format!("[{}]", kind.to_ascii_uppercase())
}

fn selected(f: &Finding, categories: &[FindingCategory]) -> bool {
    categories.is_empty() || categories.contains(&f.category)
}

/// Merges the spans of the selected findings: sorted, non-overlapping, each with the kind of its
/// first finding.
fn merged_spans<'a>(
    findings: &'a [Finding],
    categories: &[FindingCategory],
) -> Vec<(Span, &'a str)> {
    let mut spans: Vec<(Span, &str)> = findings
        .iter()
        .filter(|f| selected(f, categories) && !f.span.is_empty())
        .map(|f| (f.span, f.kind.as_str()))
        .collect();
    spans.sort_by_key(|(s, _)| (s.start, std::cmp::Reverse(s.end)));
    let mut out: Vec<(Span, &str)> = Vec::with_capacity(spans.len());
    for (span, kind) in spans {
        match out.last_mut() {
            Some((last, _)) if span.start < last.end => last.end = last.end.max(span.end),
            _ => out.push((span, kind)),
        }
    }
    out
}

/// Returns `text` with the findings of `categories` (all when empty) replaced by placeholders.
/// Spans that do not fall on char boundaries are widened to the enclosing chars.
pub fn redact(text: &str, findings: &[Finding], categories: &[FindingCategory]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for (span, kind) in merged_spans(findings, categories) {
        let start = floor_char_boundary(text, span.start.max(pos));
        let end = ceil_char_boundary(text, span.end);
        if start < pos || end <= start {
            continue;
        }
        out.push_str(text.get(pos..start).unwrap_or_default());
        out.push_str(&placeholder(kind));
        pos = end;
    }
    out.push_str(text.get(pos..).unwrap_or_default());
    out
}

/// The start of the run of non-whitespace characters that `cut` falls inside (or `cut` itself
/// when it falls between runs).
fn word_start(s: &str, cut: usize) -> usize {
    let cut = floor_char_boundary(s, cut);
    let at_cut = s.get(cut..).and_then(|t| t.chars().next());
    if at_cut.is_none_or(char::is_whitespace) {
        return cut;
    }
    s.get(..cut)
        .and_then(|head| head.char_indices().rev().find(|(_, c)| c.is_whitespace()))
        .map(|(i, c)| i + c.len_utf8())
        .unwrap_or(0)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// Incremental redaction of a stream of text chunks.
#[derive(Debug)]
pub struct StreamRedactor {
    categories: Vec<FindingCategory>,
    /// Findings below this severity are left in place.
    min_severity: Severity,
    /// A detector for this stream alone (the request's leak checks).
    extra: Option<std::sync::Arc<dyn crate::Detector>>,
    channel: Channel,
    window: usize,
    max_hold: usize,
    /// Text received but not yet released.
    pending: String,
    /// Up to `window` bytes of already released original text, so detectors see the same left
    /// context they would in the whole text.
    context: String,
    /// Findings on released text, with spans relative to the start of the stream.
    findings: Vec<Finding>,
    released_bytes: usize,
    scratch: Vec<Finding>,
}

/// The default hold-back window: larger than any bounded detector pattern except private keys,
/// which are held whole until their end marker arrives. Up to a quarter window more is held while
/// text accumulates between scans.
pub const DEFAULT_WINDOW: usize = 256;
/// The most a stream may hold while waiting for the end of a finding (a private key block).
pub const DEFAULT_MAX_HOLD: usize = 64 * 1024;

impl StreamRedactor {
    pub fn new(categories: Vec<FindingCategory>, channel: Channel) -> Self {
        StreamRedactor {
            categories,
            min_severity: Severity::Low,
            extra: None,
            channel,
            window: DEFAULT_WINDOW,
            max_hold: DEFAULT_MAX_HOLD,
            pending: String::new(),
            context: String::new(),
            findings: Vec::new(),
            released_bytes: 0,
            scratch: Vec::new(),
        }
    }

    /// Runs `detector` on this stream as well as the inspector's own.
    pub fn with_extra(mut self, detector: std::sync::Arc<dyn crate::Detector>) -> Self {
        self.extra = Some(detector);
        self
    }

    /// Redacts only findings at or above `severity` (default: all).
    pub fn with_min_severity(mut self, severity: Severity) -> Self {
        self.min_severity = severity;
        self
    }

    /// Sets the hold-back window (bytes).
    pub fn with_window(mut self, window: usize) -> Self {
        self.window = window.max(1);
        self
    }

    /// All findings so far on released text (spans relative to the whole stream).
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Feeds a chunk; returns the text that is now safe to release (possibly empty).
    pub fn push(&mut self, inspector: &Inspector, chunk: &str) -> Result<String, InspectError> {
        self.pending.push_str(chunk);
        self.release(inspector, false)
    }

    /// Ends the stream; returns everything still held, redacted.
    pub fn finish(&mut self, inspector: &Inspector) -> Result<String, InspectError> {
        self.release(inspector, true)
    }

    fn release(&mut self, inspector: &Inspector, all: bool) -> Result<String, InspectError> {
        if self.pending.is_empty() {
            return Ok(String::new());
        }
        // Scan only once a quarter window has accumulated past the window: a stream of tiny
        // chunks (a token each) then costs one scan per window/4 bytes rather than one per chunk,
        // for at most a quarter window more hold-back.
        if !all && self.pending.len() <= self.window + self.window / 4 {
            return Ok(String::new());
        }
        let mut text = String::with_capacity(self.context.len() + self.pending.len());
        text.push_str(&self.context);
        text.push_str(&self.pending);
        let ctx = self.context.len();
        self.scratch.clear();
        inspector.inspect_with_into(
            &text,
            self.channel,
            self.extra.as_deref(),
            &mut self.scratch,
        )?;
        // Findings relative to `pending`, clipped to it (a match reaching back into context was
        // already released; clipping over-redacts, never under-redacts).
        let mut local: Vec<Finding> = self
            .scratch
            .iter()
            .filter(|f| {
                f.span.end > ctx && selected(f, &self.categories) && f.severity >= self.min_severity
            })
            .map(|f| {
                let mut f = f.clone();
                f.span = Span::new(f.span.start.max(ctx) - ctx, f.span.end - ctx);
                f
            })
            .collect();
        let len = self.pending.len();
        let mut cut = if all { len } else { len - self.window };
        if !all {
            // Never cut through a finding: hold it whole until it can no longer grow. Moving the
            // cut back can expose an earlier overlapping finding, so repeat until stable.
            loop {
                let before = cut;
                for f in &local {
                    if f.span.start < cut && f.span.end > cut {
                        cut = f.span.start;
                    }
                    // A finding that touches the end of what we have may still grow.
                    if f.span.end >= len && f.span.start < cut {
                        cut = f.span.start;
                    }
                }
                if cut == before {
                    break;
                }
            }
            // Never cut inside a run of non-space characters either: secrets, keys and addresses
            // are such runs, so a value longer than the window is still held whole.
            cut = word_start(&self.pending, cut);
            if cut == 0 && len > self.max_hold {
                // Something is growing without end: release it redacted rather than hold forever.
                cut = len;
            }
        }
        cut = floor_char_boundary(&self.pending, cut);
        if cut == 0 {
            return Ok(String::new());
        }
        local.retain(|f| f.span.start < cut);
        for f in &mut local {
            f.span.end = f.span.end.min(cut);
        }
        let released_text = self.pending.get(..cut).unwrap_or_default();
        let out = redact(released_text, &local, &self.categories);
        for f in &local {
            let mut g = f.clone();
            g.span = Span::new(
                f.span.start + self.released_bytes,
                f.span.end + self.released_bytes,
            );
            self.findings.push(g);
        }
        // Keep the tail of released text as left context for the next scan.
        let mut new_context = String::with_capacity(self.window * 2);
        new_context.push_str(&self.context);
        new_context.push_str(released_text);
        let keep_from =
            ceil_char_boundary(&new_context, new_context.len().saturating_sub(self.window));
        self.context = new_context.get(keep_from..).unwrap_or_default().to_string();
        self.pending = self.pending.get(cut..).unwrap_or_default().to_string();
        self.released_bytes += cut;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
