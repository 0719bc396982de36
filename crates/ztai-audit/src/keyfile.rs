//! The checkpoint signing key on disk: created on first start, readable only by its owner,
//! with its verifier key written beside it for operators to copy and pin elsewhere.

use crate::AuditError;
use crate::checkpoint::CheckpointSigner;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The private key file (PKCS#8) in a data directory.
pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("audit-checkpoint.key")
}

/// The verifier key file (`name+id+key`) in a data directory.
pub fn verifier_path(data_dir: &Path) -> PathBuf {
    data_dir.join("audit-checkpoint.pub")
}

/// The pseudonymisation key file in a data directory.
pub fn pseudonym_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("audit-pseudonym.key")
}

/// Creates `path` holding `bytes`, readable only by its owner; fails if it exists.
pub fn create_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Loads the data directory's pseudonymisation secret (32 random bytes), creating it if absent.
pub fn load_or_create_pseudonym_key(data_dir: &Path) -> Result<Vec<u8>, AuditError> {
    let path = pseudonym_key_path(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() >= 32 => Ok(bytes),
        Ok(_) => Err(AuditError::Open(format!(
            "the pseudonymisation key `{}` is shorter than 32 bytes; restore it from backup",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = vec![0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
                .map_err(|_| AuditError::Open("cannot draw a random key".into()))?;
            create_private(&path, &secret).map_err(|e| {
                AuditError::Open(format!("cannot create `{}`: {e}", path.display()))
            })?;
            Ok(secret)
        }
        Err(e) => Err(AuditError::Open(format!(
            "cannot read `{}`: {e}",
            path.display()
        ))),
    }
}

/// Loads the data directory's signing key, creating it (and its verifier key file) if absent.
pub fn load_or_create_signer(data_dir: &Path, name: &str) -> Result<CheckpointSigner, AuditError> {
    let path = key_path(data_dir);
    let open = |what: &str, e: std::io::Error| {
        AuditError::Open(format!("{what} `{}`: {e}", path.display()))
    };
    let signer = match std::fs::read(&path) {
        Ok(bytes) => CheckpointSigner::from_pkcs8(name, &bytes).map_err(|e| {
            AuditError::Open(format!(
                "the checkpoint key `{}` is unusable ({e}); restore it from backup, or move it away to start a new key",
                path.display()
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (pkcs8, signer) = CheckpointSigner::generate(name)
                .map_err(|e| AuditError::Open(e.to_string()))?;
            create_private(&path, &pkcs8)
                .map_err(|e| open("cannot create the checkpoint key", e))?;
            signer
        }
        Err(e) => return Err(open("cannot read the checkpoint key", e)),
    };
    std::fs::write(
        verifier_path(data_dir),
        format!("{}\n", signer.verifier_key()),
    )
    .map_err(|e| {
        AuditError::Open(format!(
            "cannot write the verifier key `{}`: {e}",
            verifier_path(data_dir).display()
        ))
    })?;
    Ok(signer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_signer(dir.path(), "ztai-t").unwrap();
        let b = load_or_create_signer(dir.path(), "ztai-t").unwrap();
        assert_eq!(a.verifier_key(), b.verifier_key());
        let published = std::fs::read_to_string(verifier_path(dir.path())).unwrap();
        assert_eq!(published.trim(), a.verifier_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key_path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let secret = load_or_create_pseudonym_key(dir.path()).unwrap();
        assert_eq!(secret.len(), 32);
        assert_eq!(load_or_create_pseudonym_key(dir.path()).unwrap(), secret);
        std::fs::write(key_path(dir.path()), b"garbage").unwrap();
        let err = load_or_create_signer(dir.path(), "ztai-t").unwrap_err();
        assert!(err.to_string().contains("unusable"), "{err}");
    }
}
