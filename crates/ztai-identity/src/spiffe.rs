//! Services and models by mTLS: SPIFFE IDs read from client certificates and mapped to principals.
//!
//! The TLS layer (rustls, in the gateway) has already verified the certificate chain against the
//! configured trust bundle and its validity period; what is left is identity. An X.509-SVID carries
//! exactly one URI SAN, `spiffe://<trust domain>/<path>`; it is parsed strictly (the SPIFFE ID
//! grammar: lowercase trust domain, no empty, `.` or `..` segments, no query, fragment or port),
//! its trust domain must be one this gateway trusts — a CA that signs for several domains must not
//! let one domain speak for another — and a configured rule turns it into a principal.

use sha2::{Digest, Sha256};
use ztai_core::{Principal, PrincipalKind};

/// Why a client certificate does not name a principal. Safe to return to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeError {
    #[error("the client certificate cannot be parsed: {0}")]
    Certificate(String),
    #[error(
        "the client certificate must carry exactly one URI SAN with a SPIFFE ID; it carries {0}"
    )]
    UriCount(usize),
    #[error("`{0}` is not a valid SPIFFE ID: {1}")]
    Invalid(String, &'static str),
    #[error(
        "the client certificate's SPIFFE ID `{0}` is from trust domain `{1}`, which this gateway does not trust"
    )]
    ForeignTrustDomain(String, String),
    #[error("no `[[identity.spiffe.rules]]` entry maps the SPIFFE ID `{0}` to a principal")]
    Unmapped(String),
}

/// A parsed SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    trust_domain: String,
    /// Starts with `/`, or is empty for the trust domain's own ID.
    path: String,
}

impl SpiffeId {
    pub fn parse(text: &str) -> Result<Self, SpiffeError> {
        let bad = |why| SpiffeError::Invalid(text.chars().take(256).collect(), why);
        if text.len() > 2048 {
            return Err(bad("longer than 2048 bytes"));
        }
        let rest = text
            .strip_prefix("spiffe://")
            .ok_or_else(|| bad("the scheme must be `spiffe://` in lowercase"))?;
        let (td, path) = match rest.find('/') {
            Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("")),
            None => (rest, ""),
        };
        if td.is_empty() {
            return Err(bad("the trust domain is empty"));
        }
        if !td
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
        {
            return Err(bad(
                "the trust domain may hold only lowercase letters, digits, `-`, `.` and `_` (no port, user or uppercase)",
            ));
        }
        if !path.is_empty() {
            for seg in path.split('/').skip(1) {
                if seg.is_empty() {
                    return Err(bad("a path segment is empty (or the path ends with `/`)"));
                }
                if seg == "." || seg == ".." {
                    return Err(bad("`.` and `..` path segments are not allowed"));
                }
                if !seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
                {
                    return Err(bad(
                        "path segments may hold only letters, digits, `-`, `.` and `_` (no query, fragment or percent-encoding)",
                    ));
                }
            }
        }
        Ok(SpiffeId {
            trust_domain: td.to_string(),
            path: path.to_string(),
        })
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    pub fn path(&self) -> &str {
        &self.path
    }
}

impl std::fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "spiffe://{}{}", self.trust_domain, self.path)
    }
}

/// What the gateway knows of a verified client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The SPIFFE ID, or why the certificate has none usable.
    pub spiffe_id: Result<SpiffeId, SpiffeError>,
    /// SHA-256 of the certificate, hex: names the credential in audit records.
    pub fingerprint: String,
}

impl PeerCertificate {
    /// Reads an end-entity certificate (DER) that the TLS layer has already verified.
    pub fn from_der(der: &[u8]) -> Self {
        PeerCertificate {
            spiffe_id: spiffe_id_of(der),
            fingerprint: hex::encode(Sha256::digest(der)),
        }
    }
}

fn spiffe_id_of(der: &[u8]) -> Result<SpiffeId, SpiffeError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| SpiffeError::Certificate(e.to_string()))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| SpiffeError::Certificate(e.to_string()))?;
    let uris: Vec<&str> = san
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::URI(u) => Some(*u),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    match uris.as_slice() {
        [one] => SpiffeId::parse(one),
        other => Err(SpiffeError::UriCount(other.len())),
    }
}

/// One mapping rule: an exact SPIFFE ID, or every ID under a path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeRule {
    /// `spiffe://td/path` matches exactly; `spiffe://td/path/` matches everything below it.
    pub id: String,
    pub kind: PrincipalKind,
    /// The principal's id; by default the SPIFFE ID's last path segment.
    pub principal: Option<String>,
    pub groups: Vec<String>,
}

impl SpiffeRule {
    fn matches(&self, id: &str) -> bool {
        if self.id.ends_with('/') {
            id.starts_with(&self.id) && id.len() > self.id.len()
        } else {
            id == self.id
        }
    }
}

/// Trusted trust domains and the rules that turn their IDs into principals.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpiffeMapping {
    pub trust_domains: Vec<String>,
    pub rules: Vec<SpiffeRule>,
}

impl SpiffeMapping {
    pub fn is_empty(&self) -> bool {
        self.trust_domains.is_empty()
    }

    /// The principal a verified client certificate stands for. The first matching rule wins.
    pub fn principal(&self, peer: &PeerCertificate) -> Result<Principal, SpiffeError> {
        let id = peer.spiffe_id.as_ref().map_err(Clone::clone)?;
        let text = id.to_string();
        if !self.trust_domains.iter().any(|t| t == id.trust_domain()) {
            return Err(SpiffeError::ForeignTrustDomain(
                text,
                id.trust_domain().to_string(),
            ));
        }
        let rule = self
            .rules
            .iter()
            .find(|r| r.matches(&text))
            .ok_or_else(|| SpiffeError::Unmapped(text.clone()))?;
        let name = match &rule.principal {
            Some(p) => p.clone(),
            None => id
                .path()
                .rsplit('/')
                .next()
                .filter(|s| !s.is_empty())
                .unwrap_or(id.trust_domain())
                .to_string(),
        };
        Ok(Principal {
            kind: rule.kind,
            id: name,
            groups: rule.groups.clone(),
            on_behalf_of: Vec::new(),
            credential_id: format!("x509:{}", peer.fingerprint),
            device_posture: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests;
