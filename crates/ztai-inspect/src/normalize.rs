//! Normalisation: the view of a text that detectors of *meaning* (injection rules, the
//! classifier, dictionaries) look at.
//!
//! Attackers hide instructions from pattern matchers with characters a model reads straight
//! through: invisible joiners inside words, Unicode tag characters that spell ASCII nobody sees
//! (ASCII smuggling), bytes hidden in variation selectors, bidi overrides, fullwidth and
//! mathematical letters, and look-alike letters from other scripts. The normalised view removes or
//! decodes all of that (NFKC, then confusables folded to their Latin prototype per Unicode's
//! UTS #39 table), and every smuggling technique found is itself reported as an `obfuscation`
//! finding.
//!
//! The view keeps a map back to the original text, so a finding on the normalised text is reported
//! (and redacted) at the original characters that produced it. Values such as card numbers and
//! keys are still matched on the original text: redaction must hit their exact bytes.
//!
//! Pure ASCII text cannot hold any of these tricks, so it is borrowed as is, at no cost.

use std::borrow::Cow;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::canonical_combining_class;
use ztai_core::{Channel, Finding, FindingCategory, Severity, Span};

/// A stretch of normalised output and the original bytes it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    /// Byte offset of the piece in the normalised text.
    norm: usize,
    /// Byte range in the original text.
    orig_start: usize,
    orig_end: usize,
}

/// A text as detectors of meaning see it, with the way back to the original.
#[derive(Debug, Clone)]
pub struct NormalizedText<'a> {
    text: Cow<'a, str>,
    /// Empty when `text` is the original.
    pieces: Vec<Piece>,
    original_len: usize,
}

impl<'a> NormalizedText<'a> {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the normalised view differs from the original.
    pub fn changed(&self) -> bool {
        matches!(self.text, Cow::Owned(_))
    }

    /// The span of the original text that produced `span` of the normalised text.
    pub fn original_span(&self, span: Span) -> Span {
        if !self.changed() {
            return span;
        }
        let piece_at = |off: usize| {
            let i = self.pieces.partition_point(|p| p.norm <= off);
            self.pieces.get(i.saturating_sub(1))
        };
        let start = piece_at(span.start).map_or(0, |p| p.orig_start);
        let end = if span.is_empty() {
            start
        } else {
            piece_at(span.end.saturating_sub(1)).map_or(self.original_len, |p| p.orig_end)
        };
        Span::new(start, end.max(start))
    }
}

/// How a run of removed characters was being used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hidden {
    /// Zero-width and other default-ignorable characters.
    Invisible,
    /// Bidi embeddings, overrides and isolates ("Trojan Source").
    Bidi,
    /// Unicode tag characters spelling text (ASCII smuggling).
    Tags,
    /// Variation selectors carrying bytes.
    VariationBytes,
}

impl Hidden {
    fn finding(self) -> (&'static str, Severity) {
        match self {
            Hidden::Invisible => ("invisible_characters", Severity::Medium),
            Hidden::Bidi => ("bidi_control", Severity::Medium),
            Hidden::Tags => ("tag_characters", Severity::High),
            Hidden::VariationBytes => ("variation_selector_smuggling", Severity::High),
        }
    }
}

fn is_tag(c: char) -> bool {
    ('\u{E0000}'..='\u{E007F}').contains(&c)
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Marks that change direction or joining legitimately in right-to-left and Indic scripts and in
/// emoji sequences: removed from the view, never reported on their own.
fn is_benign_format(c: char) -> bool {
    matches!(
        c,
        '\u{200C}' | '\u{200D}' | '\u{200E}' | '\u{200F}' | '\u{061C}'
    )
}

fn is_zero_width(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'
            | '\u{2060}'..='\u{2064}'
            | '\u{206A}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{1D173}'..='\u{1D17A}'
    )
}

/// The byte a variation selector encodes in the "emoji smuggling" scheme (VS1–VS16 are 0–15,
/// VS17–VS256 are 16–255).
fn variation_byte(c: char) -> Option<u8> {
    let v = c as u32;
    match v {
        0xFE00..=0xFE0F => u8::try_from(v - 0xFE00).ok(),
        0xE0100..=0xE01EF => u8::try_from(v - 0xE0100 + 16).ok(),
        _ => None,
    }
}

/// The ASCII letter or digit a non-ASCII look-alike stands for, per the Unicode confusables table.
fn latin_prototype(c: char) -> Option<char> {
    // CJK, Hangul and other large blocks hold no Latin look-alikes worth the table lookup.
    if c.is_ascii()
        || (c as u32) >= 0x2E80 && !matches!(c as u32, 0xFF00..=0xFFEF | 0x1D400..=0x1D7FF)
    {
        return None;
    }
    let mut buf = [0u8; 4];
    let mut skeleton = unicode_security::skeleton(c.encode_utf8(&mut buf));
    let first = skeleton.next()?;
    if skeleton.next().is_some() || !first.is_ascii_alphanumeric() {
        return None;
    }
    Some(first)
}

/// Normalises `text`, appending an `obfuscation` finding for each smuggling technique found.
pub fn normalize<'a>(
    text: &'a str,
    channel: Channel,
    out: &mut Vec<Finding>,
) -> NormalizedText<'a> {
    if text.is_ascii() {
        return NormalizedText {
            text: Cow::Borrowed(text),
            pieces: Vec::new(),
            original_len: text.len(),
        };
    }
    let mut b = Builder {
        norm: String::with_capacity(text.len()),
        pieces: Vec::new(),
        run: None,
        runs: Vec::new(),
        mixed_words: Vec::new(),
    };
    let mut chars = text.char_indices().peekable();
    // The last visible character before a hidden run, and whether the word it is in holds both
    // ASCII letters and folded look-alikes.
    let mut prev_visible: Option<char> = None;
    let mut word = WordScript::default();
    while let Some((i, c)) = chars.next() {
        let len = c.len_utf8();
        if is_tag(c) {
            // A tag run after a black flag is an emoji subdivision flag (England, Scotland...).
            let flag = prev_visible == Some('\u{1F3F4}');
            if let Some(ascii) =
                char::from_u32(c as u32 - 0xE0000).filter(|a| a.is_ascii_graphic() || *a == ' ')
                && !flag
            {
                b.push_decoded(ascii, i, i + len, Hidden::Tags);
            } else {
                b.hide(i, i + len, if flag { None } else { Some(Hidden::Tags) });
            }
            continue;
        }
        if let Some(byte) = variation_byte(c) {
            // One selector after an emoji picks its presentation; a run of them carries data.
            let run_continues = chars
                .peek()
                .is_some_and(|&(_, n)| variation_byte(n).is_some());
            let in_run = b.hidden() == Some(Hidden::VariationBytes);
            if run_continues || in_run {
                match char::from(byte) {
                    a if a.is_ascii_graphic() || a == ' ' => {
                        b.push_decoded(a, i, i + len, Hidden::VariationBytes)
                    }
                    _ => b.hide(i, i + len, Some(Hidden::VariationBytes)),
                }
            } else {
                b.hide(i, i + len, None);
            }
            continue;
        }
        if is_bidi_control(c) {
            b.hide(i, i + len, Some(Hidden::Bidi));
            continue;
        }
        if is_benign_format(c) {
            b.hide(i, i + len, None);
            continue;
        }
        if is_zero_width(c) {
            // Inside a word it splits the word for pattern matchers; between words or at the ends
            // (a byte-order mark) it is noise.
            let next_visible = text
                .get(i + len..)
                .and_then(|rest| rest.chars().find(|n| !is_zero_width(*n)));
            let in_word = prev_visible.is_some_and(char::is_alphanumeric)
                && next_visible.is_some_and(char::is_alphanumeric);
            b.hide(i, i + len, in_word.then_some(Hidden::Invisible));
            continue;
        }
        // A starter and the combining marks after it normalise together.
        let mut end = i + len;
        while let Some(&(j, m)) = chars.peek() {
            if canonical_combining_class(m) == 0 {
                break;
            }
            end = j + m.len_utf8();
            chars.next();
        }
        let cluster = text.get(i..end).unwrap_or_default();
        b.end_hidden();
        let norm_start = b.norm.len();
        for n in cluster.nfkc() {
            match latin_prototype(n) {
                Some(p) => {
                    word.folded = true;
                    b.norm.push(p);
                }
                None => {
                    if n.is_ascii_alphabetic() {
                        word.ascii = true;
                    }
                    b.norm.push(n);
                }
            }
        }
        b.pieces.push(Piece {
            norm: norm_start,
            orig_start: i,
            orig_end: end,
        });
        if c.is_alphanumeric() {
            word.start.get_or_insert(i);
            word.end = end;
        } else {
            word.finish(&mut b.mixed_words);
        }
        prev_visible = Some(c);
    }
    word.finish(&mut b.mixed_words);
    b.end_hidden();
    for (how, span) in b.runs {
        let (kind, severity) = how.finding();
        out.push(Finding {
            kind: kind.into(),
            category: FindingCategory::Obfuscation,
            severity,
            confidence: 0.95,
            detector: "normalizer",
            span,
            channel,
        });
    }
    for span in b.mixed_words {
        out.push(Finding {
            kind: "homoglyphs".into(),
            category: FindingCategory::Obfuscation,
            severity: Severity::Medium,
            confidence: 0.8,
            detector: "normalizer",
            span,
            channel,
        });
    }
    if b.norm == text {
        return NormalizedText {
            text: Cow::Borrowed(text),
            pieces: Vec::new(),
            original_len: text.len(),
        };
    }
    NormalizedText {
        text: Cow::Owned(b.norm),
        pieces: b.pieces,
        original_len: text.len(),
    }
}

/// Tracks whether the current word mixes ASCII letters with look-alikes from other scripts.
#[derive(Debug, Default)]
struct WordScript {
    start: Option<usize>,
    end: usize,
    ascii: bool,
    folded: bool,
}

impl WordScript {
    fn finish(&mut self, mixed: &mut Vec<Span>) {
        if let Some(start) = self.start
            && self.ascii
            && self.folded
        {
            mixed.push(Span::new(start, self.end));
        }
        *self = WordScript::default();
    }
}

#[derive(Debug)]
struct Builder {
    norm: String,
    pieces: Vec<Piece>,
    /// The run of hidden characters in progress: technique and original span.
    run: Option<(Hidden, Span)>,
    /// Finished runs.
    runs: Vec<(Hidden, Span)>,
    mixed_words: Vec<Span>,
}

impl Builder {
    fn hidden(&self) -> Option<Hidden> {
        self.run.map(|(h, _)| h)
    }

    fn push_decoded(&mut self, c: char, start: usize, end: usize, how: Hidden) {
        if self.hidden() != Some(how) {
            // Hidden text is a separate message: keep it from fusing with the word before it.
            self.pieces.push(Piece {
                norm: self.norm.len(),
                orig_start: start,
                orig_end: end,
            });
            self.norm.push(' ');
        }
        self.hide(start, end, Some(how));
        self.pieces.push(Piece {
            norm: self.norm.len(),
            orig_start: start,
            orig_end: end,
        });
        self.norm.push(c);
    }

    /// Removes `start..end` from the view; `how` = the technique to report, if any. Unreported
    /// characters (a byte-order mark, a joiner in an emoji) do not break a reported run.
    fn hide(&mut self, start: usize, end: usize, how: Option<Hidden>) {
        let Some(how) = how else { return };
        match &mut self.run {
            Some((h, span)) if *h == how => span.end = end,
            _ => {
                self.end_hidden();
                self.run = Some((how, Span::new(start, end)));
            }
        }
    }

    fn end_hidden(&mut self) {
        if let Some((how, span)) = self.run.take() {
            if matches!(how, Hidden::Tags | Hidden::VariationBytes) {
                self.pieces.push(Piece {
                    norm: self.norm.len(),
                    orig_start: span.end,
                    orig_end: span.end,
                });
                self.norm.push(' ');
            }
            self.runs.push((how, span));
        }
    }
}

#[cfg(test)]
mod tests;
