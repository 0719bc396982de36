//! `ztai eval`: detection quality on labelled JSON Lines (the formats of `shared/corpora`).
//!
//! A row with `label` injection/benign is judged on prompt-injection and obfuscation findings, a
//! row with `label` secret/none on secret findings, and a row with `entities` span by span: a
//! labelled entity counts as found when a finding of the matching type overlaps it, and a finding
//! counts as correct when it overlaps a labelled entity of its type. Figures are printed per file,
//! per `source` and, for personal data, per entity type.

use crate::scan_cmd::{CodePoints, Engine, EngineArgs, Source, row_text};
use anyhow::Context;
use clap::Args;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use ztai_core::{Channel, FindingCategory};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Labelled JSON Lines files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The channel texts came from (default: untrusted for files whose name holds `indirect`,
    /// else user).
    #[arg(long, value_enum)]
    pub source: Option<Source>,
    /// Score only the rows of this fold (FNV-1a of the row `id` modulo 5): the fold that
    /// `ztai classifier train --exclude-fold` kept out of training.
    #[arg(long)]
    pub fold: Option<u64>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Number of folds rows are split into.
pub const FOLDS: u64 = 5;

/// The fold of a row id: FNV-1a (64-bit) modulo `FOLDS` (the same function as
/// `scripts/synth-injection-data.py`).
pub fn fold_of(id: &str) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01B3);
    }
    h % FOLDS
}

/// Confusion counts.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    tp: u64,
    fp: u64,
    fn_: u64,
    tn: u64,
}

impl Counts {
    fn add(&mut self, truth: bool, predicted: bool) {
        match (truth, predicted) {
            (true, true) => self.tp += 1,
            (false, true) => self.fp += 1,
            (true, false) => self.fn_ += 1,
            (false, false) => self.tn += 1,
        }
    }

    fn ratio(a: u64, b: u64) -> Option<f64> {
        (b > 0).then(|| a as f64 / b as f64)
    }

    fn json(&self) -> Value {
        let precision = Self::ratio(self.tp, self.tp + self.fp);
        let recall = Self::ratio(self.tp, self.tp + self.fn_);
        let f1 = match (precision, recall) {
            (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
            (Some(_), Some(_)) => Some(0.0),
            _ => None,
        };
        let round = |v: Option<f64>| v.map(|v| (v * 10000.0).round() / 10000.0);
        json!({
            "tp": self.tp, "fp": self.fp, "fn": self.fn_, "tn": self.tn,
            "precision": round(precision), "recall": round(recall), "f1": round(f1),
            "false_positive_rate": round(Self::ratio(self.fp, self.fp + self.tn)),
        })
    }
}

/// The corpus entity type a PII finding kind stands for.
fn entity_type(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "email" => "EMAIL_ADDRESS",
        "credit_card" => "CREDIT_CARD",
        "phone_number" => "PHONE_NUMBER",
        "iban" => "IBAN_CODE",
        "us_ssn" => "US_SSN",
        "ip_address" => "IP_ADDRESS",
        "person" => "PERSON",
        "street_address" => "STREET_ADDRESS",
        "date_of_birth" | "date" => "DATE_TIME",
        "us_driver_license" => "US_DRIVER_LICENSE",
        "url" | "domain_name" | "personal_url" => "DOMAIN_NAME",
        _ => return None,
    })
}

#[derive(Debug, Default)]
struct FileReport {
    rows: u64,
    errors: u64,
    overall: Counts,
    by_source: BTreeMap<String, Counts>,
    by_entity: BTreeMap<String, Counts>,
    seconds: f64,
    bytes: u64,
}

fn evaluate_file(
    engine: &Engine,
    path: &PathBuf,
    channel: Channel,
    only_fold: Option<u64>,
) -> anyhow::Result<FileReport> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut r = FileReport::default();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let (row, text) =
            row_text(&line).with_context(|| format!("{}:{}", path.display(), n + 1))?;
        if let Some(k) = only_fold
            && fold_of(row.get("id").and_then(Value::as_str).unwrap_or_default()) != k
        {
            continue;
        }
        let started = Instant::now();
        let scanned = match engine.scan(&text, channel) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{}:{}: {e:#}", path.display(), n + 1);
                r.errors += 1;
                continue;
            }
        };
        r.seconds += started.elapsed().as_secs_f64();
        r.bytes += text.len() as u64;
        r.rows += 1;
        let source = row
            .get("source")
            .and_then(Value::as_str)
            .unwrap_or("(none)")
            .to_string();
        let flagged_in = |cats: &[FindingCategory]| {
            scanned
                .findings
                .iter()
                .any(|f| cats.contains(&f.category) && f.severity >= engine.fail_on)
        };
        if let Some(entities) = row.get("entities").and_then(Value::as_array) {
            let cp = CodePoints::new(&text);
            let predicted: Vec<(&'static str, usize, usize)> = scanned
                .findings
                .iter()
                .filter(|f| f.category == FindingCategory::Pii)
                .filter_map(|f| {
                    Some((
                        entity_type(&f.kind)?,
                        cp.at(f.span.start),
                        cp.at(f.span.end),
                    ))
                })
                .collect();
            let gold: Vec<(String, u64, u64)> = entities
                .iter()
                .filter_map(|e| {
                    Some((
                        e.get("type")?.as_str()?.to_string(),
                        e.get("start")?.as_u64()?,
                        e.get("end")?.as_u64()?,
                    ))
                })
                .collect();
            let overlaps =
                |a: (u64, u64), b: (usize, usize)| a.0 < b.1 as u64 && (b.0 as u64) < a.1;
            for (t, s, e) in &gold {
                let found = predicted
                    .iter()
                    .any(|p| p.0 == t && overlaps((*s, *e), (p.1, p.2)));
                r.by_entity.entry(t.clone()).or_default().add(true, found);
            }
            for p in &predicted {
                let right = gold
                    .iter()
                    .any(|g| g.0 == p.0 && overlaps((g.1, g.2), (p.1, p.2)));
                if !right {
                    r.by_entity.entry(p.0.to_string()).or_default().fp += 1;
                }
            }
            let truth = !gold.is_empty();
            let predicted_any = !predicted.is_empty();
            r.overall.add(truth, predicted_any);
            r.by_source
                .entry(source)
                .or_default()
                .add(truth, predicted_any);
            continue;
        }
        let label = row.get("label").and_then(Value::as_str).unwrap_or_default();
        let (truth, predicted) = match label {
            "injection" | "benign" => (
                label == "injection",
                flagged_in(&[
                    FindingCategory::PromptInjection,
                    FindingCategory::Obfuscation,
                ]),
            ),
            "secret" | "none" => (label == "secret", flagged_in(&[FindingCategory::Secret])),
            other => {
                eprintln!(
                    "{}:{}: label `{other}` is not one of injection, benign, secret, none (and no `entities`); row skipped",
                    path.display(),
                    n + 1
                );
                r.errors += 1;
                continue;
            }
        };
        r.overall.add(truth, predicted);
        r.by_source.entry(source).or_default().add(truth, predicted);
    }
    Ok(r)
}

/// Runs `ztai eval`; exit 2 when a file cannot be read.
#[allow(clippy::print_stdout, reason = "the command's report is its output")]
pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let engine = args.engine.engine()?;
    let mut reports = Vec::new();
    for path in &args.files {
        let channel = match args.source {
            Some(s) => s.channel(),
            None if path.to_string_lossy().contains("indirect") => Channel::Untrusted,
            None => Channel::Input,
        };
        let r = evaluate_file(&engine, path, channel, args.fold)?;
        reports.push((path.display().to_string(), channel, r));
    }
    let out: Vec<Value> = reports
        .iter()
        .map(|(path, channel, r)| {
            json!({
                "file": path,
                "channel": channel.as_str(),
                "rows": r.rows,
                "errors": r.errors,
                "overall": r.overall.json(),
                "by_source": r.by_source.iter().map(|(k, c)| (k.clone(), c.json())).collect::<serde_json::Map<_, _>>(),
                "by_entity": r.by_entity.iter().map(|(k, c)| (k.clone(), c.json())).collect::<serde_json::Map<_, _>>(),
                "mean_us_per_text": if r.rows > 0 { (r.seconds * 1e6 / r.rows as f64).round() } else { 0.0 },
                "mib_per_second": if r.seconds > 0.0 { (r.bytes as f64 / r.seconds / 1048576.0 * 10.0).round() / 10.0 } else { 0.0 },
            })
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for f in &out {
            println!(
                "{} ({} rows, channel {}, {} µs/text)",
                f["file"].as_str().unwrap_or_default(),
                f["rows"],
                f["channel"].as_str().unwrap_or_default(),
                f["mean_us_per_text"]
            );
            print_row("  overall", &f["overall"]);
            if let Some(m) = f["by_source"].as_object() {
                for (k, v) in m {
                    print_row(&format!("  source {k}"), v);
                }
            }
            if let Some(m) = f["by_entity"].as_object() {
                for (k, v) in m {
                    print_row(&format!("  entity {k}"), v);
                }
            }
        }
    }
    let errors = reports.iter().any(|r| r.2.errors > 0);
    Ok(if errors {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

#[allow(clippy::print_stdout, reason = "the command's report is its output")]
fn print_row(name: &str, v: &Value) {
    let f = |k: &str| {
        v.get(k)
            .and_then(Value::as_f64)
            .map_or("   -  ".to_string(), |x| format!("{x:.3}"))
    };
    println!(
        "{name:<60} P {}  R {}  F1 {}  FPR {}  (tp {} fp {} fn {} tn {})",
        f("precision"),
        f("recall"),
        f("f1"),
        f("false_positive_rate"),
        v["tp"],
        v["fp"],
        v["fn"],
        v["tn"]
    );
}
