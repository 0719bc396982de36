//! Turning credentials into a verified `Principal`.
//!
//! API keys (`api_key`) and OIDC/JWT users (`jwt`); Biscuit task tokens and mTLS plug in beside
//! them as further credential kinds. Everything here is pure: keys are loaded from the store by the caller and
//! handed to an `ApiKeyRegistry`, which answers without I/O so it can run on the request path.

mod api_key;
pub mod jwt;
pub mod risk;
pub mod task_token;

pub use api_key::{ApiKeyRegistry, GeneratedKey, KeyEntry, generate_key, hash_secret};

/// Why a credential was refused. Messages are safe to return to the caller: they never echo the
/// credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credential: send `Authorization: Bearer <api key>` (or `x-api-key: <api key>`)")]
    Missing,
    #[error("the credential is not a well-formed ZTAI API key (expected `ztai_<id>_<secret>`)")]
    Malformed,
    #[error("unknown or wrong API key")]
    Invalid,
    #[error("API key `{0}` has been revoked; ask an administrator for a new one")]
    Revoked(String),
    #[error("{0}")]
    Token(String),
}
