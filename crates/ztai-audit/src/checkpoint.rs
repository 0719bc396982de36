//! Signed checkpoints: Ed25519-signed tree heads in the C2SP `tlog-checkpoint` / `signed-note`
//! text formats.
//!
//! A checkpoint commits to the whole log up to a size: origin line, size, base64 root, then
//! extension lines (we add the time), a blank line and one signature line per signer. Using the
//! published formats means a checkpoint saved by a SIEM or an auditor can be checked with any
//! signed-note verifier, and an operator can pin our verifier key like any transparency log's.
//! Pure: keys come in as bytes; reading and writing key files is the caller's business.

use crate::merkle::Hash;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

/// Ed25519's algorithm byte in signed-note key ids and verifier keys.
const ALG_ED25519: u8 = 1;

/// Why a checkpoint or a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("the checkpoint text is malformed: {0}")]
    Malformed(String),
    #[error(
        "the checkpoint carries no signature by key `{0}`; it was not signed by the configured key"
    )]
    NotSigned(String),
    #[error(
        "the checkpoint's signature by `{0}` does not verify: the checkpoint was altered or forged"
    )]
    BadSignature(String),
    #[error("the key is not usable: {0}")]
    Key(String),
}

/// A tree head: the log `origin` had `size` records with Merkle root `root` at `time`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// RFC 3339, UTC.
    pub time: String,
}

impl Checkpoint {
    /// The note body that is signed: origin, size, root, extension lines; each line ends in `\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\ntime {}\n",
            self.origin,
            self.size,
            B64.encode(self.root),
            self.time
        )
    }

    fn parse_body(body: &str) -> Result<Self, CheckpointError> {
        let bad = |m: &str| CheckpointError::Malformed(m.to_string());
        let mut lines = body.lines();
        let origin = lines
            .next()
            .filter(|l| !l.is_empty())
            .ok_or_else(|| bad("no origin line"))?;
        let size = lines
            .next()
            .and_then(|l| l.parse::<u64>().ok())
            .ok_or_else(|| bad("the second line must be the tree size"))?;
        let root: Hash = lines
            .next()
            .and_then(|l| B64.decode(l).ok())
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("the third line must be a base64 SHA-256 root"))?;
        let time = lines
            .find_map(|l| l.strip_prefix("time "))
            .unwrap_or_default()
            .to_string();
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            time,
        })
    }
}

/// Signs checkpoints with an Ed25519 key.
#[derive(Debug)]
pub struct CheckpointSigner {
    name: String,
    key: Ed25519KeyPair,
    key_id: [u8; 4],
}

fn key_id(name: &str, public: &[u8]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    h.finalize().first_chunk::<4>().copied().unwrap_or_default()
}

fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

impl CheckpointSigner {
    /// A new random key, as PKCS#8 bytes to keep (secret) and the signer using it.
    pub fn generate(name: &str) -> Result<(Vec<u8>, Self), CheckpointError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| CheckpointError::Key("cannot generate an Ed25519 key".into()))?;
        let signer = Self::from_pkcs8(name, pkcs8.as_ref())?;
        Ok((pkcs8.as_ref().to_vec(), signer))
    }

    /// A signer from a PKCS#8 Ed25519 key.
    pub fn from_pkcs8(name: &str, pkcs8: &[u8]) -> Result<Self, CheckpointError> {
        if !valid_key_name(name) {
            return Err(CheckpointError::Key(format!(
                "key name `{name}` must be non-empty, without spaces or `+`"
            )));
        }
        let key = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8)
            .map_err(|e| CheckpointError::Key(format!("not a PKCS#8 Ed25519 private key ({e})")))?;
        let key_id = key_id(name, key.public_key().as_ref());
        Ok(CheckpointSigner {
            name: name.to_string(),
            key,
            key_id,
        })
    }

    /// `name+keyid`: names the key without its material, e.g. in a registry.
    pub fn key_ref(&self) -> String {
        format!("{}+{}", self.name, hex::encode(self.key_id))
    }

    /// The verifier key to publish and pin: `name+keyid+base64(alg ‖ public key)`.
    pub fn verifier_key(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.public_key().as_ref());
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            B64.encode(raw)
        )
    }

    /// The signed note for `checkpoint`.
    pub fn sign(&self, checkpoint: &Checkpoint) -> String {
        self.sign_note(&checkpoint.body())
    }

    /// A signed note over any statement with the same key, e.g. an approval decision. `body`
    /// must be newline-terminated lines with no blank line; its first line should name what it
    /// is. A statement cannot pass as a checkpoint (checkpoint bodies need a tree size on their
    /// second line and a root hash on their third).
    pub fn sign_note(&self, body: &str) -> String {
        format!("{body}\n{}", self.signature_line(body))
    }

    /// Adds this key's signature to a note another key signed (a countersignature): the body
    /// and the signatures already there are kept byte for byte. It does not check them; verify
    /// the note first when countersigning means vouching for it.
    pub fn cosign(&self, note: &str) -> Result<String, CheckpointError> {
        let (body, sigs) = note.split_once("\n\n").ok_or_else(|| {
            CheckpointError::Malformed("no blank line before the signatures".into())
        })?;
        if sigs.is_empty() || !sigs.ends_with('\n') {
            return Err(CheckpointError::Malformed(
                "a signed note ends with newline-terminated signature lines".into(),
            ));
        }
        let body = format!("{body}\n");
        let line = self.signature_line(&body);
        Ok(format!("{body}\n{sigs}{line}"))
    }

    fn signature_line(&self, body: &str) -> String {
        let sig = self.key.sign(body.as_bytes());
        let mut blob = self.key_id.to_vec();
        blob.extend_from_slice(sig.as_ref());
        format!("\u{2014} {} {}\n", self.name, B64.encode(blob))
    }
}

/// Checks checkpoints against one pinned verifier key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointVerifier {
    name: String,
    key_id: [u8; 4],
    public: Vec<u8>,
}

impl CheckpointVerifier {
    /// Parses a verifier key `name+keyid+base64(alg ‖ public key)`.
    pub fn parse(vkey: &str) -> Result<Self, CheckpointError> {
        let bad = |m: &str| CheckpointError::Key(format!("verifier key: {m}"));
        let mut parts = vkey.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected `name+keyid+key`"));
        };
        if !valid_key_name(name) {
            return Err(bad("the name is empty or has spaces"));
        }
        let id: [u8; 4] = hex::decode(id)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| bad("the key id must be 8 hex digits"))?;
        let raw = B64.decode(key).map_err(|_| bad("the key is not base64"))?;
        let Some((&ALG_ED25519, public)) = raw.split_first() else {
            return Err(bad("only Ed25519 keys (algorithm 1) are supported"));
        };
        if public.len() != 32 {
            return Err(bad("an Ed25519 public key has 32 bytes"));
        }
        if key_id(name, public) != id {
            return Err(bad("the key id does not match the name and key"));
        }
        Ok(CheckpointVerifier {
            name: name.to_string(),
            key_id: id,
            public: public.to_vec(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `name+keyid`, as `CheckpointSigner::key_ref` gives it for the same key.
    pub fn key_ref(&self) -> String {
        format!("{}+{}", self.name, hex::encode(self.key_id))
    }

    /// Verifies a signed note and returns the checkpoint it carries.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        Checkpoint::parse_body(&self.verify_note(note)?)
    }

    /// Verifies a signed note made by `sign_note` and returns its body.
    pub fn verify_note(&self, note: &str) -> Result<String, CheckpointError> {
        let (body, sigs) = note.split_once("\n\n").ok_or_else(|| {
            CheckpointError::Malformed("no blank line before the signatures".into())
        })?;
        let body = format!("{body}\n");
        let mut ours = None;
        for line in sigs.lines().filter(|l| !l.is_empty()) {
            let rest = line.strip_prefix("\u{2014} ").ok_or_else(|| {
                CheckpointError::Malformed("a signature line must start with `— `".into())
            })?;
            let Some((name, sig)) = rest.split_once(' ') else {
                return Err(CheckpointError::Malformed(
                    "a signature line needs a name and a signature".into(),
                ));
            };
            let blob = B64
                .decode(sig)
                .map_err(|_| CheckpointError::Malformed("a signature is not base64".into()))?;
            if name == self.name && blob.get(..4) == Some(&self.key_id[..]) {
                ours = Some(blob);
            }
        }
        let blob = ours.ok_or_else(|| CheckpointError::NotSigned(self.name.clone()))?;
        let sig = blob.get(4..).unwrap_or_default();
        UnparsedPublicKey::new(&ED25519, &self.public)
            .verify(body.as_bytes(), sig)
            .map_err(|_| CheckpointError::BadSignature(self.name.clone()))?;
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "ztai-audit/test".into(),
            size: 42,
            root: [7u8; 32],
            time: "2026-11-22T00:00:00Z".into(),
        }
    }

    #[test]
    fn signed_checkpoints_verify_and_round_trip() {
        let (pkcs8, signer) = CheckpointSigner::generate("ztai-test").unwrap();
        let note = signer.sign(&checkpoint());
        assert!(note.starts_with("ztai-audit/test\n42\n"));
        let verifier = CheckpointVerifier::parse(&signer.verifier_key()).unwrap();
        assert_eq!(verifier.verify(&note).unwrap(), checkpoint());
        // The same key loaded again signs verifiably.
        let again = CheckpointSigner::from_pkcs8("ztai-test", &pkcs8).unwrap();
        assert_eq!(again.verifier_key(), signer.verifier_key());
    }

    #[test]
    fn altered_forged_or_foreign_checkpoints_are_refused() {
        let (_, signer) = CheckpointSigner::generate("ztai-test").unwrap();
        let verifier = CheckpointVerifier::parse(&signer.verifier_key()).unwrap();
        let note = signer.sign(&checkpoint());
        // A changed size.
        let altered = note.replacen("\n42\n", "\n41\n", 1);
        assert_eq!(
            verifier.verify(&altered),
            Err(CheckpointError::BadSignature("ztai-test".into()))
        );
        // Signed by another key under the same name.
        let (_, other) = CheckpointSigner::generate("ztai-test").unwrap();
        assert!(matches!(
            verifier.verify(&other.sign(&checkpoint())),
            Err(CheckpointError::NotSigned(_))
        ));
        // Garbage.
        for junk in ["", "x", "a\n\nb", "o\n1\nzz\n\n\u{2014} ztai-test AAAA\n"] {
            assert!(verifier.verify(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn statements_are_signed_and_never_pass_as_checkpoints() {
        let (_, signer) = CheckpointSigner::generate("ztai-test").unwrap();
        let verifier = CheckpointVerifier::parse(&signer.verifier_key()).unwrap();
        let body = "ztai-approval-decision/v1\napproval apr_1\ndecision approved\n";
        let note = signer.sign_note(body);
        assert_eq!(verifier.verify_note(&note).unwrap(), body);
        assert!(
            verifier.verify(&note).is_err(),
            "a statement is not a checkpoint"
        );
        let altered = note.replacen("approved", "denied", 1);
        assert_eq!(
            verifier.verify_note(&altered),
            Err(CheckpointError::BadSignature("ztai-test".into()))
        );
    }

    #[test]
    fn a_countersigned_note_verifies_under_both_keys_and_neither_can_be_altered() {
        let (_, approver) = CheckpointSigner::generate("user:carol").unwrap();
        let (_, gateway) = CheckpointSigner::generate("ztai-gateway").unwrap();
        let body = "ztai-approval-decision/v1\napproval apr_1\ndecision approved\n";
        let note = gateway.cosign(&approver.sign_note(body)).unwrap();
        assert_eq!(note.matches("\n\u{2014} ").count(), 2, "{note}");
        for signer in [&approver, &gateway] {
            let v = CheckpointVerifier::parse(&signer.verifier_key()).unwrap();
            assert_eq!(v.key_ref(), signer.key_ref());
            assert!(
                signer
                    .verifier_key()
                    .starts_with(&format!("{}+", v.key_ref()))
            );
            assert_eq!(v.verify_note(&note).unwrap(), body);
            assert!(
                v.verify_note(&note.replacen("approved", "denied", 1))
                    .is_err()
            );
        }
        // Dropping the approver's line leaves a note the approver's key does not verify.
        let approver_v = CheckpointVerifier::parse(&approver.verifier_key()).unwrap();
        let gateway_only = gateway.sign_note(body);
        assert!(matches!(
            approver_v.verify_note(&gateway_only),
            Err(CheckpointError::NotSigned(_))
        ));
        for junk in ["", "body only\n", "a\n\n", "a\n\n\u{2014} x y"] {
            assert!(gateway.cosign(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn malformed_verifier_keys_are_refused() {
        let (_, signer) = CheckpointSigner::generate("ztai-test").unwrap();
        let good = signer.verifier_key();
        assert!(CheckpointVerifier::parse(&good).is_ok());
        let wrong_id = good.replacen('+', "+0", 1);
        for bad in ["", "a+b", "name+0000000+AQ==", wrong_id.as_str()] {
            assert!(CheckpointVerifier::parse(bad).is_err(), "{bad}");
        }
        assert!(CheckpointSigner::from_pkcs8("has space", b"x").is_err());
        assert!(CheckpointSigner::from_pkcs8("ok", b"not a key").is_err());
    }
}
