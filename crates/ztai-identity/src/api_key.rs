//! API keys: random, shown once, stored only as a SHA-256 hash, compared in constant time.
//!
//! A key looks like `ztai_<key id>_<secret>`. The key id is public (it names the key in logs, the
//! audit trail and revocation); the secret is 256 random bits. Because the secret has full entropy a
//! single SHA-256 is enough to make the stored hash useless to a thief — a slow password hash would
//! only cost request latency.

use crate::AuthError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use subtle::ConstantTimeEq;
use ztai_core::{Principal, PrincipalKind};

const PREFIX: &str = "ztai_";
const KEY_ID_HEX_LEN: usize = 16;
const SECRET_LEN: usize = 43; // 32 bytes, base64url without padding

/// A freshly generated key. `secret` is the full key text and must be shown to its owner once and
/// then dropped; only `secret_hash` is stored.
#[derive(Debug)]
pub struct GeneratedKey {
    pub key_id: String,
    pub full_key: String,
    pub secret_hash: [u8; 32],
}

/// Generates a new API key from the operating system's CSPRNG.
pub fn generate_key() -> GeneratedKey {
    let mut rng = rand::rng();
    let mut id = [0u8; KEY_ID_HEX_LEN / 2];
    rng.fill_bytes(&mut id);
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let key_id = hex::encode(id);
    let secret_text = URL_SAFE_NO_PAD.encode(secret);
    GeneratedKey {
        full_key: format!("{PREFIX}{key_id}_{secret_text}"),
        secret_hash: hash_secret(&secret_text),
        key_id,
    }
}

/// SHA-256 of the secret part of a key.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Splits `ztai_<id>_<secret>` without allocating; `None` when the shape is wrong.
fn split_key(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let id_ok = id.len() == KEY_ID_HEX_LEN && id.bytes().all(|b| b.is_ascii_hexdigit());
    let secret_ok = secret.len() == SECRET_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (id_ok && secret_ok).then_some((id, secret))
}

/// What the registry knows of one key.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub secret_hash: [u8; 32],
    pub principal_kind: PrincipalKind,
    pub principal_id: String,
    pub groups: Vec<String>,
    pub revoked: bool,
}

/// The keys a gateway accepts, indexed by key id.
#[derive(Debug, Clone, Default)]
pub struct ApiKeyRegistry {
    keys: HashMap<String, KeyEntry>,
}

impl ApiKeyRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, key_id: String, entry: KeyEntry) {
        self.keys.insert(key_id, entry);
    }

    /// Marks a key revoked; returns whether the key was known.
    pub fn revoke(&mut self, key_id: &str) -> bool {
        match self.keys.get_mut(key_id) {
            Some(k) => {
                k.revoked = true;
                true
            }
            None => false,
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies a presented key and returns the principal it stands for.
    pub fn authenticate(&self, presented: &str) -> Result<Principal, AuthError> {
        let (key_id, secret) = split_key(presented.trim()).ok_or(AuthError::Malformed)?;
        let entry = self.keys.get(key_id).ok_or(AuthError::Invalid)?;
        let presented_hash = hash_secret(secret);
        // Constant-time so response timing does not reveal how much of a guessed hash matched.
        if !bool::from(presented_hash.ct_eq(&entry.secret_hash)) {
            return Err(AuthError::Invalid);
        }
        if entry.revoked {
            return Err(AuthError::Revoked(key_id.to_string()));
        }
        Ok(Principal {
            kind: entry.principal_kind,
            id: entry.principal_id.clone(),
            groups: entry.groups.clone(),
            on_behalf_of: Vec::new(),
            credential_id: format!("api_key:{key_id}"),
            device_posture: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry_with(key: &GeneratedKey) -> ApiKeyRegistry {
        let mut r = ApiKeyRegistry::new();
        r.insert(
            key.key_id.clone(),
            KeyEntry {
                secret_hash: key.secret_hash,
                principal_kind: PrincipalKind::User,
                principal_id: "alice".into(),
                groups: vec!["staff".into()],
                revoked: false,
            },
        );
        r
    }

    #[test]
    fn a_generated_key_authenticates_as_its_principal() {
        let k = generate_key();
        let r = registry_with(&k);
        let p = r.authenticate(&k.full_key).unwrap();
        assert_eq!(p.id, "alice");
        assert_eq!(p.kind, PrincipalKind::User);
        assert_eq!(p.credential_id, format!("api_key:{}", k.key_id));
    }

    #[test]
    fn keys_are_unique_and_well_formed() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a.full_key, b.full_key);
        assert!(split_key(&a.full_key).is_some());
    }

    #[test]
    fn a_wrong_secret_for_a_known_id_is_refused() {
        let k = generate_key();
        let r = registry_with(&k);
        let other = generate_key();
        let other_secret = &other.full_key["ztai_".len() + KEY_ID_HEX_LEN + 1..];
        let forged = format!("ztai_{}_{}", k.key_id, other_secret);
        assert_eq!(r.authenticate(&forged), Err(AuthError::Invalid));
    }

    #[test]
    fn unknown_ids_malformed_keys_and_revoked_keys_are_refused() {
        let k = generate_key();
        let mut r = registry_with(&k);
        assert_eq!(
            r.authenticate(&generate_key().full_key),
            Err(AuthError::Invalid)
        );
        for bad in [
            "",
            "ztai_",
            "sk-abc",
            "ztai_zz_zz",
            &k.full_key[..k.full_key.len() - 1],
        ] {
            assert_eq!(r.authenticate(bad), Err(AuthError::Malformed), "{bad:?}");
        }
        assert!(r.revoke(&k.key_id));
        assert!(matches!(
            r.authenticate(&k.full_key),
            Err(AuthError::Revoked(_))
        ));
        assert!(!r.revoke("0000000000000000"));
    }

    #[test]
    fn error_messages_never_echo_the_key() {
        let k = generate_key();
        let r = ApiKeyRegistry::new();
        let e = r.authenticate(&k.full_key).unwrap_err().to_string();
        assert!(!e.contains(&k.full_key[10..]));
    }
}
