//! `ztai scan`: the inspection engine for pipelines — text from stdin or files, or JSON Lines,
//! findings out (human or JSON), an exit code a CI step can gate on.
//!
//! Offsets printed are Unicode code points into the original text (what Python's `str` slicing
//! and most labelling tools use), not the engine's internal byte offsets.

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use ztai_core::{Channel, Finding, FindingCategory, Severity};
use ztai_inspect::{
    ClassifierTier, CustomDictionaries, Dictionary, InjectionModel, Inspector, Redactor,
    Replacement,
};

/// Which channel the text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Source {
    /// Typed by a user (a prompt).
    User,
    /// Retrieved documents and tool results: data that must not carry instructions.
    Untrusted,
    /// A model's answer.
    Output,
}

impl Source {
    pub fn channel(self) -> Channel {
        match self {
            Source::User => Channel::Input,
            Source::Untrusted => Channel::Untrusted,
            Source::Output => Channel::Output,
        }
    }
}

/// How `ztai scan --redact` replaces values (token mode needs a gateway session to give values
/// back, so it is not offered here).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RedactMode {
    /// `[EMAIL]`.
    Placeholder,
    /// `[EMAIL_1]`, one number per distinct value across the whole run.
    Numbered,
    /// One `*` per character.
    Mask,
    /// `[EMAIL:1a2b3c4d]`, HMAC-SHA-256 under a key random per run: equal values match within
    /// the run's output, and nobody can test a guess against it.
    Hash,
}

impl RedactMode {
    fn redactor(self) -> anyhow::Result<Redactor> {
        use ring::rand::SecureRandom;
        let mut key = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
        let mode = match self {
            RedactMode::Placeholder => Replacement::Placeholder,
            RedactMode::Numbered => Replacement::Numbered,
            RedactMode::Mask => Replacement::Mask,
            RedactMode::Hash => Replacement::Hash,
        };
        // A run may see any number of distinct values: numbering never stops.
        Ok(Redactor::new(mode, key).with_max_values(usize::MAX))
    }
}

/// The categories whose values `--redact` replaces: injection and obfuscation findings are
/// instructions and tricks, reported but not values to hide.
const REDACTED: [FindingCategory; 4] = [
    FindingCategory::Pii,
    FindingCategory::Secret,
    FindingCategory::Custom,
    FindingCategory::Leak,
];

/// `text` with the values of findings at or above `fail_on` replaced.
fn redacted(r: &mut Redactor, text: &str, scanned: &Scanned, fail_on: Severity) -> String {
    let chosen: Vec<Finding> = scanned
        .findings
        .iter()
        .filter(|f| f.severity >= fail_on)
        .cloned()
        .collect();
    r.redact(text, &chosen, &REDACTED)
}

/// Options shared by `scan` and `eval`: which detectors, and when a text counts as flagged.
#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    /// Categories to run, comma-separated: prompt_injection, pii, secret, obfuscation, custom,
    /// leak (default: all).
    #[arg(long, value_delimiter = ',')]
    pub detectors: Vec<String>,
    /// A text is flagged when a finding is at or above this severity: low, medium, high, critical.
    #[arg(long, default_value = "medium")]
    pub fail_on: String,
    /// A prompt-injection classifier trained with `ztai classifier train`, instead of the
    /// built-in one.
    #[arg(long, env = "ZTAI_INJECTION_MODEL")]
    pub model: Option<PathBuf>,
    /// A custom dictionary, NAME=FILE[:SEVERITY] (repeatable): FILE lists one term per line
    /// (`#` comments); a term found as a whole word, in any case or obfuscation, is a `custom`
    /// finding of type NAME at SEVERITY (default high).
    #[arg(long = "dictionary", value_name = "NAME=FILE[:SEVERITY]")]
    pub dictionaries: Vec<String>,
    #[command(flatten)]
    pub semantic: crate::encoder_cmd::SemanticArgs,
}

/// Loads one `NAME=FILE[:SEVERITY]` dictionary argument.
fn load_dictionary(arg: &str) -> anyhow::Result<Dictionary> {
    let (name, rest) = arg.split_once('=').with_context(|| {
        format!("--dictionary `{arg}` is not NAME=FILE[:SEVERITY] (for example codenames=terms.txt:high)")
    })?;
    let (path, severity) = match rest.rsplit_once(':') {
        Some((p, sev)) if Severity::parse(sev).is_some() => (p, sev),
        _ => (rest, "high"),
    };
    let severity = Severity::parse(severity).unwrap_or(Severity::High);
    let list = std::fs::read_to_string(path)
        .with_context(|| format!("reading dictionary `{name}` from {path}"))?;
    Dictionary::parse(name, severity, &list)
        .with_context(|| format!("dictionary `{name}` ({path})"))
}

impl EngineArgs {
    pub fn categories(&self) -> anyhow::Result<Vec<FindingCategory>> {
        if self.detectors.is_empty() {
            return Ok(FindingCategory::ALL.to_vec());
        }
        self.detectors
            .iter()
            .map(|d| {
                FindingCategory::parse(d.trim()).with_context(|| {
                    format!(
                        "unknown detector category `{d}`; use one or more of prompt_injection, pii, secret, obfuscation, custom, leak"
                    )
                })
            })
            .collect()
    }

    pub fn fail_on(&self) -> anyhow::Result<Severity> {
        Severity::parse(&self.fail_on).with_context(|| {
            format!(
                "--fail-on `{}` is not a severity; use low, medium, high or critical",
                self.fail_on
            )
        })
    }

    /// The inspector restricted to the chosen categories.
    pub fn engine(&self) -> anyhow::Result<Engine> {
        let categories = self.categories()?;
        let mut inspector =
            Inspector::with_default_rules().context("building the inspection engine")?;
        if let Some(path) = &self.model {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            let model = InjectionModel::from_bytes(&bytes)
                .with_context(|| format!("loading the classifier {}", path.display()))?;
            inspector = inspector.with_classifier(ClassifierTier {
                model,
                max_bytes: ztai_inspect::DEFAULT_CLASSIFIER_MAX_BYTES,
            });
        }
        if !self.dictionaries.is_empty() {
            let dictionaries = self
                .dictionaries
                .iter()
                .map(|a| load_dictionary(a))
                .collect::<anyhow::Result<Vec<_>>>()?;
            inspector = inspector.with_detector(Box::new(
                CustomDictionaries::new(&dictionaries)
                    .context("building the custom dictionaries")?,
            ));
        }
        if categories.contains(&FindingCategory::PromptInjection)
            && let Some(tier) = self.semantic.tier()?
        {
            inspector = inspector.with_semantic(tier);
        }
        inspector.retain_categories(&categories);
        Ok(Engine {
            inspector,
            categories,
            fail_on: self.fail_on()?,
        })
    }
}

/// An inspector and how its findings are judged.
#[derive(Debug)]
pub struct Engine {
    pub inspector: Inspector,
    pub categories: Vec<FindingCategory>,
    pub fail_on: Severity,
}

/// One scanned text.
#[derive(Debug)]
pub struct Scanned {
    pub findings: Vec<Finding>,
    pub flagged: bool,
}

impl Engine {
    pub fn scan(&self, text: &str, channel: Channel) -> anyhow::Result<Scanned> {
        let mut findings = self.inspector.inspect(text, channel)?;
        findings.retain(|f| self.categories.contains(&f.category));
        let flagged = findings.iter().any(|f| f.severity >= self.fail_on);
        Ok(Scanned { findings, flagged })
    }
}

/// Converts byte offsets on char boundaries to code point offsets, for sorted or unsorted
/// queries.
pub struct CodePoints<'a> {
    text: &'a str,
}

impl<'a> CodePoints<'a> {
    pub fn new(text: &'a str) -> Self {
        CodePoints { text }
    }

    pub fn at(&self, byte: usize) -> usize {
        let mut b = byte.min(self.text.len());
        while b > 0 && !self.text.is_char_boundary(b) {
            b -= 1;
        }
        self.text.get(..b).map_or(0, |s| s.chars().count())
    }
}

/// A finding as pipelines see it.
pub fn finding_json(f: &Finding, cp: &CodePoints<'_>) -> Value {
    json!({
        "type": f.kind,
        "category": f.category.as_str(),
        "severity": f.severity.as_str(),
        "score": (f64::from(f.confidence) * 1000.0).round() / 1000.0,
        "start": cp.at(f.span.start),
        "end": cp.at(f.span.end),
        "detector": f.detector,
    })
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files to scan (default: stdin; `-` is stdin too).
    pub files: Vec<PathBuf>,
    /// Read JSON Lines with a `text` field and write one result object per line, in order.
    #[arg(long)]
    pub jsonl: bool,
    /// Print findings as JSON (one object per input).
    #[arg(long)]
    pub json: bool,
    /// Where the text came from: user, untrusted (retrieved documents, tool results) or output.
    #[arg(long, value_enum, default_value = "user")]
    pub source: Source,
    /// Also write the text with the values of findings at or above --fail-on replaced (personal
    /// data, secrets, custom terms, leaks): the text itself on stdout (the findings go to stderr),
    /// or a `redacted` field with --json and --jsonl.
    #[arg(long, value_enum, value_name = "MODE")]
    pub redact: Option<RedactMode>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

fn read_input(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("reading stdin")?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Runs `ztai scan`: exit 0 clean, 1 flagged, 2 error.
pub fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let engine = args.engine.engine()?;
    let channel = args.source.channel();
    let files = if args.files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.files.clone()
    };
    let mut redactor = args.redact.map(RedactMode::redactor).transpose()?;
    if args.jsonl {
        return scan_jsonl(&engine, channel, &files, redactor.as_mut());
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    // With --redact and no --json, stdout carries the redacted text and the report goes to
    // stderr, so `ztai scan --redact mask < in > out` is a filter.
    let stderr = std::io::stderr();
    let mut report: Box<dyn Write> = if redactor.is_some() && !args.json {
        Box::new(stderr.lock())
    } else {
        Box::new(std::io::stdout())
    };
    let mut flagged = false;
    let mut errors = false;
    for path in &files {
        let name = if path.as_os_str() == "-" {
            "<stdin>".to_string()
        } else {
            path.display().to_string()
        };
        let result = read_input(path).and_then(|bytes| {
            let text = String::from_utf8(bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{name} is not UTF-8 text (invalid byte at offset {}); convert it to UTF-8 first",
                    e.utf8_error().valid_up_to()
                )
            })?;
            let scanned = engine.scan(&text, channel)?;
            Ok((text, scanned))
        });
        let (text, scanned) = match result {
            Ok(r) => r,
            Err(e) => {
                errors = true;
                if args.json {
                    writeln!(
                        out,
                        "{}",
                        json!({"path": name, "verdict": "error", "error": format!("{e:#}")})
                    )?;
                } else {
                    eprintln!("error: {e:#}");
                }
                continue;
            }
        };
        flagged |= scanned.flagged;
        let cp = CodePoints::new(&text);
        let redacted_text = redactor
            .as_mut()
            .map(|r| redacted(r, &text, &scanned, engine.fail_on));
        if args.json {
            let findings: Vec<Value> = scanned
                .findings
                .iter()
                .map(|f| finding_json(f, &cp))
                .collect();
            let mut v = json!({"path": name, "verdict": verdict(&scanned), "findings": findings});
            if let (Some(r), Some(o)) = (redacted_text, v.as_object_mut()) {
                o.insert("redacted".into(), Value::String(r));
            }
            writeln!(out, "{v}")?;
            continue;
        }
        if let Some(r) = &redacted_text {
            out.write_all(r.as_bytes())?;
        }
        if scanned.findings.is_empty() {
            writeln!(report, "{name}: clean")?;
            continue;
        }
        writeln!(
            report,
            "{name}: {} ({} finding{})",
            verdict(&scanned),
            scanned.findings.len(),
            if scanned.findings.len() == 1 { "" } else { "s" }
        )?;
        for f in &scanned.findings {
            // Never the matched value: a scan log must not become a copy of the secrets.
            writeln!(
                report,
                "  {:>6}-{:<6} {:8} {:16} {:28} score {:.2}  ({})",
                cp.at(f.span.start),
                cp.at(f.span.end),
                f.severity.as_str(),
                f.category.as_str(),
                f.kind,
                f.confidence,
                f.detector
            )?;
        }
    }
    Ok(exit(errors, flagged))
}

fn verdict(s: &Scanned) -> &'static str {
    if s.flagged { "flagged" } else { "clean" }
}

fn exit(errors: bool, flagged: bool) -> ExitCode {
    if errors {
        ExitCode::from(2)
    } else if flagged {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The `text` of one JSON Lines row.
pub fn row_text(line: &str) -> anyhow::Result<(Value, String)> {
    let v: Value = serde_json::from_str(line).context("the line is not valid JSON")?;
    let Some(text) = v.get("text").and_then(Value::as_str) else {
        bail!("the line has no string field `text`");
    };
    let text = text.to_string();
    Ok((v, text))
}

fn scan_jsonl(
    engine: &Engine,
    channel: Channel,
    files: &[PathBuf],
    mut redactor: Option<&mut Redactor>,
) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut flagged = false;
    let mut errors = false;
    for path in files {
        let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
            Box::new(std::io::BufReader::new(std::io::stdin()))
        } else {
            Box::new(std::io::BufReader::new(
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
            ))
        };
        for (n, line) in reader.split(b'\n').enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            let result = std::str::from_utf8(&line)
                .map_err(|_| anyhow::anyhow!("the line is not UTF-8"))
                .and_then(|l| row_text(l.trim_end_matches('\r')))
                .and_then(|(_, text)| {
                    let s = engine.scan(&text, channel)?;
                    Ok((text, s))
                });
            match result {
                Ok((text, scanned)) => {
                    flagged |= scanned.flagged;
                    let cp = CodePoints::new(&text);
                    let findings: Vec<Value> = scanned
                        .findings
                        .iter()
                        .map(|f| finding_json(f, &cp))
                        .collect();
                    let mut v = json!({"verdict": verdict(&scanned), "findings": findings});
                    if let (Some(r), Some(o)) = (redactor.as_deref_mut(), v.as_object_mut()) {
                        let text = redacted(r, &text, &scanned, engine.fail_on);
                        o.insert("redacted".into(), Value::String(text));
                    }
                    writeln!(out, "{v}")?;
                }
                Err(e) => {
                    // Keep the output aligned with the input: one object per line, always.
                    errors = true;
                    writeln!(
                        out,
                        "{}",
                        json!({"verdict": "error", "findings": [], "error": format!("{}:{}: {e:#}", path.display(), n + 1)})
                    )?;
                }
            }
        }
    }
    out.flush()?;
    Ok(exit(errors, flagged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_points_count_characters_not_bytes() {
        let cp = CodePoints::new("né 😀x");
        assert_eq!(cp.at(0), 0);
        assert_eq!(cp.at(3), 2);
        assert_eq!(cp.at(8), 4);
        assert_eq!(cp.at(9), 5);
        assert_eq!(cp.at(100), 5);
        assert_eq!(cp.at(2), 1, "inside a char counts from its start");
    }

    #[test]
    fn rows_need_a_string_text() {
        assert_eq!(row_text(r#"{"text":"hi","x":1}"#).unwrap().1, "hi");
        assert!(row_text(r#"{"text":1}"#).is_err());
        assert!(row_text("not json").is_err());
        assert!(row_text("").is_err());
    }
}
