//! An approver's signing key on disk.
//!
//! The file names the approver the key belongs to as well as holding the key, because the
//! approver's name is part of every verifier key (and so of what a registered key vouches for):
//! a key made for `user:carol` can only ever sign as `user:carol`. The key is an Ed25519 PKCS#8
//! document, written readable only by its owner; the verifier key goes to a `.pub` file beside
//! it for an administrator to register.
//!
//! ```text
//! ztai-approver-key/v1
//! name user:carol
//! pkcs8 <hex>
//! ```

use anyhow::Context;
use std::path::{Path, PathBuf};
use ztai_audit::checkpoint::CheckpointSigner;

const HEADER: &str = "ztai-approver-key/v1";
/// Bigger files are not key files.
const MAX_FILE_BYTES: u64 = 4096;

/// A loaded approver key: who it signs as, and the signer.
#[derive(Debug)]
pub struct ApproverKey {
    pub name: String,
    pub signer: CheckpointSigner,
}

/// The verifier-key file written beside `key`.
pub fn public_path(key: &Path) -> PathBuf {
    let mut p = key.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

/// Makes a new key for `name` and writes it to `path` (refusing to overwrite) with its `.pub`.
pub fn generate(name: &str, path: &Path) -> anyhow::Result<ApproverKey> {
    let (pkcs8, signer) = CheckpointSigner::generate(name)
        .map_err(|e| anyhow::anyhow!("cannot make a key named `{name}`: {e}"))?;
    let text = format!("{HEADER}\nname {name}\npkcs8 {}\n", hex::encode(&pkcs8));
    ztai_audit::keyfile::create_private(path, text.as_bytes()).with_context(|| {
        format!(
            "cannot create `{}` (it must not exist yet; a key is never overwritten)",
            path.display()
        )
    })?;
    let public = public_path(path);
    std::fs::write(&public, format!("{}\n", signer.verifier_key()))
        .with_context(|| format!("cannot write `{}`", public.display()))?;
    Ok(ApproverKey {
        name: name.to_string(),
        signer,
    })
}

/// Reads a key file written by `generate`.
pub fn load(path: &Path) -> anyhow::Result<ApproverKey> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read the approver key `{}`", path.display()))?
        .len();
    if size > MAX_FILE_BYTES {
        anyhow::bail!(
            "`{}` is {size} bytes, too big for an approver key file",
            path.display()
        );
    }
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the approver key `{}`", path.display()))?;
    parse(&bytes).with_context(|| {
        format!(
            "`{}` is not an approver key file (make one with `ztai approvals keygen`)",
            path.display()
        )
    })
}

fn parse(bytes: &[u8]) -> anyhow::Result<ApproverKey> {
    let text = std::str::from_utf8(bytes).context("it is not UTF-8 text")?;
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        anyhow::bail!("its first line is not `{HEADER}`");
    }
    let name = lines
        .next()
        .and_then(|l| l.strip_prefix("name "))
        .context("its second line is not `name <approver>`")?;
    let pkcs8 = lines
        .next()
        .and_then(|l| l.strip_prefix("pkcs8 "))
        .context("its third line is not `pkcs8 <hex>`")?;
    if lines.any(|l| !l.trim().is_empty()) {
        anyhow::bail!("it has lines after the key");
    }
    let der = hex::decode(pkcs8.trim()).context("the key is not hex")?;
    let signer = CheckpointSigner::from_pkcs8(name, &der).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(ApproverKey {
        name: name.to_string(),
        signer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ztai_audit::checkpoint::CheckpointVerifier;

    #[test]
    fn a_generated_key_loads_signs_as_its_approver_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("carol.key");
        let made = generate("user:carol", &path).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded.name, "user:carol");
        assert_eq!(loaded.signer.verifier_key(), made.signer.verifier_key());
        let public = std::fs::read_to_string(public_path(&path)).unwrap();
        let v = CheckpointVerifier::parse(&public).unwrap();
        assert_eq!(v.name(), "user:carol");
        assert_eq!(
            v.verify_note(&loaded.signer.sign_note("x\n")).unwrap(),
            "x\n"
        );
        assert!(generate("user:carol", &path).is_err(), "overwrote a key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is readable by others");
        }
    }

    #[test]
    fn malformed_key_files_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.key");
        generate("user:carol", &good).unwrap();
        let text = std::fs::read_to_string(&good).unwrap();
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            vec![0xff, 0xfe, 0x00],
            b"ztai-approver-key/v2\nname user:carol\npkcs8 00aa\n".to_vec(),
            b"ztai-approver-key/v1\npkcs8 00aa\n".to_vec(),
            b"ztai-approver-key/v1\nname user:carol\npkcs8 zz\n".to_vec(),
            b"ztai-approver-key/v1\nname user:carol\npkcs8 00aa\n".to_vec(),
            b"ztai-approver-key/v1\nname has space\npkcs8 00aa\n".to_vec(),
            format!("{text}extra\n").into_bytes(),
        ];
        for bytes in cases {
            assert!(
                parse(&bytes).is_err(),
                "{:?}",
                String::from_utf8_lossy(&bytes)
            );
        }
        let big = dir.path().join("big.key");
        std::fs::write(&big, vec![b'a'; 10_000]).unwrap();
        assert!(load(&big).unwrap_err().to_string().contains("too big"));
        assert!(load(&dir.path().join("missing.key")).is_err());
    }
}
