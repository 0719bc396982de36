//! OpenSSF model signing: Sigstore bundles holding a DSSE envelope over an in-toto statement
//! whose resources are the model's file digests (the format of sigstore/model-transparency).
//!
//! Three ways to establish who signed: an elliptic-curve public key the verifier holds; a
//! certificate chain from the bundle to a root the verifier trusts; and Sigstore (a short-lived
//! Fulcio certificate, logged in Rekor) verified offline against a trust configuration
//! ([`sigstore`]). Whatever the method, verification ends the same way: the signed statement
//! becomes a [`Manifest`], and the model on disk is hashed and compared with it item by item.
//!
//! Signatures are ECDSA via `ring`; certificates are parsed with `x509-parser` and their
//! signatures checked through it (also `ring`). The chain is built here because the format's
//! reference verifier (OpenSSL's store) accepts chains WebPKI validators refuse — e.g. a CA
//! certificate used as the signing certificate — and verifiers must agree on what is valid.

pub mod sigstore;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{self as sig, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use x509_parser::prelude::*;

use crate::manifest::{Manifest, ManifestError};

pub(crate) const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// A Sigstore bundle, as much of it as model signing uses.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub media_type: String,
    pub verification_material: VerificationMaterial,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsse_envelope: Option<Envelope>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMaterial {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKeyIdentifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509_certificate_chain: Option<CertificateChain>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<RawBytes>,
    #[serde(default)]
    pub tlog_entries: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_verification_data: Option<Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublicKeyIdentifier {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// Older bundles (format v1.0) carried the PEM key itself here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_bytes: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertificateChain {
    pub certificates: Vec<RawBytes>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawBytes {
    pub raw_bytes: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload: String,
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    pub sig: String,
    #[serde(default)]
    pub keyid: Option<String>,
}

/// Why a signature was refused. Each says what to check.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("the signature file is not a Sigstore bundle: {0}")]
    Bundle(String),
    #[error("cannot read the key `{path}`: {why}")]
    Key { path: String, why: String },
    #[error(
        "the public key does not match the key the bundle names (hint {bundle}, given key {given}); verify with the key that signed"
    )]
    KeyMismatch { bundle: String, given: String },
    #[error(
        "the signature does not verify with the given key: the statement or the signature was altered, or another key signed it"
    )]
    BadSignature,
    #[error("the certificate chain is not trusted: {0}")]
    Chain(String),
    #[error("Sigstore verification failed: {0}")]
    Sigstore(String),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("the model does not match its signature:\n  {}", .0.join("\n  "))]
    Mismatch(Vec<String>),
}

fn bundle_err(what: impl Into<String>) -> SigningError {
    SigningError::Bundle(what.into())
}

/// DSSE pre-authentication encoding: what is actually signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// The encoding model_signing 0.2 signed by mistake (payload bytes formatted as a Python
/// `bytes` literal); signatures made then are still accepted by the reference verifier.
fn pae_compat(payload: &[u8]) -> Vec<u8> {
    let mut literal = String::from("b'");
    for &b in payload {
        match b {
            b'\\' => literal.push_str("\\\\"),
            b'\'' => literal.push_str("\\'"),
            b'\n' => literal.push_str("\\n"),
            b'\r' => literal.push_str("\\r"),
            b'\t' => literal.push_str("\\t"),
            0x20..=0x7e => literal.push(char::from(b)),
            other => literal.push_str(&format!("\\x{other:02x}")),
        }
    }
    literal.push('\'');
    format!(
        "DSSEV1 {} {PAYLOAD_TYPE} {} {literal}",
        PAYLOAD_TYPE.len(),
        payload.len()
    )
    .into_bytes()
}

/// The elliptic curves model signing allows (P-521 is not offered by `ring`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";

impl Curve {
    fn from_oid(oid: &str) -> Result<Self, String> {
        match oid {
            OID_P256 => Ok(Self::P256),
            OID_P384 => Ok(Self::P384),
            OID_P521 => Err("P-521 keys are not supported yet; use a P-256 or P-384 key".into()),
            other => Err(format!(
                "unsupported elliptic curve {other}; use a P-256 or P-384 key"
            )),
        }
    }

    /// The curve's own hash, as the format pairs them.
    fn verification(self) -> &'static sig::EcdsaVerificationAlgorithm {
        match self {
            Self::P256 => &sig::ECDSA_P256_SHA256_ASN1,
            Self::P384 => &sig::ECDSA_P384_SHA384_ASN1,
        }
    }

    /// SHA-256 whatever the curve: what the compat encoding was signed with.
    fn verification_sha256(self) -> &'static sig::EcdsaVerificationAlgorithm {
        match self {
            Self::P256 => &sig::ECDSA_P256_SHA256_ASN1,
            Self::P384 => &sig::ECDSA_P384_SHA256_ASN1,
        }
    }

    fn signing(self) -> &'static sig::EcdsaSigningAlgorithm {
        match self {
            Self::P256 => &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
            Self::P384 => &sig::ECDSA_P384_SHA384_ASN1_SIGNING,
        }
    }

    fn oid(self) -> &'static str {
        match self {
            Self::P256 => OID_P256,
            Self::P384 => OID_P384,
        }
    }
}

/// An elliptic-curve public key (SubjectPublicKeyInfo).
#[derive(Debug, Clone)]
pub struct PublicKey {
    curve: Curve,
    point: Vec<u8>,
    spki_der: Vec<u8>,
}

impl PublicKey {
    /// From `-----BEGIN PUBLIC KEY-----` PEM (or DER).
    pub fn from_pem(text: &[u8]) -> Result<Self, String> {
        let der = pem_block(text, &["PUBLIC KEY"]).unwrap_or_else(|| text.to_vec());
        Self::from_spki_der(&der)
    }

    fn from_spki_der(der: &[u8]) -> Result<Self, String> {
        let (_, spki) =
            SubjectPublicKeyInfo::from_der(der).map_err(|e| format!("not a public key: {e}"))?;
        Self::from_spki(&spki, der)
    }

    fn from_spki(spki: &SubjectPublicKeyInfo<'_>, der: &[u8]) -> Result<Self, String> {
        if spki.algorithm.algorithm.to_id_string() != OID_EC_PUBLIC_KEY {
            return Err(format!(
                "the key is {}, not an elliptic-curve key",
                spki.algorithm.algorithm.to_id_string()
            ));
        }
        let curve_oid = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| o.to_id_string())
            .ok_or("the key names no curve")?;
        Ok(Self {
            curve: Curve::from_oid(&curve_oid)?,
            point: spki.subject_public_key.data.to_vec(),
            spki_der: der.to_vec(),
        })
    }

    /// PEM exactly as Python's `cryptography` writes it: the format hashes this text.
    pub fn to_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &self.spki_der)
    }

    /// SHA-256 of the PEM: the `hint` that names this key in a bundle.
    pub fn hint(&self) -> String {
        hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            self.to_pem().as_bytes(),
        ))
    }

    fn verify(&self, message: &[u8], signature: &[u8], compat_sha256: bool) -> bool {
        let alg = if compat_sha256 {
            self.curve.verification_sha256()
        } else {
            self.curve.verification()
        };
        sig::UnparsedPublicKey::new(alg, &self.point)
            .verify(message, signature)
            .is_ok()
    }
}

/// PEM text with 64-character lines, as OpenSSL and Python's `cryptography` write it.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER of the first PEM block with one of `labels` (other text around it is allowed).
fn pem_block(text: &[u8], labels: &[&str]) -> Option<Vec<u8>> {
    pem_blocks(text)
        .into_iter()
        .find(|(l, _)| labels.contains(&l.as_str()))
        .map(|(_, d)| d)
}

fn pem_blocks(text: &[u8]) -> Vec<(String, Vec<u8>)> {
    let text = String::from_utf8_lossy(text);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = rest.get(start + 11..).unwrap_or_default();
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = after.get(..label_end).unwrap_or_default().to_string();
        let body_start = label_end + 5;
        let end_marker = format!("-----END {label}-----");
        let Some(end) = after.find(&end_marker) else {
            break;
        };
        let body: String = after
            .get(body_start..end)
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if let Ok(der) = B64.decode(body) {
            out.push((label, der));
        }
        rest = after.get(end + end_marker.len()..).unwrap_or_default();
    }
    out
}

/// An elliptic-curve private key for signing.
pub struct SigningKey {
    pair: sig::EcdsaKeyPair,
    public: PublicKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public.hint())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// From PEM: SEC1 `EC PRIVATE KEY` or unencrypted PKCS#8 `PRIVATE KEY`.
    pub fn from_pem(text: &[u8]) -> Result<Self, String> {
        use pkcs8::der::{Decode, Encode};
        let blocks = pem_blocks(text);
        if blocks.iter().any(|(l, _)| l == "ENCRYPTED PRIVATE KEY") {
            return Err("encrypted private keys are not supported; decrypt it first (openssl pkey -in KEY -out PLAIN)".into());
        }
        let (sec1_der, curve_oid) =
            if let Some((_, der)) = blocks.iter().find(|(l, _)| l == "EC PRIVATE KEY") {
                let key = sec1::EcPrivateKey::from_der(der)
                    .map_err(|e| format!("not a SEC1 EC key: {e}"))?;
                let oid = key
                    .parameters
                    .and_then(|p| p.named_curve())
                    .map(|o| o.to_string())
                    .ok_or("the key names no curve")?;
                (der.clone(), oid)
            } else if let Some((_, der)) = blocks.iter().find(|(l, _)| l == "PRIVATE KEY") {
                let info = pkcs8::PrivateKeyInfo::from_der(der)
                    .map_err(|e| format!("not a PKCS#8 key: {e}"))?;
                if info.algorithm.oid.to_string() != OID_EC_PUBLIC_KEY {
                    return Err("the key is not an elliptic-curve key".into());
                }
                let oid = info
                    .algorithm
                    .parameters_oid()
                    .map(|o| o.to_string())
                    .map_err(|_| "the key names no curve".to_string())?;
                (info.private_key.to_vec(), oid)
            } else {
                return Err("no `EC PRIVATE KEY` or `PRIVATE KEY` PEM block".into());
            };
        let curve = Curve::from_oid(&curve_oid)?;
        // `ring` reads PKCS#8 v1 holding an ECPrivateKey with its public key and no parameters.
        let inner =
            sec1::EcPrivateKey::from_der(&sec1_der).map_err(|e| format!("not an EC key: {e}"))?;
        if inner.public_key.is_none() {
            return Err(
                "the private key does not include its public key; re-export it with openssl ec"
                    .into(),
            );
        }
        let stripped = sec1::EcPrivateKey {
            parameters: None,
            ..inner
        }
        .to_der()
        .map_err(|e| e.to_string())?;
        let curve_param =
            pkcs8::der::asn1::ObjectIdentifier::new(curve.oid()).map_err(|e| e.to_string())?;
        let info = pkcs8::PrivateKeyInfo {
            algorithm: pkcs8::AlgorithmIdentifierRef {
                oid: pkcs8::ObjectIdentifier::new(OID_EC_PUBLIC_KEY).map_err(|e| e.to_string())?,
                parameters: Some((&curve_param).into()),
            },
            private_key: &stripped,
            public_key: None,
        };
        let pkcs8 = info.to_der().map_err(|e| e.to_string())?;
        let rng = ring::rand::SystemRandom::new();
        let pair = sig::EcdsaKeyPair::from_pkcs8(curve.signing(), &pkcs8, &rng)
            .map_err(|e| format!("the key was refused: {e}"))?;
        let point = pair.public_key().as_ref().to_vec();
        let spki_der = spki_der(curve, &point)?;
        Ok(Self {
            pair,
            public: PublicKey {
                curve,
                point,
                spki_der,
            },
        })
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SigningError> {
        let rng = ring::rand::SystemRandom::new();
        self.pair
            .sign(&rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| SigningError::Key {
                path: String::new(),
                why: "signing failed".into(),
            })
    }
}

fn spki_der(curve: Curve, point: &[u8]) -> Result<Vec<u8>, String> {
    use pkcs8::der::Encode;
    let curve_param =
        pkcs8::der::asn1::ObjectIdentifier::new(curve.oid()).map_err(|e| e.to_string())?;
    let spki = pkcs8::spki::SubjectPublicKeyInfoRef {
        algorithm: pkcs8::AlgorithmIdentifierRef {
            oid: pkcs8::ObjectIdentifier::new(OID_EC_PUBLIC_KEY).map_err(|e| e.to_string())?,
            parameters: Some((&curve_param).into()),
        },
        subject_public_key: pkcs8::der::asn1::BitStringRef::from_bytes(point)
            .map_err(|e| e.to_string())?,
    };
    spki.to_der().map_err(|e| e.to_string())
}

/// Who signed, as established by verification.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum Signer {
    Key {
        /// SHA-256 of the public key's PEM.
        key_hint: String,
    },
    Certificate {
        subject: String,
        issuer: String,
        /// SHA-256 of each certificate's DER, signing certificate first, ending at the root.
        chain_sha256: Vec<String>,
    },
    Sigstore {
        identity: String,
        issuer: String,
        certificate_sha256: String,
        /// When Rekor logged the signature (Unix seconds).
        integrated_time: i64,
        log_index: i64,
    },
}

impl Signer {
    /// Fingerprints a revocation list can name: the key hint, or every certificate's SHA-256.
    pub fn fingerprints(&self) -> Vec<String> {
        match self {
            Self::Key { key_hint } => vec![key_hint.clone()],
            Self::Certificate { chain_sha256, .. } => chain_sha256.clone(),
            Self::Sigstore {
                certificate_sha256, ..
            } => vec![certificate_sha256.clone()],
        }
    }
}

/// How to decide who may have signed.
#[derive(Debug)]
pub enum Verifier {
    Key(PublicKey),
    /// Trusted certificates (roots, and optionally intermediates), DER.
    Certificate(Vec<Vec<u8>>),
    Sigstore(Box<sigstore::SigstoreVerifier>),
}

impl Verifier {
    /// Trusted certificates from PEM files' contents.
    pub fn certificates(pems: &[Vec<u8>]) -> Result<Self, String> {
        let certs: Vec<Vec<u8>> = pems
            .iter()
            .flat_map(|p| pem_blocks(p))
            .filter(|(l, _)| l == "CERTIFICATE")
            .map(|(_, d)| d)
            .collect();
        if certs.is_empty() {
            return Err("no certificate in the given chain file(s)".into());
        }
        Ok(Self::Certificate(certs))
    }
}

/// A statement whose signature verified, and who signed it.
#[derive(Debug, Clone)]
pub struct VerifiedStatement {
    pub manifest: Manifest,
    pub signer: Signer,
}

impl Bundle {
    pub fn parse(bytes: &[u8]) -> Result<Self, SigningError> {
        let bundle: Bundle =
            serde_json::from_slice(bytes).map_err(|e| bundle_err(e.to_string()))?;
        if !bundle
            .media_type
            .starts_with("application/vnd.dev.sigstore.bundle")
        {
            return Err(bundle_err(format!(
                "unknown media type `{}`",
                bundle.media_type
            )));
        }
        Ok(bundle)
    }

    fn envelope(&self) -> Result<(&Envelope, Vec<u8>, Vec<u8>), SigningError> {
        let env = self
            .dsse_envelope
            .as_ref()
            .ok_or_else(|| bundle_err("no DSSE envelope"))?;
        if env.payload_type != PAYLOAD_TYPE {
            return Err(bundle_err(format!(
                "payload type `{}` is not in-toto JSON",
                env.payload_type
            )));
        }
        let [signature] = env.signatures.as_slice() else {
            return Err(bundle_err(format!(
                "expected one signature, found {}",
                env.signatures.len()
            )));
        };
        let payload = B64
            .decode(&env.payload)
            .map_err(|_| bundle_err("payload is not base64"))?;
        let sig = B64
            .decode(&signature.sig)
            .map_err(|_| bundle_err("signature is not base64"))?;
        Ok((env, payload, sig))
    }
}

/// Checks the bundle's signature and who made it; returns the signed manifest.
pub fn verify_bundle(
    bundle: &Bundle,
    verifier: &Verifier,
) -> Result<VerifiedStatement, SigningError> {
    let (_, payload, signature) = bundle.envelope()?;
    let signer = match verifier {
        Verifier::Key(key) => {
            if let Some(hint) = bundle
                .verification_material
                .public_key
                .as_ref()
                .and_then(|k| k.hint.as_deref())
                && !hint.is_empty()
                && !hint.eq_ignore_ascii_case(&key.hint())
            {
                return Err(SigningError::KeyMismatch {
                    bundle: hint.to_string(),
                    given: key.hint(),
                });
            }
            let message = pae(PAYLOAD_TYPE, &payload);
            if !key.verify(&message, &signature, false)
                && !key.verify(&pae_compat(&payload), &signature, false)
            {
                return Err(SigningError::BadSignature);
            }
            Signer::Key {
                key_hint: key.hint(),
            }
        }
        Verifier::Certificate(anchors) => {
            let chain = bundle
                .verification_material
                .x509_certificate_chain
                .as_ref()
                .ok_or_else(|| {
                    bundle_err("no x509CertificateChain; was it signed with a key instead?")
                })?;
            let ders: Vec<Vec<u8>> = chain
                .certificates
                .iter()
                .map(|c| {
                    B64.decode(&c.raw_bytes)
                        .map_err(|_| bundle_err("a certificate is not base64"))
                })
                .collect::<Result<_, _>>()?;
            let (leaf_der, intermediates) = ders
                .split_first()
                .ok_or_else(|| bundle_err("empty certificate chain"))?;
            let (_, leaf) = X509Certificate::from_der(leaf_der)
                .map_err(|e| bundle_err(format!("signing certificate: {e}")))?;
            let at = leaf.validity().not_before;
            let path = build_chain(leaf_der, intermediates, anchors, at)?;
            check_code_signing(&leaf)?;
            let key = PublicKey::from_spki(leaf.public_key(), leaf.public_key().raw)
                .map_err(SigningError::Chain)?;
            let message = pae(PAYLOAD_TYPE, &payload);
            if !key.verify(&message, &signature, false)
                && !key.verify(&pae_compat(&payload), &signature, true)
            {
                return Err(SigningError::BadSignature);
            }
            Signer::Certificate {
                subject: leaf.subject().to_string(),
                issuer: leaf.issuer().to_string(),
                chain_sha256: path
                    .iter()
                    .map(|d| hex::encode(ring::digest::digest(&ring::digest::SHA256, d)))
                    .collect(),
            }
        }
        Verifier::Sigstore(v) => v.verify(bundle, &payload, &signature)?,
    };
    let statement: Value = serde_json::from_slice(&payload)
        .map_err(|e| bundle_err(format!("payload is not JSON: {e}")))?;
    let manifest = Manifest::from_statement(&statement)?;
    Ok(VerifiedStatement { manifest, signer })
}

/// Verifies a model against its signature: the bundle's signature and signer first, then the
/// files on disk, hashed the way the signature says, must be exactly the signed ones.
/// `extra_ignore` (relative to the model) adds to the paths the signature itself leaves out.
pub fn verify_model(
    model: &std::path::Path,
    bundle: &Bundle,
    verifier: &Verifier,
    extra_ignore: &[String],
    ignore_git_paths: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<VerifiedStatement, SigningError> {
    let verified = verify_bundle(bundle, verifier)?;
    let mut serialization = verified.manifest.serialization.clone();
    serialization
        .ignore_paths
        .extend(extra_ignore.iter().cloned());
    let options = crate::manifest::HashOptions {
        serialization,
        ignore_git_paths,
        threads: 0,
    };
    let actual = crate::manifest::hash_model(model, &options, progress)?;
    let differences = actual.differences(&verified.manifest);
    if !differences.is_empty() {
        return Err(SigningError::Mismatch(differences));
    }
    Ok(verified)
}

/// The leaf must be allowed to sign: key usage digitalSignature, or extended key usage
/// codeSigning (the reference verifier's rule).
fn check_code_signing(leaf: &X509Certificate<'_>) -> Result<(), SigningError> {
    let digital = leaf
        .key_usage()
        .ok()
        .flatten()
        .is_some_and(|ku| ku.value.digital_signature());
    let code = leaf
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|eku| eku.value.code_signing);
    if digital || code {
        Ok(())
    } else {
        Err(SigningError::Chain("the signing certificate is not allowed to sign (no digitalSignature key usage or codeSigning extended key usage)".into()))
    }
}

/// Builds a path from `leaf` through `intermediates` to a self-signed certificate among
/// `anchors`, every certificate valid at `at`, every issuer a CA allowed to sign certificates,
/// signatures checked at each step. Returns the path's DER, leaf first.
pub(crate) fn build_chain(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    anchors: &[Vec<u8>],
    at: ASN1Time,
) -> Result<Vec<Vec<u8>>, SigningError> {
    let chain_err = |s: String| SigningError::Chain(s);
    let mut path = vec![leaf.to_vec()];
    let mut current = leaf.to_vec();
    for depth in 0..10 {
        let (_, cert) = X509Certificate::from_der(&current)
            .map_err(|e| chain_err(format!("unparsable certificate: {e}")))?;
        if !cert.validity().is_valid_at(at) {
            return Err(chain_err(format!(
                "`{}` was not valid at {at}",
                cert.subject()
            )));
        }
        reject_unknown_critical(&cert)?;
        let is_anchor = anchors.contains(&current);
        let self_signed = cert.subject().as_raw() == cert.issuer().as_raw()
            && cert.verify_signature(None).is_ok();
        if is_anchor && self_signed {
            return Ok(path);
        }
        let candidates = intermediates.iter().chain(anchors.iter());
        let mut next = None;
        for cand in candidates {
            if *cand == current {
                continue;
            }
            let Ok((_, issuer)) = X509Certificate::from_der(cand) else {
                continue;
            };
            if issuer.subject().as_raw() != cert.issuer().as_raw() {
                continue;
            }
            if cert.verify_signature(Some(issuer.public_key())).is_err() {
                continue;
            }
            let ca = issuer
                .basic_constraints()
                .ok()
                .flatten()
                .map(|b| b.value.ca);
            // A version 1 root (no extensions) is a CA by tradition, as OpenSSL treats it.
            let v1_anchor = issuer.version() == X509Version::V1 && anchors.contains(cand);
            if ca != Some(true) && !v1_anchor {
                return Err(chain_err(format!(
                    "`{}` signed `{}` but is not a CA",
                    issuer.subject(),
                    cert.subject()
                )));
            }
            if let Some(ku) = issuer.key_usage().ok().flatten()
                && !ku.value.key_cert_sign()
            {
                return Err(chain_err(format!(
                    "`{}` may not sign certificates (key usage)",
                    issuer.subject()
                )));
            }
            if let Some(limit) = issuer
                .basic_constraints()
                .ok()
                .flatten()
                .and_then(|b| b.value.path_len_constraint)
                && depth > limit as usize
            {
                return Err(chain_err(format!(
                    "`{}` allows {limit} intermediate CAs below it",
                    issuer.subject()
                )));
            }
            next = Some(cand.clone());
            break;
        }
        let Some(next) = next else {
            return Err(chain_err(format!(
                "no trusted issuer for `{}` (issuer `{}`); pass the root that issued it with --certificate-chain",
                cert.subject(),
                cert.issuer()
            )));
        };
        path.push(next.clone());
        current = next;
    }
    Err(chain_err("the chain is longer than 10 certificates".into()))
}

fn reject_unknown_critical(cert: &X509Certificate<'_>) -> Result<(), SigningError> {
    for ext in cert.extensions() {
        if ext.critical
            && matches!(
                ext.parsed_extension(),
                ParsedExtension::UnsupportedExtension { .. } | ParsedExtension::ParseError { .. }
            )
        {
            return Err(SigningError::Chain(format!(
                "`{}` has an unknown critical extension {}",
                cert.subject(),
                ext.oid.to_id_string()
            )));
        }
    }
    Ok(())
}

/// Signs a manifest with a key; the bundle names the key by its hint.
pub fn sign_with_key(manifest: &Manifest, key: &SigningKey) -> Result<Bundle, SigningError> {
    let material = VerificationMaterial {
        public_key: Some(PublicKeyIdentifier {
            hint: Some(key.public_key().hint()),
            raw_bytes: None,
        }),
        ..VerificationMaterial::default()
    };
    sign(manifest, key, material)
}

/// Signs a manifest with a key whose certificate (and chain up to, not including, the root)
/// goes into the bundle.
pub fn sign_with_certificate(
    manifest: &Manifest,
    key: &SigningKey,
    certificate_pem: &[u8],
    chain_pems: &[Vec<u8>],
) -> Result<Bundle, SigningError> {
    let leaf = pem_block(certificate_pem, &["CERTIFICATE"]).ok_or_else(|| SigningError::Key {
        path: String::new(),
        why: "no certificate in the signing certificate file".into(),
    })?;
    let (_, cert) = X509Certificate::from_der(&leaf)
        .map_err(|e| SigningError::Chain(format!("signing certificate: {e}")))?;
    if cert.public_key().raw != key.public_key().spki_der.as_slice()
        && cert.public_key().subject_public_key.data.as_ref() != key.public_key().point.as_slice()
    {
        return Err(SigningError::Chain(
            "the signing certificate is for another key than the private key given".into(),
        ));
    }
    check_code_signing(&cert)?;
    let mut certificates = vec![RawBytes {
        raw_bytes: B64.encode(&leaf),
    }];
    for pem in chain_pems {
        for (label, der) in pem_blocks(pem) {
            if label == "CERTIFICATE" {
                certificates.push(RawBytes {
                    raw_bytes: B64.encode(der),
                });
            }
        }
    }
    let material = VerificationMaterial {
        x509_certificate_chain: Some(CertificateChain { certificates }),
        ..VerificationMaterial::default()
    };
    sign(manifest, key, material)
}

fn sign(
    manifest: &Manifest,
    key: &SigningKey,
    material: VerificationMaterial,
) -> Result<Bundle, SigningError> {
    let payload = serde_json::to_vec_pretty(&manifest.to_statement())
        .map_err(|e| bundle_err(e.to_string()))?;
    let signature = key.sign(&pae(PAYLOAD_TYPE, &payload))?;
    Ok(Bundle {
        media_type: BUNDLE_MEDIA_TYPE.into(),
        verification_material: material,
        dsse_envelope: Some(Envelope {
            payload: B64.encode(&payload),
            payload_type: PAYLOAD_TYPE.into(),
            signatures: vec![EnvelopeSignature {
                sig: B64.encode(signature),
                keyid: Some(String::new()),
            }],
        }),
    })
}

#[cfg(test)]
mod tests;
