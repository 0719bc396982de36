//! `ztai model`: the model supply chain from the command line. `scan` examines model files for
//! code that would run when they are loaded (pickles and everything that wraps them) and for
//! headers that lie; `sign`, `verify` and `hash` speak the OpenSSF model-signing format with the
//! reference tool's options (hyphenated here; its underscore spellings are accepted too). Every
//! command gives a pipeline an exit code: 0 good, 1 unsafe or not verified, 2 could not read.

use anyhow::Context;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use ztai_supply::manifest::{
    HashAlgorithm, HashOptions, Manifest, ManifestError, Method, Serialization, hash_model,
};
use ztai_supply::scan::{FileReport, ScanOptions, Verdict, scan_blob};
use ztai_supply::signing::sigstore::SigstoreVerifier;
use ztai_supply::signing::{
    Bundle, PublicKey, Signer, SigningError, SigningKey, Verifier, sign_with_certificate,
    sign_with_key, verify_model,
};

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
    /// Sign a model in the OpenSSF model-signing format (a Sigstore bundle over the digests of
    /// every file), compatible with the reference `model_signing` tool.
    ///
    /// Examples:
    ///   ztai model sign key --private-key key.pem ./my-model/
    ///   ztai model sign certificate --private-key key.pem --signing-certificate cert.pem \
    ///       --certificate-chain intermediate.pem --signature my-model.sig ./my-model/
    #[command(verbatim_doc_comment)]
    Sign {
        #[command(subcommand)]
        method: SignMethod,
    },
    /// Verify a model against its signature: the signer (key, certificate chain, or Sigstore
    /// identity verified offline) and every file. Exit 0 only when the signature is valid and
    /// covers exactly the files present; 1 when it is not (naming the extra, missing or changed
    /// file); 2 when something could not be read.
    ///
    /// Examples:
    ///   ztai model verify key --signature model.sig --public-key key.pub ./my-model/
    ///   ztai model verify certificate --signature model.sig --certificate-chain ca.pem ./my-model/
    ///   ztai model verify sigstore --signature model.sig --trust-config trust.json \
    ///       --identity me@example.com --identity-provider https://accounts.google.com ./my-model/
    #[command(verbatim_doc_comment)]
    Verify {
        #[command(subcommand)]
        method: VerifyMethod,
    },
    /// The model registry on a running gateway (its admin API): models and versions, their
    /// lineage and evidence, and the lifecycle that decides which version takes traffic
    /// (registered → verified → approved → deployed; quarantine, revoke, retire).
    Registry {
        #[command(flatten)]
        admin: crate::admin_client::AdminArgs,
        #[command(subcommand)]
        command: RegistryCommand,
    },
    /// Make an elliptic-curve key pair for `sign key` (PKCS#8 private key, SubjectPublicKeyInfo
    /// public key, both PEM). Existing files are never overwritten.
    Keygen {
        #[arg(long = "private-key", value_name = "PEM")]
        private_key: PathBuf,
        #[arg(long = "public-key", value_name = "PEM")]
        public_key: PathBuf,
        /// p256 or p384.
        #[arg(long, default_value = "p256")]
        curve: String,
    },
    /// Hash a model as signing does and print its manifest (JSON): every file's digest and the
    /// root digest. Files are hashed on every core, large files in shards with --shard-size.
    Hash {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        hashing: HashingArgs,
    },
}

/// The model and which of its files count.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// The model: a directory, or a single file.
    pub model: PathBuf,
    /// Leave these paths out (repeatable); relative to the current directory, as the reference
    /// tool takes them. Paths outside the model are ignored.
    #[arg(long = "ignore-paths", value_name = "PATH")]
    pub ignore_paths: Vec<PathBuf>,
    /// Include .git, .github, .gitattributes and .gitignore (left out by default).
    #[arg(long = "no-ignore-git-paths")]
    pub no_ignore_git_paths: bool,
}

#[derive(Debug, Args)]
pub struct HashingArgs {
    /// Follow symbolic links instead of refusing them.
    #[arg(long = "allow-symlinks", alias = "allow_symlinks")]
    pub allow_symlinks: bool,
    /// sha256 (the default, and what the reference CLI signs with), blake2b or blake3.
    #[arg(long = "hash", default_value = "sha256")]
    pub hash: String,
    /// Hash files in shards of this many bytes (the format's `shards` method) instead of whole.
    #[arg(long = "shard-size")]
    pub shard_size: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Every registered model with its versions and their states.
    List,
    /// One model: versions, evidence, and where its traffic goes now.
    Show { name: String },
    /// Register a version (creating the model on first use). The paths are on the gateway's
    /// host: the gateway reads, verifies and scans the files itself.
    Register {
        name: String,
        version: String,
        /// The model directory (or single file).
        #[arg(long)]
        path: String,
        /// Its signature (Sigstore bundle from `ztai model sign` or `model_signing sign`).
        #[arg(long)]
        signature: String,
        /// The model name sent upstream while this version is deployed.
        #[arg(long = "upstream-model")]
        upstream_model: String,
        /// Lineage as JSON, or @FILE: datasets (manifest digests), base_model, parameters,
        /// seeds, commit, trained_by, trained_at.
        #[arg(long)]
        lineage: Option<String>,
        /// For a new model: its owners, `kind:id` (repeatable).
        #[arg(long = "owner")]
        owners: Vec<String>,
        /// For a new model: what it is approved for (repeatable).
        #[arg(long = "use")]
        uses: Vec<String>,
        /// For a new model: minimal, limited, high or unacceptable.
        #[arg(long = "risk-tier", default_value = "limited")]
        risk_tier: String,
        /// For a new model: refuse traffic rather than fall back to the last known-good version
        /// when the deployed one is quarantined or revoked.
        #[arg(long = "no-fallback")]
        no_fallback: bool,
    },
    /// Have the gateway verify the version's signature and scan its files: `verified` when both
    /// pass, `quarantined` when a file is unsafe.
    Verify {
        name: String,
        version: String,
        #[command(subcommand)]
        method: RegistryVerifyMethod,
    },
    /// Approve a verified version for its uses.
    Approve {
        name: String,
        version: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Route the model's traffic to this approved version (the deployed one steps back to
    /// approved and becomes the fallback).
    Deploy {
        name: String,
        version: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Take a version out of routing at once.
    Quarantine {
        name: String,
        version: String,
        #[arg(long)]
        reason: String,
    },
    /// Revoke a version for good.
    Revoke {
        name: String,
        version: String,
        #[arg(long)]
        reason: String,
    },
    /// Retire a version.
    Retire {
        name: String,
        version: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Revoke a signing key (its hint) or certificate (its SHA-256): every version it signed is
    /// revoked, and nothing it signs verifies again.
    RevokeSigner {
        fingerprint: String,
        #[arg(long)]
        reason: String,
    },
    /// Revoked signers.
    Signers,
}

#[derive(Debug, Subcommand)]
pub enum RegistryVerifyMethod {
    /// Signed with an elliptic-curve key: this is its public key.
    Key {
        #[arg(long = "public-key", value_name = "PEM")]
        public_key: PathBuf,
    },
    /// Signed with a certificate: these are the trusted roots (and intermediates).
    Certificate {
        #[arg(long = "certificate-chain", value_name = "PEM", required = true)]
        certificate_chain: Vec<PathBuf>,
    },
    /// Signed with Sigstore: verified offline against this trust configuration, for this
    /// identity and OIDC issuer.
    Sigstore {
        #[arg(long = "trust-config", value_name = "JSON")]
        trust_config: PathBuf,
        #[arg(long)]
        identity: String,
        #[arg(long = "identity-provider", value_name = "URL")]
        identity_provider: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SignMethod {
    /// With an elliptic-curve private key (P-256 or P-384, PEM).
    Key {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        hashing: HashingArgs,
        /// Where to write the signature.
        #[arg(long, default_value = "model.sig")]
        signature: PathBuf,
        #[arg(long = "private-key", alias = "private_key", value_name = "PEM")]
        private_key: PathBuf,
    },
    /// With a private key and its certificate; the chain goes into the bundle.
    Certificate {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        hashing: HashingArgs,
        #[arg(long, default_value = "model.sig")]
        signature: PathBuf,
        #[arg(long = "private-key", alias = "private_key", value_name = "PEM")]
        private_key: PathBuf,
        #[arg(
            long = "signing-certificate",
            alias = "signing_certificate",
            value_name = "PEM"
        )]
        signing_certificate: PathBuf,
        /// Intermediate certificates to include (repeatable).
        #[arg(
            long = "certificate-chain",
            alias = "certificate_chain",
            value_name = "PEM"
        )]
        certificate_chain: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum VerifyMethod {
    /// Signed with an elliptic-curve key: verify with its public key.
    Key {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        signature: PathBuf,
        #[arg(long = "public-key", alias = "public_key", value_name = "PEM")]
        public_key: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Signed with a certificate: verify its chain up to these trusted certificates.
    Certificate {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        signature: PathBuf,
        /// Trusted root (and intermediate) certificates, PEM (repeatable).
        #[arg(
            long = "certificate-chain",
            alias = "certificate_chain",
            value_name = "PEM",
            required = true
        )]
        certificate_chain: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Signed with Sigstore: verify offline against a trust configuration, for one identity.
    Sigstore {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        signature: PathBuf,
        /// A Sigstore ClientTrustConfig (or TrustedRoot) JSON file.
        #[arg(long = "trust-config", alias = "trust_config", value_name = "JSON")]
        trust_config: PathBuf,
        /// The signer's identity as the certificate names it (e-mail or URI).
        #[arg(long)]
        identity: String,
        /// The OIDC issuer that vouched for the identity.
        #[arg(
            long = "identity-provider",
            alias = "identity_provider",
            value_name = "URL"
        )]
        identity_provider: String,
        #[arg(long)]
        json: bool,
    },
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
        ModelCommand::Sign { method } => sign(method),
        ModelCommand::Verify { method } => verify(method),
        ModelCommand::Hash { model, hashing } => hash(model, hashing),
        ModelCommand::Keygen {
            private_key,
            public_key,
            curve,
        } => keygen(&private_key, &public_key, &curve),
        ModelCommand::Registry { admin, command } => registry(&admin, command),
    }
}

#[allow(clippy::print_stdout)]
fn keygen(private_key: &Path, public_key: &Path, curve: &str) -> anyhow::Result<ExitCode> {
    let alg = match curve {
        "p256" => &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        "p384" => &ring::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        other => anyhow::bail!("unknown curve `{other}`; use p256 or p384"),
    };
    for p in [private_key, public_key] {
        if p.exists() {
            anyhow::bail!("`{}` exists; keygen never overwrites a key", p.display());
        }
    }
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng)
        .map_err(|_| anyhow::anyhow!("key generation failed"))?;
    let pem = ztai_supply::signing::pem_encode("PRIVATE KEY", pkcs8.as_ref());
    let key = SigningKey::from_pem(pem.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(private_key)
        .with_context(|| format!("cannot create `{}`", private_key.display()))?;
    file.write_all(pem.as_bytes())?;
    std::fs::write(public_key, key.public_key().to_pem())
        .with_context(|| format!("cannot write `{}`", public_key.display()))?;
    println!(
        "wrote {} (private, mode 600) and {}; key hint {}",
        private_key.display(),
        public_key.display(),
        key.public_key().hint()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_text(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} `{}`", path.display()))
}

#[allow(clippy::print_stdout)]
fn registry(
    admin: &crate::admin_client::AdminArgs,
    command: RegistryCommand,
) -> anyhow::Result<ExitCode> {
    let base = "/api/v1/registry";
    let version_path = |name: &str, version: &str, action: &str| {
        format!("{base}/models/{name}/versions/{version}/{action}")
    };
    // A lifecycle move: `approve`, `deploy`, `quarantine`, `revoke` or `retire`, with its reason.
    let lifecycle = |name: &str, version: &str, action: &str, reason: &str| {
        admin.call(
            "POST",
            &version_path(name, version, action),
            Some(&json!({"reason": reason})),
        )
    };
    let answer = match command {
        RegistryCommand::List => admin.call("GET", &format!("{base}/models"), None)?,
        RegistryCommand::Show { name } => {
            admin.call("GET", &format!("{base}/models/{name}"), None)?
        }
        RegistryCommand::Register {
            name,
            version,
            path,
            signature,
            upstream_model,
            lineage,
            owners,
            uses,
            risk_tier,
            no_fallback,
        } => {
            let lineage: serde_json::Value = match lineage {
                None => json!({}),
                Some(l) => {
                    let text = match l.strip_prefix('@') {
                        Some(file) => read_text(Path::new(file), "lineage file")?,
                        None => l,
                    };
                    serde_json::from_str(&text)
                        .context("--lineage must be a JSON object (or @FILE holding one)")?
                }
            };
            let exists = admin
                .call("GET", &format!("{base}/models/{name}"), None)
                .is_ok();
            if !exists {
                if owners.is_empty() {
                    anyhow::bail!("model `{name}` is new: give its owners with --owner kind:id");
                }
                admin.call(
                    "POST",
                    &format!("{base}/models"),
                    Some(&json!({"name": name, "owners": owners, "approved_uses": uses, "risk_tier": risk_tier, "fallback": !no_fallback})),
                )?;
            }
            admin.call(
                "POST",
                &format!("{base}/models/{name}/versions"),
                Some(&json!({"version": version, "path": path, "signature": signature, "upstream_model": upstream_model, "lineage": lineage})),
            )?
        }
        RegistryCommand::Verify {
            name,
            version,
            method,
        } => {
            let body = match method {
                RegistryVerifyMethod::Key { public_key } => {
                    json!({"method": "key", "public_key": read_text(&public_key, "public key")?})
                }
                RegistryVerifyMethod::Certificate { certificate_chain } => {
                    let pems = certificate_chain
                        .iter()
                        .map(|p| read_text(p, "certificate chain"))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    json!({"method": "certificate", "certificate_chain": pems})
                }
                RegistryVerifyMethod::Sigstore {
                    trust_config,
                    identity,
                    identity_provider,
                } => {
                    let trust: serde_json::Value =
                        serde_json::from_str(&read_text(&trust_config, "trust configuration")?)
                            .context("the trust configuration is not JSON")?;
                    json!({"method": "sigstore", "trust_config": trust, "identity": identity, "identity_provider": identity_provider})
                }
            };
            admin.call(
                "POST",
                &version_path(&name, &version, "verify"),
                Some(&body),
            )?
        }
        RegistryCommand::Approve {
            name,
            version,
            reason,
        } => lifecycle(&name, &version, "approve", &reason)?,
        RegistryCommand::Deploy {
            name,
            version,
            reason,
        } => lifecycle(&name, &version, "deploy", &reason)?,
        RegistryCommand::Quarantine {
            name,
            version,
            reason,
        } => lifecycle(&name, &version, "quarantine", &reason)?,
        RegistryCommand::Revoke {
            name,
            version,
            reason,
        } => lifecycle(&name, &version, "revoke", &reason)?,
        RegistryCommand::Retire {
            name,
            version,
            reason,
        } => lifecycle(&name, &version, "retire", &reason)?,
        RegistryCommand::RevokeSigner {
            fingerprint,
            reason,
        } => admin.call(
            "POST",
            &format!("{base}/signers/revoke"),
            Some(&json!({"fingerprint": fingerprint, "reason": reason})),
        )?,
        RegistryCommand::Signers => admin.call("GET", &format!("{base}/signers"), None)?,
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    Ok(ExitCode::SUCCESS)
}

/// `--ignore-paths` as the reference tool reads them: relative to the current directory,
/// kept only when inside the model, recorded relative to it.
fn resolve_ignores(model: &Path, paths: &[PathBuf]) -> Vec<String> {
    let root = model.canonicalize().unwrap_or_else(|_| model.to_path_buf());
    let cwd = std::env::current_dir().unwrap_or_default();
    paths
        .iter()
        .filter_map(|p| {
            let full = if p.is_absolute() {
                p.clone()
            } else {
                cwd.join(p)
            };
            let full = full.canonicalize().unwrap_or(full);
            full.strip_prefix(&root)
                .ok()
                .map(|r| r.to_string_lossy().replace('\\', "/"))
        })
        .filter(|r| !r.is_empty())
        .collect()
}

fn hash_options(
    model: &ModelArgs,
    hashing: &HashingArgs,
    extra: &[PathBuf],
) -> anyhow::Result<HashOptions> {
    let algorithm = HashAlgorithm::parse(&hashing.hash).with_context(|| {
        format!(
            "unknown hash `{}`; use sha256, blake2b or blake3",
            hashing.hash
        )
    })?;
    let method = match hashing.shard_size {
        Some(0) => anyhow::bail!("--shard-size must be positive"),
        Some(shard_size) => Method::Shards { shard_size },
        None => Method::Files,
    };
    let mut ignores: Vec<PathBuf> = model.ignore_paths.clone();
    ignores.extend(extra.iter().cloned());
    let mut ignore_paths = resolve_ignores(&model.model, &ignores);
    if !model.no_ignore_git_paths {
        ignore_paths.extend(
            ztai_supply::manifest::GIT_PATHS
                .iter()
                .map(|p| (*p).to_string()),
        );
    }
    ignore_paths.sort();
    ignore_paths.dedup();
    Ok(HashOptions {
        serialization: Serialization {
            method,
            algorithm,
            allow_symlinks: hashing.allow_symlinks,
            ignore_paths,
        },
        ignore_git_paths: !model.no_ignore_git_paths,
        threads: 0,
    })
}

/// A byte progress bar on stderr when it is a terminal.
pub(crate) fn byte_bar(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

fn hashed(model: &Path, options: &HashOptions) -> anyhow::Result<Manifest> {
    let total = ztai_supply::manifest::model_size(model, options)?;
    let bar = byte_bar(total, "hashing");
    let manifest = hash_model(model, options, &|n| bar.inc(n))?;
    bar.finish_and_clear();
    Ok(manifest)
}

#[allow(clippy::print_stdout)]
fn hash(model: ModelArgs, hashing: HashingArgs) -> anyhow::Result<ExitCode> {
    let options = hash_options(&model, &hashing, &[])?;
    let manifest = hashed(&model.model, &options)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&manifest.to_statement())?
    );
    Ok(ExitCode::SUCCESS)
}

fn read_file(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} `{}`", path.display()))
}

#[allow(clippy::print_stdout)]
fn sign(method: SignMethod) -> anyhow::Result<ExitCode> {
    let (model, hashing, signature) = match &method {
        SignMethod::Key {
            model,
            hashing,
            signature,
            ..
        }
        | SignMethod::Certificate {
            model,
            hashing,
            signature,
            ..
        } => (model, hashing, signature),
    };
    // The signature file itself is never part of what it signs.
    let options = hash_options(model, hashing, std::slice::from_ref(signature))?;
    let manifest = hashed(&model.model, &options)?;
    let bundle = match &method {
        SignMethod::Key { private_key, .. } => {
            let key =
                SigningKey::from_pem(&read_file(private_key, "private key")?).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot use the private key `{}`: {e}",
                        private_key.display()
                    )
                })?;
            sign_with_key(&manifest, &key)?
        }
        SignMethod::Certificate {
            private_key,
            signing_certificate,
            certificate_chain,
            ..
        } => {
            let key =
                SigningKey::from_pem(&read_file(private_key, "private key")?).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot use the private key `{}`: {e}",
                        private_key.display()
                    )
                })?;
            let chain = certificate_chain
                .iter()
                .map(|p| read_file(p, "certificate chain"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            sign_with_certificate(
                &manifest,
                &key,
                &read_file(signing_certificate, "signing certificate")?,
                &chain,
            )?
        }
    };
    std::fs::write(signature, serde_json::to_vec_pretty(&bundle)?)
        .with_context(|| format!("cannot write the signature `{}`", signature.display()))?;
    println!(
        "signed {} files of {} (root digest {}) into {}",
        manifest.items.len(),
        model.model.display(),
        manifest.root_digest(),
        signature.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
fn verify(method: VerifyMethod) -> anyhow::Result<ExitCode> {
    let (model, signature, json, verifier) = match method {
        VerifyMethod::Key {
            model,
            signature,
            public_key,
            json,
        } => {
            let key = PublicKey::from_pem(&read_file(&public_key, "public key")?).map_err(|e| {
                anyhow::anyhow!("cannot use the public key `{}`: {e}", public_key.display())
            })?;
            (model, signature, json, Verifier::Key(key))
        }
        VerifyMethod::Certificate {
            model,
            signature,
            certificate_chain,
            json,
        } => {
            let pems = certificate_chain
                .iter()
                .map(|p| read_file(p, "certificate chain"))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let verifier = Verifier::certificates(&pems).map_err(|e| anyhow::anyhow!("{e}"))?;
            (model, signature, json, verifier)
        }
        VerifyMethod::Sigstore {
            model,
            signature,
            trust_config,
            identity,
            identity_provider,
            json,
        } => {
            let trust = read_file(&trust_config, "trust configuration")?;
            let verifier =
                SigstoreVerifier::new(&trust, &identity, &identity_provider).map_err(|e| {
                    anyhow::anyhow!(
                        "cannot use the trust configuration `{}`: {e}",
                        trust_config.display()
                    )
                })?;
            (
                model,
                signature,
                json,
                Verifier::Sigstore(Box::new(verifier)),
            )
        }
    };
    let bytes = read_file(&signature, "signature")?;
    // As the reference tool does, the signature file never counts as part of the model.
    let mut ignores = model.ignore_paths.clone();
    ignores.push(signature.clone());
    let extra = resolve_ignores(&model.model, &ignores);
    let sizing = HashingArgs {
        allow_symlinks: true,
        hash: "sha256".into(),
        shard_size: None,
    };
    let total = hash_options(&model, &sizing, &[])
        .ok()
        .and_then(|o| ztai_supply::manifest::model_size(&model.model, &o).ok())
        .unwrap_or(0);
    let bar = byte_bar(total, "verifying");
    let result = Bundle::parse(&bytes).and_then(|bundle| {
        verify_model(
            &model.model,
            &bundle,
            &verifier,
            &extra,
            !model.no_ignore_git_paths,
            &|n| bar.inc(n),
        )
    });
    bar.finish_and_clear();
    match result {
        Ok(verified) => {
            if json {
                let doc = json!({
                    "verified": true,
                    "model": model.model.display().to_string(),
                    "files": verified.manifest.items.len(),
                    "root_digest": verified.manifest.root_digest(),
                    "signer": verified.signer,
                });
                println!("{}", serde_json::to_string_pretty(&doc)?);
            } else {
                println!(
                    "verified: {} files of {} signed by {}",
                    verified.manifest.items.len(),
                    model.model.display(),
                    describe(&verified.signer)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(SigningError::Manifest(ManifestError::Io { path, source })) => {
            anyhow::bail!("cannot read `{path}` while verifying: {source}")
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"verified": false, "error": e.to_string()})
                    )?
                );
            } else {
                eprintln!("verification FAILED: {e}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn describe(signer: &Signer) -> String {
    match signer {
        Signer::Key { key_hint } => format!("the key with hint {key_hint}"),
        Signer::Certificate {
            subject, issuer, ..
        } => format!("certificate `{subject}` issued by `{issuer}`"),
        Signer::Sigstore {
            identity,
            issuer,
            log_index,
            ..
        } => {
            format!("{identity} (identity verified by {issuer}; Rekor entry {log_index})")
        }
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
