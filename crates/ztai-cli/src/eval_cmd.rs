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
    /// Score only the rows of this fold (FNV-1a of the row `id`, or of its `source` with
    /// `--fold-by source`, modulo 5): the fold that `scripts/train-classifier --holdout K` kept
    /// out of training.
    #[arg(long)]
    pub fold: Option<u64>,
    /// What rows are put in folds by: `source` keeps every row of a source in one fold, so a
    /// fold's figures are on material the model never saw (the honest estimate for other
    /// public material); `id` spreads each source over all folds (in-source figures).
    #[arg(long, value_enum, default_value_t = FoldBy::Id)]
    pub fold_by: FoldBy,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Number of folds rows are split into.
pub const FOLDS: u64 = 5;

/// What a row's fold is drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FoldBy {
    Id,
    Source,
}

impl FoldBy {
    /// The fold of a row.
    pub fn fold(self, row: &Value) -> u64 {
        let key = match self {
            FoldBy::Id => "id",
            FoldBy::Source => "source",
        };
        fold_of(row.get(key).and_then(Value::as_str).unwrap_or_default())
    }
}

/// FNV-1a (64-bit): the hash folds are drawn from (the same function as
/// `scripts/synth-injection-data.py`).
pub fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01B3);
    }
    h
}

/// The fold of a row id (or source): FNV-1a modulo `FOLDS`.
pub fn fold_of(id: &str) -> u64 {
    fnv1a(id) % FOLDS
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
    by_kind: BTreeMap<String, Counts>,
    by_entity: BTreeMap<String, Counts>,
    /// Injection/benign rows by the confidence of the strongest flagging finding (`None`: not
    /// flagged): (injections, benign).
    reliability: BTreeMap<Option<u8>, (u64, u64)>,
    seconds: f64,
    bytes: u64,
}

fn evaluate_file(
    engine: &Engine,
    path: &PathBuf,
    channel: Channel,
    only_fold: Option<(u64, FoldBy)>,
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
        if let Some((k, by)) = only_fold
            && by.fold(&row) != k
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
        if let Some(kind) = row.get("kind").and_then(Value::as_str) {
            r.by_kind
                .entry(kind.to_string())
                .or_default()
                .add(truth, predicted);
        }
        if matches!(label, "injection" | "benign") {
            let confidence = scanned
                .findings
                .iter()
                .filter(|f| {
                    matches!(
                        f.category,
                        FindingCategory::PromptInjection | FindingCategory::Obfuscation
                    ) && f.severity >= engine.fail_on
                })
                .map(|f| f.confidence)
                .fold(None, |m: Option<f32>, c| Some(m.map_or(c, |m| m.max(c))));
            // Tenths; a confidence of exactly 1 belongs to the top bin.
            let bin = confidence.map(|c| ((c.clamp(0.0, 1.0) * 10.0) as u8).min(9));
            let e = r.reliability.entry(bin).or_default();
            if truth {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
    }
    Ok(r)
}

/// The reliability table: per confidence bin, the rows in it and the share of injections had
/// attacks and ordinary texts been equally common (each class's share of its own total), which
/// is what the classifier's calibrated probability estimates.
fn reliability_json(r: &FileReport) -> Value {
    let injections: u64 = r.reliability.values().map(|v| v.0).sum();
    let benign: u64 = r.reliability.values().map(|v| v.1).sum();
    r.reliability
        .iter()
        .map(|(bin, (i, b))| {
            let pi = *i as f64 / injections.max(1) as f64;
            let pb = *b as f64 / benign.max(1) as f64;
            let share = (pi + pb > 0.0).then(|| ((pi / (pi + pb)) * 1000.0).round() / 1000.0);
            json!({
                "confidence": bin.map_or("not flagged".to_string(), |b| format!("{:.1}-{:.1}", f64::from(b) / 10.0, f64::from(b + 1) / 10.0)),
                "injections": i, "benign": b, "balanced_injection_share": share,
            })
        })
        .collect()
}

/// The semantic tier's counters, when the engine has the tier.
fn semantic_stats(engine: &Engine) -> Option<ztai_inspect::SemanticStats> {
    engine.inspector.semantic().map(|t| t.stats())
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
        let before = semantic_stats(&engine);
        let r = evaluate_file(&engine, path, channel, args.fold.map(|k| (k, args.fold_by)))?;
        let after = semantic_stats(&engine);
        let semantic = after.map(|a| {
            let b = before.unwrap_or_default();
            let (considered, reached) = (a.considered - b.considered, a.reached - b.reached);
            json!({
                "considered": considered,
                "reached": reached,
                "flagged": a.flagged - b.flagged,
                "share_reaching_encoder": if considered > 0 { reached as f64 / considered as f64 } else { 0.0 },
            })
        });
        reports.push((path.display().to_string(), channel, r, semantic));
    }
    let out: Vec<Value> = reports
        .iter()
        .map(|(path, channel, r, semantic)| {
            json!({
                "semantic": semantic,
                "file": path,
                "channel": channel.as_str(),
                "rows": r.rows,
                "errors": r.errors,
                "overall": r.overall.json(),
                "by_source": r.by_source.iter().map(|(k, c)| (k.clone(), c.json())).collect::<serde_json::Map<_, _>>(),
                "by_kind": r.by_kind.iter().map(|(k, c)| (k.clone(), c.json())).collect::<serde_json::Map<_, _>>(),
                "by_entity": r.by_entity.iter().map(|(k, c)| (k.clone(), c.json())).collect::<serde_json::Map<_, _>>(),
                "reliability": reliability_json(r),
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
            if let Some(s) = f["semantic"].as_object() {
                println!(
                    "  semantic tier: {} of {} texts reached the encoder ({:.1}%), {} flagged by it",
                    s["reached"],
                    s["considered"],
                    s["share_reaching_encoder"].as_f64().unwrap_or(0.0) * 100.0,
                    s["flagged"]
                );
            }
            if let Some(m) = f["by_source"].as_object() {
                for (k, v) in m {
                    print_row(&format!("  source {k}"), v);
                }
            }
            if let Some(m) = f["by_kind"].as_object() {
                for (k, v) in m {
                    print_row(&format!("  kind {k}"), v);
                }
            }
            if let Some(m) = f["by_entity"].as_object() {
                for (k, v) in m {
                    print_row(&format!("  entity {k}"), v);
                }
            }
            if let Some(rows) = f["reliability"].as_array().filter(|r| !r.is_empty()) {
                println!("  reliability (confidence of the flagging finding):");
                for row in rows {
                    println!(
                        "    {:<12} injections {:>5}  benign {:>5}  balanced injection share {}",
                        row["confidence"].as_str().unwrap_or_default(),
                        row["injections"],
                        row["benign"],
                        row["balanced_injection_share"]
                    );
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
