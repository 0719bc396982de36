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

/// Merges the spans of the selected findings: sorted, non-overlapping, each with the kind and
/// category of its first finding.
fn merged_spans<'a>(
    findings: &'a [Finding],
    categories: &[FindingCategory],
) -> Vec<(Span, &'a str, FindingCategory)> {
    let mut spans: Vec<(Span, &str, FindingCategory)> = findings
        .iter()
        .filter(|f| selected(f, categories) && !f.span.is_empty())
        .map(|f| (f.span, f.kind.as_str(), f.category))
        .collect();
    spans.sort_by_key(|(s, _, _)| (s.start, std::cmp::Reverse(s.end)));
    let mut out: Vec<(Span, &str, FindingCategory)> = Vec::with_capacity(spans.len());
    for (span, kind, category) in spans {
        match out.last_mut() {
            Some((last, _, _)) if span.start < last.end => last.end = last.end.max(span.end),
            _ => out.push((span, kind, category)),
        }
    }
    out
}

/// Returns `text` with the findings of `categories` (all when empty) replaced by placeholders.
/// Spans that do not fall on char boundaries are widened to the enclosing chars.
pub fn redact(text: &str, findings: &[Finding], categories: &[FindingCategory]) -> String {
    redact_by(text, findings, categories, |kind, _, _| placeholder(kind))
}

/// `redact` with the replacement for each (kind, value) chosen by `replace`.
fn redact_by(
    text: &str,
    findings: &[Finding],
    categories: &[FindingCategory],
    mut replace: impl FnMut(&str, FindingCategory, &str) -> String,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pos = 0;
    for (span, kind, category) in merged_spans(findings, categories) {
        let start = floor_char_boundary(text, span.start.max(pos));
        let end = ceil_char_boundary(text, span.end);
        if start < pos || end <= start {
            continue;
        }
        out.push_str(text.get(pos..start).unwrap_or_default());
        out.push_str(&replace(
            kind,
            category,
            text.get(start..end).unwrap_or_default(),
        ));
        pos = end;
    }
    out.push_str(text.get(pos..).unwrap_or_default());
    out
}

/// How a redacted value is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replacement {
    /// `[EMAIL]`.
    Placeholder,
    /// `[EMAIL_1]`, `[EMAIL_2]`: the same value keeps its number for the session, so an answer
    /// can still say which of two addresses it means.
    Numbered,
    /// One `*` per character: the shape stays, nothing of the value does.
    Mask,
    /// `[EMAIL:1a2b3c4d]`, a keyed hash (HMAC-SHA-256 under the session key): equal values match
    /// across records, and without the key nobody can test a guess against it.
    Hash,
    /// `[EMAIL:tok_…]`, a token the session's `Redactor` (and only it) turns back into the value
    /// with `reveal`.
    Token,
}

impl Replacement {
    /// Every mode, by name, for help texts and error messages.
    pub const NAMES: &'static str = "placeholder, numbered, mask, hash or token";

    /// Whether the mode needs a session's state (its key, numbers or vault): placeholders and
    /// masks are the same whoever asks.
    pub fn is_stateful(self) -> bool {
        matches!(
            self,
            Replacement::Numbered | Replacement::Hash | Replacement::Token
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Replacement::Placeholder => "placeholder",
            Replacement::Numbered => "numbered",
            Replacement::Mask => "mask",
            Replacement::Hash => "hash",
            Replacement::Token => "token",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "placeholder" => Replacement::Placeholder,
            "numbered" => Replacement::Numbered,
            "mask" => Replacement::Mask,
            "hash" => Replacement::Hash,
            "token" => Replacement::Token,
            _ => return None,
        })
    }
}

/// What a token stands for.
struct Vaulted {
    kind: String,
    category: FindingCategory,
    value: String,
}

/// How many distinct values one session numbers or tokenises by default, and how many bytes of
/// them it keeps. Past either, values are still redacted (as plain placeholders or hashes) but no
/// longer remembered, so a caller cannot grow a session's memory without bound.
pub const DEFAULT_MAX_VALUES: usize = 4096;
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 * 1024;

/// Redaction for one session: the replacement mode, the session key, and what numbering and
/// tokens the session has handed out.
pub struct Redactor {
    mode: Replacement,
    key: ring::hmac::Key,
    max_values: usize,
    max_bytes: usize,
    /// Bytes of kinds, values and tokens held in `numbers` and `vault`.
    remembered: usize,
    numbers: std::collections::HashMap<(String, String), usize>,
    counters: std::collections::HashMap<String, usize>,
    vault: std::collections::HashMap<String, Vaulted>,
}

/// A token found in a text and what it stands for (never the value: that is only in `reveal`'s
/// output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRef {
    pub kind: String,
    pub category: FindingCategory,
}

impl std::fmt::Debug for Redactor {
    // Never prints the key or the vault: they are the values redaction exists to hide.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("mode", &self.mode)
            .field("tokens", &self.vault.len())
            .finish_non_exhaustive()
    }
}

impl Redactor {
    /// `session_key` must be random and kept for the session only (the caller owns I/O and
    /// randomness); another session's key yields other hashes and tokens.
    pub fn new(mode: Replacement, session_key: [u8; 32]) -> Self {
        Redactor {
            mode,
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &session_key),
            max_values: DEFAULT_MAX_VALUES,
            max_bytes: DEFAULT_MAX_VALUE_BYTES,
            remembered: 0,
            numbers: Default::default(),
            counters: Default::default(),
            vault: Default::default(),
        }
    }

    /// Caps the distinct values the session numbers or tokenises (default `DEFAULT_MAX_VALUES`).
    pub fn with_max_values(mut self, max: usize) -> Self {
        self.max_values = max;
        self
    }

    /// Caps the bytes of values (with their kinds and tokens) the session keeps (default
    /// `DEFAULT_MAX_VALUE_BYTES`).
    pub fn with_max_bytes(mut self, max: usize) -> Self {
        self.max_bytes = max;
        self
    }

    pub fn mode(&self) -> Replacement {
        self.mode
    }

    /// How many values the session can give back.
    pub fn tokens(&self) -> usize {
        self.vault.len()
    }

    fn digest(&self, kind: &str, value: &str) -> String {
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        ctx.update(kind.as_bytes());
        ctx.update(&[0]);
        ctx.update(value.as_bytes());
        hex::encode(ctx.sign().as_ref())
    }

    /// The replacement for one value of `kind`.
    pub fn replacement(&mut self, kind: &str, category: FindingCategory, value: &str) -> String {
        let upper = kind.to_ascii_uppercase();
        // What remembering one more value costs: its kind, the value, and a token.
        let cost = 2 * kind.len() + value.len() + 32;
        let full = self.numbers.len().max(self.vault.len()) >= self.max_values
            || self.remembered.saturating_add(cost) > self.max_bytes;
        match self.mode {
            Replacement::Placeholder => placeholder(kind),
            Replacement::Numbered
                if full
                    && !self
                        .numbers
                        .contains_key(&(kind.to_string(), value.to_string())) =>
            {
                placeholder(kind)
            }
            Replacement::Numbered => {
                let next = self.counters.get(kind).copied().unwrap_or(0) + 1;
                let n = *self
                    .numbers
                    .entry((kind.to_string(), value.to_string()))
                    .or_insert(next);
                if n == next {
                    self.counters.insert(kind.to_string(), next);
                    self.remembered = self.remembered.saturating_add(cost);
                }
                format!("[{upper}_{n}]")
            }
            Replacement::Mask => "*".repeat(value.chars().count()),
            Replacement::Hash => self.hashed(kind, value),
            Replacement::Token => {
                let token = format!(
                    "[{upper}:tok_{}]",
                    self.digest(kind, value).get(..20).unwrap_or_default()
                );
                if self.vault.contains_key(&token) {
                    return token;
                }
                if full {
                    // Still redacted, no longer revealable.
                    return self.hashed(kind, value);
                }
                self.remembered = self.remembered.saturating_add(cost);
                self.vault.insert(
                    token.clone(),
                    Vaulted {
                        kind: kind.to_string(),
                        category,
                        value: value.to_string(),
                    },
                );
                token
            }
        }
    }

    fn hashed(&self, kind: &str, value: &str) -> String {
        format!(
            "[{}:{}]",
            kind.to_ascii_uppercase(),
            self.digest(kind, value).get(..8).unwrap_or_default()
        )
    }

    /// `redact`, replacing values the session's way.
    pub fn redact(
        &mut self,
        text: &str,
        findings: &[Finding],
        categories: &[FindingCategory],
    ) -> String {
        redact_by(text, findings, categories, |kind, category, value| {
            self.replacement(kind, category, value)
        })
    }

    /// This session's tokens in `text`, in order of appearance: what `reveal` would put back
    /// (for policy to decide on before it does).
    pub fn tokens_in(&self, text: &str) -> Vec<TokenRef> {
        let mut out = Vec::new();
        self.each_token(text, |_, v| {
            out.push(TokenRef {
                kind: v.kind.clone(),
                category: v.category,
            })
        });
        out
    }

    /// Puts back the values behind this session's tokens (for a caller authorised to see
    /// them); tokens from another session, and text redacted in any other mode, stay as they
    /// are.
    pub fn reveal(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut pos = 0;
        self.each_token(text, |span, v| {
            out.push_str(text.get(pos..span.start).unwrap_or_default());
            out.push_str(&v.value);
            pos = span.end;
        });
        out.push_str(text.get(pos..).unwrap_or_default());
        out
    }

    /// Calls `f` for each of this session's tokens in `text`, left to right, without overlap.
    /// A token is `[KIND:tok_` + 20 hex digits + `]`, so only bracketed runs that short are
    /// looked up.
    fn each_token(&self, text: &str, mut f: impl FnMut(Span, &Vaulted)) {
        const LONGEST: usize = 96;
        if self.vault.is_empty() {
            return;
        }
        let bytes = text.as_bytes();
        let mut i = 0;
        while let Some(open) = text.get(i..).and_then(|t| t.find('[')) {
            let start = i + open;
            let end = bytes
                .iter()
                .skip(start + 1)
                .take(LONGEST)
                .position(|&b| b == b']' || b == b'[')
                .map(|p| start + 1 + p)
                .filter(|&e| bytes.get(e) == Some(&b']'));
            match end.and_then(|e| text.get(start..=e).map(|t| (e, t))) {
                Some((e, candidate)) => match self.vault.get(candidate) {
                    Some(v) => {
                        f(Span::new(start, e + 1), v);
                        i = e + 1;
                    }
                    None => i = start + 1,
                },
                None => i = start + 1,
            }
        }
    }
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
    /// Every finding on released text, whatever its category or severity (what a record of
    /// the whole text would hold), with spans relative to the start of the stream.
    findings: Vec<Finding>,
    released_bytes: usize,
    scratch: Vec<Finding>,
    /// The session's redactor when values are numbered, hashed or tokenised; placeholders when
    /// none.
    redactor: Option<std::sync::Arc<std::sync::Mutex<Redactor>>>,
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
            redactor: None,
        }
    }

    /// Replaces values the session's way (shared with the session's other requests) instead of
    /// with plain placeholders.
    pub fn with_redactor(mut self, redactor: std::sync::Arc<std::sync::Mutex<Redactor>>) -> Self {
        self.redactor = Some(redactor);
        self
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

    /// All findings so far on released text, redacted or not (spans relative to the whole
    /// stream): the same findings inspecting the released text whole would give.
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
        let mut seen: Vec<Finding> = self
            .scratch
            .iter()
            .filter(|f| f.span.end > ctx)
            .map(|f| {
                let mut f = f.clone();
                f.span = Span::new(f.span.start.max(ctx) - ctx, f.span.end - ctx);
                f
            })
            .collect();
        let mut local: Vec<Finding> = seen
            .iter()
            .filter(|f| selected(f, &self.categories) && f.severity >= self.min_severity)
            .cloned()
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
        // A finding the cut goes through is recorded from the scan that releases its end, so
        // it is recorded once (selected ones never cross the cut: it moved back for them).
        seen.retain(|f| f.span.end <= cut);
        let released_text = self.pending.get(..cut).unwrap_or_default();
        let out = match &self.redactor {
            // A poisoned lock only means another request panicked mid-redaction; the maps it
            // holds stay valid, and every value is still replaced.
            Some(r) => r.lock().unwrap_or_else(|p| p.into_inner()).redact(
                released_text,
                &local,
                &self.categories,
            ),
            None => redact(released_text, &local, &self.categories),
        };
        for f in seen {
            let mut g = f;
            g.span = Span::new(
                g.span.start + self.released_bytes,
                g.span.end + self.released_bytes,
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
