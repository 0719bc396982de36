//! Turning credentials into a verified `Principal`.
//!
//! API keys (`api_key`), OIDC/JWT users (`jwt`), agents' Biscuit task tokens (`task_token`) and
//! client certificates with SPIFFE IDs (`spiffe`), plus the per-principal risk score (`risk`).
//! Everything here is pure: keys and certificates are loaded by the caller, time is passed in, and
//! the answers need no I/O so they can run on the request path.

mod api_key;
pub mod jwt;
pub mod risk;
pub mod spiffe;
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
