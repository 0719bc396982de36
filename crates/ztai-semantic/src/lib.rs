//! The semantic tier of prompt-injection detection: a small transformer encoder run in-process.
//!
//! The encoder is all-MiniLM-L6-v2 (Apache-2.0): its lower four layers and its embeddings as
//! published, its top two layers and a one-unit head fine-tuned by `scripts/train-encoder` on the
//! development corpora and our synthetic data. The published weights (87 MiB) are fetched once
//! through a registry package and pinned by digest (`weights`); the fine-tuned part (about 7 MiB,
//! half precision) ships in this crate. Sans I/O apart from reading the two files: text in, a
//! judgement out.
//!
//! Text is read in windows of `WINDOW_TOKENS` word pieces that overlap by a quarter, at most
//! `MAX_TOKENS` in all, scored as one batch; the text's score is its most suspicious window's.

mod bert;
pub mod weights;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use sha2::{Digest, Sha256};
use ztai_core::Channel;
use ztai_inspect::{Judgement, SemanticScorer};

/// The fine-tuned layers and head (`scripts/train-encoder`), with their threshold and measured
/// precision in the file's metadata.
pub const HEAD: &[u8] = include_bytes!("../data/injection-encoder.safetensors");
/// Word pieces per window, `[CLS]` and `[SEP]` included (what the head was trained on).
pub const WINDOW_TOKENS: usize = 128;
/// Word pieces of one text the encoder reads at most (the tier's cost bound).
pub const MAX_TOKENS: usize = 512;

/// Why the encoder could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum SemanticError {
    #[error("cannot read `{path}`: {source}; run `ztai encoder fetch` to download the encoder")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`{file}` has SHA-256 {found}, not the pinned {expected}; it is not the model the head was trained on: delete it and run `ztai encoder fetch`"
    )]
    Digest {
        file: String,
        found: String,
        expected: &'static str,
    },
    #[error("the encoder weights are malformed: {0}")]
    Model(#[source] candle_core::Error),
    #[error("the tokenizer is malformed or failed: {0}")]
    Tokenizer(String),
    #[error("the head's metadata lacks or garbles `{key}`; retrain with scripts/train-encoder")]
    Metadata { key: &'static str },
}

impl From<candle_core::Error> for SemanticError {
    fn from(e: candle_core::Error) -> Self {
        SemanticError::Model(e)
    }
}

/// The loaded encoder: tokenizer, network, head and operating point.
#[derive(Debug)]
pub struct Encoder {
    tokenizer: tokenizers::Tokenizer,
    bert: bert::Bert,
    head: Tensor,
    bias: f32,
    cls: u32,
    sep: u32,
    threshold: f32,
    precision: f32,
}

/// The operating point the training script wrote into the head's metadata.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OperatingPoint {
    /// The logit from which a text is flagged.
    pub threshold: f32,
    /// The out-of-source precision measured at that threshold.
    pub precision: f32,
}

/// Reads the operating point from a head file.
pub fn operating_point(head: &[u8]) -> Result<OperatingPoint, SemanticError> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(head)
        .map_err(|e| SemanticError::Model(candle_core::Error::wrap(e)))?;
    let map = meta.metadata().clone().unwrap_or_default();
    let number = |key: &'static str| -> Result<f32, SemanticError> {
        map.get(key)
            .and_then(|v| v.parse::<f32>().ok())
            .filter(|v| v.is_finite())
            .ok_or(SemanticError::Metadata { key })
    };
    Ok(OperatingPoint {
        threshold: number("threshold")?,
        precision: number("precision")?,
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Encoder {
    /// Loads the encoder from the fetched base files in `dir` (see `weights`) and `head`,
    /// checking both base files against their pinned digests.
    pub fn from_dir(dir: &Path, head: &[u8]) -> Result<Self, SemanticError> {
        let read = |name: &str, expected: &'static str| -> Result<Vec<u8>, SemanticError> {
            let path = dir.join(name);
            let bytes = std::fs::read(&path).map_err(|source| SemanticError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let found = sha256_hex(&bytes);
            if found != expected {
                return Err(SemanticError::Digest {
                    file: path.display().to_string(),
                    found,
                    expected,
                });
            }
            Ok(bytes)
        };
        let base = read(weights::MODEL_FILE, weights::MODEL_SHA256)?;
        let tokenizer = read(weights::TOKENIZER_FILE, weights::TOKENIZER_SHA256)?;
        Self::from_bytes(&base, &tokenizer, head)
    }

    /// Loads the encoder from the base weights, the tokenizer and the head (no digest check:
    /// `from_dir` is the path for files from disk).
    pub fn from_bytes(base: &[u8], tokenizer: &[u8], head: &[u8]) -> Result<Self, SemanticError> {
        let device = Device::Cpu;
        let mut tensors: HashMap<String, Tensor> =
            candle_core::safetensors::load_buffer(base, &device)?;
        // The fine-tuned layers replace the published ones by name; the head is ours alone.
        let mut tuned = candle_core::safetensors::load_buffer(head, &device)?;
        let head_weight = tuned
            .remove("head.weight")
            .ok_or(SemanticError::Metadata { key: "head.weight" })?;
        let head_bias = tuned
            .remove("head.bias")
            .ok_or(SemanticError::Metadata { key: "head.bias" })?;
        for (name, t) in tuned {
            tensors.insert(name, t.to_dtype(DType::F32)?);
        }
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let bert = bert::Bert::load(vb)?;
        let head_tensor = head_weight
            .to_dtype(DType::F32)?
            .reshape((bert::HIDDEN, 1))?;
        let bias = head_bias
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?
            .first()
            .copied()
            .ok_or(SemanticError::Metadata { key: "head.bias" })?;
        let point = operating_point(head)?;
        let mut tokenizer = tokenizers::Tokenizer::from_bytes(tokenizer)
            .map_err(|e| SemanticError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| SemanticError::Tokenizer(e.to_string()))?;
        let id = |token: &str| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| SemanticError::Tokenizer(format!("no `{token}` in the vocabulary")))
        };
        let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
        Ok(Encoder {
            tokenizer,
            bert,
            head: head_tensor,
            bias,
            cls,
            sep,
            threshold: point.threshold,
            precision: point.precision,
        })
    }

    /// The operating point the head was trained for.
    pub fn operating_point(&self) -> OperatingPoint {
        OperatingPoint {
            threshold: self.threshold,
            precision: self.precision,
        }
    }

    /// The windows `text` is read in: `[CLS]`, up to `WINDOW_TOKENS - 2` word pieces, `[SEP]`;
    /// each starting three quarters of a window after the last, covering at most `MAX_TOKENS`.
    pub fn windows(&self, text: &str) -> Result<Vec<Vec<u32>>, SemanticError> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| SemanticError::Tokenizer(e.to_string()))?;
        let ids = encoding.get_ids();
        let ids = ids.get(..ids.len().min(MAX_TOKENS)).unwrap_or(ids);
        let room = WINDOW_TOKENS - 2;
        let stride = room * 3 / 4;
        let mut out = Vec::new();
        let mut start = 0;
        loop {
            let chunk = ids.get(start..ids.len().min(start + room)).unwrap_or(&[]);
            let mut w = Vec::with_capacity(chunk.len() + 2);
            w.push(self.cls);
            w.extend_from_slice(chunk);
            w.push(self.sep);
            out.push(w);
            if start + room >= ids.len() {
                return Ok(out);
            }
            start += stride;
        }
    }

    /// The text's logit: the highest of its windows'.
    pub fn logit(&self, text: &str) -> Result<f32, SemanticError> {
        let windows = self.windows(text)?;
        let longest = windows.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(windows.len() * longest);
        let mut mask = Vec::with_capacity(windows.len() * longest);
        for w in &windows {
            ids.extend(
                w.iter()
                    .copied()
                    .chain(std::iter::repeat_n(0, longest - w.len())),
            );
            mask.extend(
                std::iter::repeat_n(1f32, w.len())
                    .chain(std::iter::repeat_n(0f32, longest - w.len())),
            );
        }
        let shape = (windows.len(), longest);
        let ids = Tensor::from_vec(ids, shape, &Device::Cpu)?;
        let mask = Tensor::from_vec(mask, shape, &Device::Cpu)?;
        let pooled = self.bert.pooled(&ids, &mask)?;
        let logits = pooled.matmul(&self.head)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(logits.into_iter().fold(f32::NEG_INFINITY, f32::max) + self.bias)
    }
}

/// Whether the tier runs: always (missing weights are an error), when its weights have been
/// fetched, or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    On,
    #[default]
    Auto,
    Off,
}

impl Mode {
    pub const NAMES: &'static str = "on, auto or off";

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "on" => Some(Mode::On),
            "auto" => Some(Mode::Auto),
            "off" => Some(Mode::Off),
            _ => None,
        }
    }
}

/// What loading the tier came to.
#[derive(Debug)]
pub enum Loaded {
    Encoder(Box<Encoder>),
    /// `Mode::Off`.
    Off,
    /// `Mode::Auto` and the weights are not in this directory: run without the tier, and say so.
    NotFetched(std::path::PathBuf),
}

/// Loads the encoder as `mode` says, from `dir` with `head`.
pub fn load(mode: Mode, dir: &Path, head: &[u8]) -> Result<Loaded, SemanticError> {
    match mode {
        Mode::Off => Ok(Loaded::Off),
        Mode::Auto if !weights::present(dir) => Ok(Loaded::NotFetched(dir.to_path_buf())),
        Mode::Auto | Mode::On => Ok(Loaded::Encoder(Box::new(Encoder::from_dir(dir, head)?))),
    }
}

impl SemanticScorer for Encoder {
    fn judge(&self, text: &str, _channel: Channel) -> Result<Judgement, String> {
        let logit = self.logit(text).map_err(|e| e.to_string())?;
        Ok(Judgement {
            flagged: logit >= self.threshold,
            precision: self.precision,
        })
    }
}

#[cfg(test)]
mod tests;
