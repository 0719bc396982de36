//! `ztai model`: the model supply chain from the command line. `scan` examines model files for
//! code that would run when they are loaded (pickles and everything that wraps them) and for
//! headers that lie; it walks directories, scans files in parallel, and gives a pipeline an exit
//! code: 0 clean, 1 unsafe, 2 when something could not be examined or read.

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use ztai_supply::scan::{FileReport, ScanOptions, Verdict, scan_blob};

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Scan model files for code that runs on load: pickles (all protocols, emulated with an
    /// allowlist of safe imports, never executed), PyTorch zip and legacy files, NumPy
    /// .npy/.npz object arrays, joblib dumps, zip/7z/tar/gzip/bzip2 archives (recursively), and
    /// header checks for safetensors, GGUF (incl. chat-template injection) and ONNX (external
    /// data outside the model). Files are recognised by their bytes, not their names.
    ///
    /// Exit codes: 0 all clean; 1 something unsafe was found; 2 something could not be
    /// examined (encrypted, unsupported, over a limit) or read.
    ///
    /// Examples:
    ///   ztai model scan ./my-model/
    ///   ztai model scan --json pytorch_model.bin > report.json
    ///   ztai model scan --allow sklearn.linear_model._logistic.LogisticRegression model.pkl
    #[command(verbatim_doc_comment)]
    Scan(ScanArgs),
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files or directories (walked recursively).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// One JSON document on stdout: every file's verdict, findings and imports.
    #[arg(long)]
    pub json: bool,
    /// Also allow this pickle import, `module.name` or `module.*` (repeatable). Known
    /// code-execution primitives cannot be allowed.
    #[arg(long = "allow", value_name = "MODULE.NAME")]
    pub allow: Vec<String>,
    /// A file of further allowed imports, one `module.name` per line (`#` comments).
    #[arg(long, value_name = "FILE")]
    pub allowlist: Option<PathBuf>,
    /// Containers nested deeper than this are not opened (reported as not examined).
    #[arg(long, default_value_t = 8)]
    pub max_depth: usize,
    /// The most bytes one compressed member may expand to (decompression-bomb limit).
    #[arg(long, default_value_t = 2 << 30)]
    pub max_member_bytes: u64,
}

pub fn run(command: ModelCommand) -> anyhow::Result<ExitCode> {
    match command {
        ModelCommand::Scan(args) => scan(args),
    }
}

/// Every regular file under the given paths, in a stable order; unreadable paths are errors.
fn collect_files(paths: &[PathBuf], errors: &mut Vec<(PathBuf, String)>) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack: Vec<PathBuf> = paths.iter().rev().cloned().collect();
    while let Some(path) = stack.pop() {
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                errors.push((path, e.to_string()));
                continue;
            }
        };
        if meta.is_file() {
            files.push(path);
        } else if meta.is_dir() {
            // Symlinked directories are not followed, so a link loop cannot trap the walk.
            let is_link = std::fs::symlink_metadata(&path)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false);
            if is_link && !paths.contains(&path) {
                continue;
            }
            match std::fs::read_dir(&path) {
                Ok(entries) => {
                    let mut children: Vec<PathBuf> =
                        entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                    children.sort();
                    stack.extend(children.into_iter().rev());
                }
                Err(e) => errors.push((path, e.to_string())),
            }
        }
    }
    files
}

fn scan_file(path: &Path, options: &ScanOptions) -> Result<FileReport, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    Ok(scan_blob(&path.display().to_string(), &file, options))
}

#[allow(clippy::print_stdout)]
fn scan(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let mut options = ScanOptions {
        max_depth: args.max_depth,
        max_member_bytes: args.max_member_bytes,
        ..ScanOptions::default()
    };
    for entry in &args.allow {
        options.allowlist.allow(entry)?;
    }
    if let Some(file) = &args.allowlist {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read allowlist `{}`", file.display()))?;
        options
            .allowlist
            .extend_from_text(&text)
            .with_context(|| format!("in allowlist `{}`", file.display()))?;
    }
    let mut errors = Vec::new();
    let files = collect_files(&args.paths, &mut errors);

    let bar = if !args.json && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(files.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} scanning [{bar:30}] {pos}/{len} files {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    // Files are independent: scan them on every core, keeping the report order stable.
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<Option<Result<FileReport, String>>>> =
        Mutex::new(vec![None; files.len()]);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(files.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = {
                        let Ok(mut n) = next.lock() else { return };
                        let i = *n;
                        *n += 1;
                        i
                    };
                    let Some(path) = files.get(i) else { return };
                    bar.set_message(path.display().to_string());
                    let result = scan_file(path, &options);
                    if let Ok(mut all) = results.lock()
                        && let Some(slot) = all.get_mut(i)
                    {
                        *slot = Some(result);
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a scanning thread failed"))?;

    let mut reports = Vec::new();
    for (path, result) in files.iter().zip(results) {
        match result {
            Some(Ok(report)) => reports.push(report),
            Some(Err(e)) => errors.push((path.clone(), e)),
            None => errors.push((path.clone(), "not scanned".into())),
        }
    }
    let count = |v: Verdict| reports.iter().filter(|r| r.verdict == v).count();
    let (clean, unsafe_, incomplete) = (
        count(Verdict::Clean),
        count(Verdict::Unsafe),
        count(Verdict::Incomplete),
    );

    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = json!({
            "files": reports,
            "errors": errors.iter().map(|(p, e)| json!({"path": p.display().to_string(), "error": e})).collect::<Vec<_>>(),
            "summary": {"files": reports.len(), "clean": clean, "unsafe": unsafe_, "incomplete": incomplete, "errors": errors.len()},
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        for report in &reports {
            match report.verdict {
                Verdict::Clean => writeln!(out, "clean       {} ({})", report.path, report.format)?,
                Verdict::Unsafe => {
                    writeln!(out, "UNSAFE      {} ({})", report.path, report.format)?;
                    for f in &report.findings {
                        writeln!(
                            out,
                            "  {:<8} {:<19} {}  at {} offset {}",
                            f.severity.as_str(),
                            f.kind.as_str(),
                            f.detail,
                            f.location,
                            f.offset
                        )?;
                    }
                }
                Verdict::Incomplete => {
                    writeln!(out, "INCOMPLETE  {} ({})", report.path, report.format)?;
                    for why in &report.incomplete {
                        writeln!(out, "  not examined: {why}")?;
                    }
                }
            }
        }
        for (path, e) in &errors {
            writeln!(out, "ERROR       {}: {e}", path.display())?;
        }
        writeln!(
            out,
            "{} files: {clean} clean, {unsafe_} unsafe, {incomplete} not fully examined, {} unreadable",
            reports.len(),
            errors.len()
        )?;
    }
    Ok(if unsafe_ > 0 {
        ExitCode::from(1)
    } else if incomplete > 0 || !errors.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
