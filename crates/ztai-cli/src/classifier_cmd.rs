//! `ztai classifier`: train the prompt-injection classifier and measure how it generalises.
//!
//! `train` writes the weights file the engine embeds (`crates/ztai-inspect/data/`);
//! `scripts/train-classifier` is the one command that regenerates the synthetic data and runs
//! it. `cross-validate` trains without one `source` at a time and scores that source, which is
//! the honest estimate of quality on material the model has never seen.

use crate::scan_cmd::row_text;
use anyhow::Context;
use clap::Subcommand;
use serde_json::Value;
use std::io::BufRead;
use std::path::PathBuf;
use ztai_inspect::classifier::{Example, InjectionModel, TrainOptions, train};

#[derive(Debug, Subcommand)]
pub enum ClassifierCommand {
    /// Train on labelled JSON Lines (`text`, `label` injection|benign) and write the model.
    Train {
        /// Training files; rows labelled other than injection/benign are skipped.
        #[arg(long = "data", required = true, num_args = 1..)]
        data: Vec<PathBuf>,
        /// Where to write the model.
        #[arg(long)]
        out: PathBuf,
        /// log2 of the number of weights.
        #[arg(long, default_value_t = 18)]
        bits: u32,
        #[arg(long, default_value_t = 12)]
        epochs: usize,
        #[arg(long, default_value_t = 0x5EED)]
        seed: u64,
        /// Leave out the rows of this fold (FNV-1a of the row `id`, or `source` with
        /// `--fold-by source`, modulo 5), to score them afterwards with `ztai eval --fold K`.
        #[arg(long)]
        exclude_fold: Option<u64>,
        /// What folds are drawn from (see `ztai eval --fold-by`).
        #[arg(long, value_enum, default_value_t = crate::eval_cmd::FoldBy::Id)]
        fold_by: crate::eval_cmd::FoldBy,
        /// The threshold is the best-F1 one whose out-of-fold false-positive rate on the real
        /// (non-synthetic) rows stays within this. The folds are by source, so this is the rate
        /// on material from sources the model did not see; 2% measured 1.6–2.7% on the
        /// development corpora's held-out sources (docs/inspection.md).
        #[arg(long, default_value_t = 0.02)]
        max_false_positive_rate: f32,
        /// Findings are `high` (refused by the sample policies) from the lowest score whose
        /// out-of-source precision reaches this, on at least 20 attacks; no such score, no
        /// `high`.
        #[arg(long, default_value_t = 0.995)]
        high_precision: f32,
        /// Leave out rows whose `source` starts with this (repeatable): for corpora whose labels
        /// depend on context the text does not carry.
        #[arg(long)]
        exclude_source: Vec<String>,
    },
    /// Leave-one-source-out: for each `source`, train on the rest and score it.
    CrossValidate {
        #[arg(long = "data", required = true, num_args = 1..)]
        data: Vec<PathBuf>,
        #[arg(long, default_value_t = 18)]
        bits: u32,
        #[arg(long, default_value_t = 12)]
        epochs: usize,
    },
}

fn load(
    paths: &[PathBuf],
    exclude_fold: Option<(u64, crate::eval_cmd::FoldBy)>,
) -> anyhow::Result<Vec<(String, Example)>> {
    let mut out = Vec::new();
    for path in paths {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("reading {}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let (row, text) =
                row_text(&line).with_context(|| format!("{}:{}", path.display(), n + 1))?;
            let injection = match row.get("label").and_then(Value::as_str) {
                Some("injection") => true,
                Some("benign") => false,
                _ => continue,
            };
            if exclude_fold.is_some_and(|(k, by)| by.fold(&row) == k) {
                continue;
            }
            let source = row
                .get("source")
                .and_then(Value::as_str)
                .unwrap_or("(none)")
                .to_string();
            let calibrate = !source.starts_with("ztai-synthetic");
            // Calibration folds by source: thresholds are then chosen on scores of sources the
            // model did not see, as it will meet them.
            // The quotient, not the remainder: calibration folds must not line up with the
            // evaluation folds (FNV-1a modulo 5), or one calibration fold would be empty.
            let group = crate::eval_cmd::fnv1a(&source) / crate::eval_cmd::FOLDS;
            out.push((
                source,
                Example {
                    text,
                    injection,
                    calibrate,
                    group,
                },
            ));
        }
    }
    anyhow::ensure!(
        out.iter().any(|e| e.1.injection) && out.iter().any(|e| !e.1.injection),
        "the training data needs rows labelled both `injection` and `benign`"
    );
    Ok(out)
}

#[allow(clippy::print_stdout, reason = "the command's report is its output")]
pub fn run(command: ClassifierCommand) -> anyhow::Result<()> {
    match command {
        ClassifierCommand::Train {
            data,
            out,
            bits,
            epochs,
            seed,
            exclude_fold,
            fold_by,
            max_false_positive_rate,
            high_precision,
            exclude_source,
        } => {
            let mut rows = load(&data, exclude_fold.map(|k| (k, fold_by)))?;
            rows.retain(|(source, _)| {
                !exclude_source
                    .iter()
                    .any(|x| source.starts_with(x.as_str()))
            });
            let examples: Vec<Example> = rows.into_iter().map(|r| r.1).collect();
            let o = TrainOptions {
                bits,
                epochs,
                seed,
                max_false_positive_rate,
                high_precision,
                ..TrainOptions::default()
            };
            let (model, report) = train(&examples, &o);
            let bytes = model.to_bytes();
            // What is written must load as the engine will load it.
            InjectionModel::from_bytes(&bytes).context("the trained model does not load back")?;
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "trained on {} texts ({} injections); wrote {} ({} bytes)",
                report.examples,
                report.positives,
                out.display(),
                bytes.len()
            );
            if let Some(f) = report.out_of_fold {
                println!(
                    "threshold {:.3} (out-of-source folds: precision {:.3}, recall {:.3}, false-positive rate {:.3})",
                    f.threshold, f.precision, f.recall, f.false_positive_rate
                );
                match f.high {
                    Some(h) => println!(
                        "high from {:.3} (out-of-source folds: precision {:.3}, recall {:.3})",
                        h.threshold, h.precision, h.recall
                    ),
                    None => println!(
                        "no score reached the precision `high` needs: the classifier's findings stay medium"
                    ),
                }
                let steps = model.calibration().steps();
                println!(
                    "calibration: {} steps, {}",
                    steps.len(),
                    [0.5f32, 0.8, 0.9, 0.95, 0.99]
                        .iter()
                        .map(|&s| format!("{s} -> {:.3}", model.calibration().apply(s)))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            Ok(())
        }
        ClassifierCommand::CrossValidate { data, bits, epochs } => {
            let rows = load(&data, None)?;
            let mut sources: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            sources.sort_unstable();
            sources.dedup();
            println!(
                "{:<55} {:>6} {:>9} {:>10}",
                "held-out source", "rows", "flagged", "threshold"
            );
            for held in sources {
                let train_set: Vec<Example> = rows
                    .iter()
                    .filter(|r| r.0 != held)
                    .map(|r| r.1.clone())
                    .collect();
                let o = TrainOptions {
                    bits,
                    epochs,
                    ..TrainOptions::default()
                };
                let (model, _) = train(&train_set, &o);
                let test: Vec<&Example> =
                    rows.iter().filter(|r| r.0 == held).map(|r| &r.1).collect();
                let flagged = test
                    .iter()
                    .filter(|e| {
                        model
                            .score(&e.text)
                            .is_some_and(|s| s.probability >= model.threshold())
                    })
                    .count();
                let label = if test.iter().all(|e| e.injection) {
                    "recall"
                } else if test.iter().all(|e| !e.injection) {
                    "false-positive rate"
                } else {
                    "flagged share"
                };
                println!(
                    "{held:<55} {:>6} {:>8.1}% {:>10.2}  ({label})",
                    test.len(),
                    100.0 * flagged as f64 / test.len().max(1) as f64,
                    model.threshold()
                );
            }
            Ok(())
        }
    }
}
