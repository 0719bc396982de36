//! Pseudonymisation of principal identifiers in audit records.
//!
//! A keyed hash (HMAC-SHA-256) replaces the identifier of the configured principal kinds
//! (typically `user`), so the log still links every action of one person — enough to
//! investigate, count and alert — without holding who that person is. Unlike a plain hash, the
//! pseudonym cannot be reversed by hashing a list of known names unless one holds the key; the
//! key holder (a data-protection officer, say) can compute the pseudonym of a named person to
//! find their records.

use ring::hmac;

/// Marks an identifier as a pseudonym, so nobody mistakes it for a real id.
const PREFIX: char = '~';

/// Replaces identifiers of chosen principal kinds with keyed hashes.
#[derive(Debug)]
pub struct Pseudonymiser {
    key: hmac::Key,
    kinds: Vec<String>,
}

impl Pseudonymiser {
    /// `secret` should be at least 32 random bytes; `kinds` are principal kinds (`user`, …).
    pub fn new(secret: &[u8], kinds: Vec<String>) -> Self {
        Pseudonymiser {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            kinds,
        }
    }

    /// `kind:id` → `kind:~<hex>` when `kind` is pseudonymised; anything else is returned as is.
    pub fn apply(&self, reference: &str) -> String {
        match reference.split_once(':') {
            Some((kind, id)) if self.kinds.iter().any(|k| k == kind) && !id.starts_with(PREFIX) => {
                let tag = hmac::sign(&self.key, reference.as_bytes());
                let short = tag.as_ref().get(..12).unwrap_or_default();
                format!("{kind}:{PREFIX}{}", hex::encode(short))
            }
            _ => reference.to_string(),
        }
    }

    /// Pseudonymises every principal a record names: the principal, its delegation chain and the
    /// subject of a credential it issued or revoked.
    pub fn apply_record(&self, record: &mut ztai_core::AuditRecord) {
        record.principal = self.apply(&record.principal);
        for c in &mut record.chain {
            *c = self.apply(c);
        }
        if let Some(c) = record.credential.as_mut() {
            c.subject = self.apply(&c.subject);
        }
    }

    /// The kinds a data directory pseudonymises, as a gateway stored them (`meta` key
    /// `audit.pseudonymise`), so offline commands record the way the gateway does.
    pub fn for_data_dir(
        store: &dyn ztai_store::MetaStore,
        data_dir: &std::path::Path,
    ) -> Result<Option<Self>, crate::AuditError> {
        let kinds: Vec<String> = store
            .meta_get(META_KEY)
            .map_err(|e| crate::AuditError::Read(e.to_string()))?
            .unwrap_or_default()
            .split(',')
            .filter(|k| !k.is_empty())
            .map(String::from)
            .collect();
        if kinds.is_empty() {
            return Ok(None);
        }
        let key = crate::keyfile::load_or_create_pseudonym_key(data_dir)?;
        Ok(Some(Pseudonymiser::new(&key, kinds)))
    }
}

/// The `meta` key under which a gateway stores the principal kinds it pseudonymises.
pub const META_KEY: &str = "audit.pseudonymise";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_kinds_get_stable_keyed_pseudonyms() {
        let p = Pseudonymiser::new(&[7u8; 32], vec!["user".into()]);
        let a = p.apply("user:alice@example.com");
        assert!(
            a.starts_with("user:~") && a.len() == "user:~".len() + 24,
            "{a}"
        );
        assert!(!a.contains("alice"));
        assert_eq!(
            p.apply("user:alice@example.com"),
            a,
            "stable, so records link"
        );
        assert_ne!(p.apply("user:bob"), a);
        assert_eq!(
            p.apply("agent:planner"),
            "agent:planner",
            "other kinds stay"
        );
        assert_eq!(p.apply("anonymous"), "anonymous");
        assert_eq!(p.apply(&a), a, "never pseudonymised twice");
        // Another key gives other pseudonyms: without the key a name list does not reverse them.
        let q = Pseudonymiser::new(&[8u8; 32], vec!["user".into()]);
        assert_ne!(q.apply("user:alice@example.com"), a);
    }
}
