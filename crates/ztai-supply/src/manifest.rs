//! Model manifests: what a model is, file by file, as the OpenSSF model-signing format records it.
//!
//! A manifest maps every file of a model directory (or every shard of every file) to its digest;
//! its root digest is the SHA-256 of the item digests in order. Signatures cover the manifest, so
//! verifying a model means hashing what is on disk the same way the signer did and comparing item
//! by item — which is what names the extra, missing or changed file when they differ.
//!
//! Hashing is the slow part of signing and verifying, so files are hashed on every core, large
//! files in shards when the serialization allows it, with reads of a few MiB straight from the
//! file and a progress callback per chunk.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

/// Bytes read per call while hashing.
const CHUNK: usize = 4 << 20;
/// Paths the reference tool leaves out unless told otherwise.
pub const GIT_PATHS: &[&str] = &[".git", ".gitattributes", ".github", ".gitignore"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    Sha256,
    Blake2b,
    Blake3,
}

impl HashAlgorithm {
    /// The name the format records (`hash_type` and each resource's `algorithm`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Blake2b => "blake2b",
            Self::Blake3 => "blake3",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Self::Sha256),
            "blake2b" | "blake2" => Some(Self::Blake2b),
            "blake3" => Some(Self::Blake3),
            _ => None,
        }
    }

    fn hasher(self) -> Hasher {
        match self {
            Self::Sha256 => {
                Hasher::Sha256(Box::new(ring::digest::Context::new(&ring::digest::SHA256)))
            }
            Self::Blake2b => Hasher::Blake2b(Box::default()),
            Self::Blake3 => Hasher::Blake3(Box::default()),
        }
    }
}

enum Hasher {
    Sha256(Box<ring::digest::Context>),
    Blake2b(Box<blake2::Blake2b512>),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    fn update(&mut self, data: &[u8]) {
        use blake2::Digest;
        match self {
            Self::Sha256(c) => c.update(data),
            Self::Blake2b(h) => h.update(data),
            Self::Blake3(h) => {
                h.update(data);
            }
        }
    }

    fn finish(self) -> Vec<u8> {
        use blake2::Digest;
        match self {
            Self::Sha256(c) => (*c).finish().as_ref().to_vec(),
            Self::Blake2b(h) => h.finalize().to_vec(),
            Self::Blake3(h) => h.finalize().as_bytes().to_vec(),
        }
    }
}

/// How a model was cut into items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// One item per file.
    Files,
    /// One item per `shard_size` bytes of each file (`path:start:end`).
    Shards { shard_size: u64 },
}

/// The `serialization` block of the format: how to hash the model again to check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serialization {
    pub method: Method,
    pub algorithm: HashAlgorithm,
    pub allow_symlinks: bool,
    /// Paths (relative to the model) left out of the manifest.
    pub ignore_paths: Vec<String>,
}

impl Serialization {
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "method": match self.method { Method::Files => "files", Method::Shards { .. } => "shards" },
            "hash_type": self.algorithm.name(),
            "allow_symlinks": self.allow_symlinks,
        });
        if let (Method::Shards { shard_size }, Some(map)) = (&self.method, v.as_object_mut()) {
            map.insert("shard_size".into(), json!(shard_size));
        }
        if !self.ignore_paths.is_empty()
            && let Some(map) = v.as_object_mut()
        {
            map.insert("ignore_paths".into(), json!(self.ignore_paths));
        }
        v
    }

    pub fn from_json(v: &Value) -> Result<Self, ManifestError> {
        let bad = |what: &str| ManifestError::Format(format!("serialization {what}"));
        let hash = v
            .get("hash_type")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("has no `hash_type`"))?;
        let algorithm = HashAlgorithm::parse(hash)
            .ok_or_else(|| bad(&format!("uses unknown hash `{hash}`")))?;
        let method = match v.get("method").and_then(Value::as_str) {
            Some("files") => Method::Files,
            Some("shards") => {
                let shard_size = v
                    .get("shard_size")
                    .and_then(Value::as_u64)
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad("has no positive `shard_size`"))?;
                Method::Shards { shard_size }
            }
            other => return Err(bad(&format!("uses unknown method {other:?}"))),
        };
        let allow_symlinks = match v.get("allow_symlinks") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        let ignore_paths = v
            .get("ignore_paths")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            method,
            algorithm,
            allow_symlinks,
            ignore_paths,
        })
    }
}

/// An item of a manifest: a file, or a byte range of one. Ordered as the reference tool orders
/// them (path components first, then offsets), which fixes the root digest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ItemKey {
    /// Path components relative to the model root (empty for a single-file model, named `.`).
    pub parts: Vec<String>,
    pub shard: Option<(u64, u64)>,
}

impl ItemKey {
    fn path(&self) -> String {
        if self.parts.is_empty() {
            ".".to_string()
        } else {
            self.parts.join("/")
        }
    }

    /// The resource name as the format writes it.
    pub fn name(&self) -> String {
        match self.shard {
            None => self.path(),
            Some((start, end)) => format!("{}:{start}:{end}", self.path()),
        }
    }

    fn parse(name: &str, method: &Method) -> Result<Self, ManifestError> {
        let bad = || {
            ManifestError::Format(format!(
                "resource name `{name}` is not valid for this serialization"
            ))
        };
        let (path, shard) = match method {
            Method::Files => (name, None),
            Method::Shards { .. } => {
                let mut it = name.rsplitn(3, ':');
                let (end, start, path) = (it.next(), it.next(), it.next());
                let (Some(end), Some(start), Some(path)) = (end, start, path) else {
                    return Err(bad());
                };
                let (start, end) = (
                    start.parse::<u64>().map_err(|_| bad())?,
                    end.parse::<u64>().map_err(|_| bad())?,
                );
                (path, Some((start, end)))
            }
        };
        let parts: Vec<String> = path
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .map(str::to_string)
            .collect();
        if parts.iter().any(|p| p == "..") || path.starts_with('/') {
            return Err(ManifestError::Format(format!(
                "resource `{name}` points outside the model"
            )));
        }
        Ok(Self { parts, shard })
    }
}

/// A digest with the algorithm that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest {
    pub algorithm: HashAlgorithm,
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Informational: the last component of the model path.
    pub model_name: String,
    pub serialization: Serialization,
    pub items: BTreeMap<ItemKey, Digest>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("the signed statement is not a model-signing manifest: {0}")]
    Format(String),
    #[error(
        "manifest is inconsistent: the subject digest is {expected} but the resources hash to {actual}; the statement was altered"
    )]
    RootDigest { expected: String, actual: String },
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "`{0}` is a symbolic link; the signature does not allow links (sign with --allow-symlinks to include them)"
    )]
    Symlink(String),
    #[error("`{0}` is neither a file nor a directory; only regular files can be part of a model")]
    NotAFile(String),
}

pub(crate) const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub(crate) const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// The experimental predicate of the format's v0.2, which signed models in production still use.
const PREDICATE_TYPE_COMPAT: &str = "https://model_signing/Digests/v0.1";

impl Manifest {
    /// SHA-256 over the item digests in order: the in-toto subject digest.
    pub fn root_digest(&self) -> String {
        let mut c = ring::digest::Context::new(&ring::digest::SHA256);
        for d in self.items.values() {
            c.update(&d.value);
        }
        hex::encode(c.finish())
    }

    /// The in-toto statement to sign.
    pub fn to_statement(&self) -> Value {
        let resources: Vec<Value> = self
            .items
            .iter()
            .map(|(k, d)| json!({"name": k.name(), "algorithm": d.algorithm.name(), "digest": hex::encode(&d.value)}))
            .collect();
        json!({
            "_type": STATEMENT_TYPE,
            "subject": [{"name": self.model_name, "digest": {"sha256": self.root_digest()}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": {"serialization": self.serialization.to_json(), "resources": resources},
        })
    }

    /// Reads a signed in-toto statement back into a manifest, checking the subject digest.
    pub fn from_statement(statement: &Value) -> Result<Self, ManifestError> {
        let bad = |what: &str| ManifestError::Format(what.to_string());
        if statement.get("_type").and_then(Value::as_str) != Some(STATEMENT_TYPE) {
            return Err(bad("`_type` is not an in-toto v1 statement"));
        }
        let subjects = statement
            .get("subject")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no `subject`"))?;
        match statement.get("predicateType").and_then(Value::as_str) {
            Some(PREDICATE_TYPE) => {}
            Some(PREDICATE_TYPE_COMPAT) => return Self::from_compat_subjects(subjects),
            other => return Err(bad(&format!("unknown predicateType {other:?}"))),
        }
        let [subject] = subjects.as_slice() else {
            return Err(bad("expected exactly one subject"));
        };
        let model_name = subject
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let expected = subject
            .get("digest")
            .and_then(|d| d.get("sha256"))
            .and_then(Value::as_str)
            .ok_or_else(|| bad("subject has no sha256 digest"))?;
        let predicate = statement
            .get("predicate")
            .ok_or_else(|| bad("no `predicate`"))?;
        let serialization = Serialization::from_json(
            predicate
                .get("serialization")
                .ok_or_else(|| bad("no `serialization`"))?,
        )?;
        let resources = predicate
            .get("resources")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no `resources`"))?;
        let mut items = BTreeMap::new();
        let mut root = ring::digest::Context::new(&ring::digest::SHA256);
        for r in resources {
            let name = r
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("a resource has no name"))?;
            let algorithm = r
                .get("algorithm")
                .and_then(Value::as_str)
                .and_then(HashAlgorithm::parse)
                .ok_or_else(|| bad(&format!("resource `{name}` has an unknown algorithm")))?;
            let value = r
                .get("digest")
                .and_then(Value::as_str)
                .and_then(|h| hex::decode(h).ok())
                .ok_or_else(|| bad(&format!("resource `{name}` has no hex digest")))?;
            root.update(&value);
            let key = ItemKey::parse(name, &serialization.method)?;
            if items.insert(key, Digest { algorithm, value }).is_some() {
                return Err(bad(&format!("resource `{name}` is listed twice")));
            }
        }
        let actual = hex::encode(root.finish());
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(ManifestError::RootDigest {
                expected: expected.to_string(),
                actual,
            });
        }
        Ok(Self {
            model_name,
            serialization,
            items,
        })
    }

    fn from_compat_subjects(subjects: &[Value]) -> Result<Self, ManifestError> {
        let serialization = Serialization {
            method: Method::Files,
            algorithm: HashAlgorithm::Sha256,
            allow_symlinks: false,
            ignore_paths: Vec::new(),
        };
        let mut items = BTreeMap::new();
        for s in subjects {
            let name = s.get("name").and_then(Value::as_str).unwrap_or_default();
            let value = s
                .get("digest")
                .and_then(|d| d.get("sha256"))
                .and_then(Value::as_str)
                .and_then(|h| hex::decode(h).ok())
                .ok_or_else(|| {
                    ManifestError::Format(format!("subject `{name}` has no sha256 digest"))
                })?;
            items.insert(
                ItemKey::parse(name, &Method::Files)?,
                Digest {
                    algorithm: HashAlgorithm::Sha256,
                    value,
                },
            );
        }
        Ok(Self {
            model_name: "compat-undefined-not-present".into(),
            serialization,
            items,
        })
    }

    /// What differs from `expected`, one line per file: extra, missing, changed.
    pub fn differences(&self, expected: &Manifest) -> Vec<String> {
        let name = |k: &ItemKey| {
            if k.parts.is_empty() && k.shard.is_none() {
                "the model file".to_string()
            } else {
                k.name()
            }
        };
        let mut out = Vec::new();
        for (k, d) in &self.items {
            match expected.items.get(k) {
                None => out.push(format!(
                    "extra file not covered by the signature: {}",
                    name(k)
                )),
                Some(e) if e != d => out.push(format!(
                    "changed: {} (signed {} {}, found {})",
                    name(k),
                    e.algorithm.name(),
                    hex::encode(&e.value),
                    hex::encode(&d.value)
                )),
                Some(_) => {}
            }
        }
        for k in expected.items.keys() {
            if !self.items.contains_key(k) {
                out.push(format!("missing file the signature covers: {}", name(k)));
            }
        }
        out
    }
}

/// Which files of a model to hash, and how.
#[derive(Debug, Clone)]
pub struct HashOptions {
    pub serialization: Serialization,
    /// Also leave out `.git`, `.github`, `.gitattributes`, `.gitignore`.
    pub ignore_git_paths: bool,
    /// Worker threads (0: one per core).
    pub threads: usize,
}

type HashedItem = (ItemKey, Result<Vec<u8>, ManifestError>);

/// One unit of hashing work: a whole file or a shard of one.
struct Job {
    key: ItemKey,
    path: PathBuf,
    start: u64,
    len: u64,
}

/// Lists a model's files as the reference tool does: the model path itself if it is a file,
/// else everything below it, minus ignored paths; links refused unless allowed.
fn list_files(
    model: &Path,
    options: &HashOptions,
) -> Result<Vec<(ItemKey, PathBuf, u64)>, ManifestError> {
    let io = |path: &Path, source| ManifestError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut ignored: Vec<Vec<String>> = options
        .serialization
        .ignore_paths
        .iter()
        .map(|p| components(Path::new(p)))
        .collect();
    if options.ignore_git_paths {
        ignored.extend(GIT_PATHS.iter().map(|p| vec![(*p).to_string()]));
    }
    let is_ignored = |parts: &[String]| {
        ignored
            .iter()
            .any(|ig| !ig.is_empty() && parts.starts_with(ig))
    };
    let mut files = Vec::new();
    let mut stack = vec![model.to_path_buf()];
    while let Some(path) = stack.pop() {
        let link = std::fs::symlink_metadata(&path).map_err(|e| io(&path, e))?;
        if link.file_type().is_symlink() && !options.serialization.allow_symlinks {
            return Err(ManifestError::Symlink(path.display().to_string()));
        }
        let meta = std::fs::metadata(&path).map_err(|e| io(&path, e))?;
        let rel = path.strip_prefix(model).map(components).unwrap_or_default();
        if is_ignored(&rel) {
            continue;
        }
        if meta.is_file() {
            files.push((
                ItemKey {
                    parts: rel,
                    shard: None,
                },
                path,
                meta.len(),
            ));
        } else if meta.is_dir() {
            // Like the reference tool's `glob("**/*")`, links to directories are not followed
            // (which also keeps a link loop from trapping the walk).
            if link.file_type().is_symlink() {
                continue;
            }
            for entry in std::fs::read_dir(&path).map_err(|e| io(&path, e))? {
                stack.push(entry.map_err(|e| io(&path, e))?.path());
            }
        } else {
            return Err(ManifestError::NotAFile(path.display().to_string()));
        }
    }
    files.sort();
    Ok(files)
}

fn components(path: &Path) -> Vec<String> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect()
}

/// Total bytes a hash of `model` will read, for a progress bar.
pub fn model_size(model: &Path, options: &HashOptions) -> Result<u64, ManifestError> {
    Ok(list_files(model, options)?
        .iter()
        .map(|(_, _, len)| len)
        .sum())
}

/// Hashes a model directory (or single file) into a manifest, on `options.threads` threads;
/// `progress` receives byte counts as they are read.
pub fn hash_model(
    model: &Path,
    options: &HashOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Manifest, ManifestError> {
    let files = list_files(model, options)?;
    let mut jobs = Vec::new();
    for (key, path, len) in files {
        match options.serialization.method {
            Method::Files => jobs.push(Job {
                key,
                path,
                start: 0,
                len,
            }),
            Method::Shards { shard_size } => {
                let mut start = 0;
                // An empty file is one empty shard, as the reference tool writes it.
                loop {
                    let end = len.min(start + shard_size);
                    let shard = ItemKey {
                        parts: key.parts.clone(),
                        shard: Some((start, end)),
                    };
                    jobs.push(Job {
                        key: shard,
                        path: path.clone(),
                        start,
                        len: end - start,
                    });
                    start = end;
                    if start >= len {
                        break;
                    }
                }
            }
        }
    }
    // Largest first, so one big file does not start last and leave the other cores idle.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.len));
    let threads = if options.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        options.threads
    }
    .min(jobs.len().max(1));
    let next = AtomicU64::new(0);
    let results: Mutex<Vec<HashedItem>> = Mutex::new(Vec::new());
    let algorithm = options.serialization.algorithm;
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed) as usize) {
                    let digest = hash_range(&job.path, job.start, job.len, algorithm, progress);
                    if let Ok(mut r) = results.lock() {
                        r.push((job.key.clone(), digest));
                    }
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_default();
    let mut items = BTreeMap::new();
    for (key, digest) in results {
        items.insert(
            key,
            Digest {
                algorithm,
                value: digest?,
            },
        );
    }
    if items.len() != jobs.len() {
        return Err(ManifestError::Io {
            path: model.display().to_string(),
            source: std::io::Error::other("a hashing thread failed"),
        });
    }
    let model_name = model
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    Ok(Manifest {
        model_name,
        serialization: options.serialization.clone(),
        items,
    })
}

fn hash_range(
    path: &Path,
    start: u64,
    len: u64,
    algorithm: HashAlgorithm,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<u8>, ManifestError> {
    let io = |source| ManifestError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    if start > 0 {
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(start)).map_err(io)?;
    }
    let mut reader = file.take(len);
    let mut hasher = algorithm.hasher();
    let mut buf = vec![0u8; CHUNK];
    let mut read_total = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
        read_total += n as u64;
        progress(n as u64);
    }
    if read_total != len {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the file changed while it was hashed ({read_total} of {len} bytes read)"),
        )));
    }
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests;
