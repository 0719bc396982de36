//! The gateway's JWT issuers: their key sets, read from files and re-read when a token names a
//! key the gateway has not seen (key rotation), at most once per issuer per refresh floor so
//! made-up `kid`s cannot turn into a flood of reads. Verification itself is `ztai-identity`'s; a
//! repeated token is served from a cache keyed by its digest until its expiry, and the cache is
//! dropped whenever a key set changes.

use crate::config::JwtIssuerConfig;
use crate::state::StartError;
use std::sync::{Mutex, RwLock};
use std::time::{Instant, SystemTime};
use ztai_core::Principal;
use ztai_identity::jwt::{self, Jwks, JwtError, JwtIssuer, UnverifiedJwt, VerifiedCache};

/// Verified tokens kept for reuse; a full cache is cleared, not grown.
const CACHE_CAPACITY: usize = 10_000;

#[derive(Debug)]
pub(crate) struct JwtIssuers {
    issuers: RwLock<Vec<JwtIssuer>>,
    configs: Vec<JwtIssuerConfig>,
    /// When each issuer's key set was last read, by index.
    refreshed: RwLock<Vec<Instant>>,
    cache: Mutex<VerifiedCache>,
}

fn read_jwks(c: &JwtIssuerConfig) -> Result<Jwks, String> {
    let bytes = std::fs::read(&c.jwks_file).map_err(|e| e.to_string())?;
    let jwks = Jwks::parse(&bytes).map_err(|e| e.to_string())?;
    if jwks.is_empty() {
        return Err("it holds no signing key this gateway can verify with".into());
    }
    Ok(jwks)
}

impl JwtIssuers {
    pub fn load(configs: &[JwtIssuerConfig]) -> Result<Self, StartError> {
        let mut issuers = Vec::with_capacity(configs.len());
        for c in configs {
            let jwks = read_jwks(c).map_err(|message| StartError::Jwks {
                issuer: c.issuer.clone(),
                file: c.jwks_file.display().to_string(),
                message,
            })?;
            issuers.push(JwtIssuer {
                issuer: c.issuer.clone(),
                audiences: c.audiences.clone(),
                algorithms: c.algorithms.clone(),
                leeway: c.leeway,
                mapping: c.mapping.clone(),
                jwks,
            });
        }
        Ok(JwtIssuers {
            refreshed: RwLock::new(vec![Instant::now(); issuers.len()]),
            issuers: RwLock::new(issuers),
            configs: configs.to_vec(),
            cache: Mutex::new(VerifiedCache::new(CACHE_CAPACITY)),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.configs.is_empty()
    }

    fn verify_now(&self, token: &str) -> Result<Principal, JwtError> {
        let now = SystemTime::now();
        if let Some(p) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token, now)
        {
            return Ok(p);
        }
        let (principal, until) = {
            let issuers = self.issuers.read().unwrap_or_else(|p| p.into_inner());
            jwt::verify_until(token, &issuers, now)?
        };
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
            token,
            principal.clone(),
            until,
        );
        Ok(principal)
    }

    /// Verifies a bearer token. Key sets older than their `jwks_max_age` are re-read first (so a
    /// withdrawn key stops working without a restart); a token naming an unknown key triggers one
    /// re-read of its issuer's set (if the floor allows) and one retry.
    pub fn verify(&self, token: &str) -> Result<Principal, JwtError> {
        self.refresh_stale();
        match self.verify_now(token) {
            Err(JwtError::UnknownKey(kid)) => {
                if self.refresh_for(token) {
                    self.verify_now(token)
                } else {
                    Err(JwtError::UnknownKey(kid))
                }
            }
            other => other,
        }
    }

    /// Re-reads every key set past its maximum age (a few nanoseconds when none is).
    fn refresh_stale(&self) {
        let stale: Vec<usize> = {
            let refreshed = self.refreshed.read().unwrap_or_else(|p| p.into_inner());
            refreshed
                .iter()
                .zip(&self.configs)
                .enumerate()
                .filter(|(_, (last, c))| last.elapsed() >= c.jwks_max_age)
                .map(|(i, _)| i)
                .collect()
        };
        for i in stale {
            self.refresh(i);
        }
    }

    /// Re-reads the key set of the token's (claimed) issuer when its floor has passed; returns
    /// whether a new set was installed.
    fn refresh_for(&self, token: &str) -> bool {
        let Ok(unverified) = UnverifiedJwt::decode(token) else {
            return false;
        };
        let iss = unverified
            .claims
            .get("iss")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        match self.configs.iter().position(|c| c.issuer == iss) {
            Some(i) => self.refresh(i),
            None => false,
        }
    }

    /// Re-reads issuer `i`'s key set unless it was read less than its floor ago; returns whether
    /// a new set was installed (and the cache dropped).
    fn refresh(&self, i: usize) -> bool {
        let Some(config) = self.configs.get(i) else {
            return false;
        };
        {
            let mut refreshed = self.refreshed.write().unwrap_or_else(|p| p.into_inner());
            let Some(last) = refreshed.get_mut(i) else {
                return false;
            };
            if last.elapsed() < config.jwks_refresh_floor {
                return false;
            }
            *last = Instant::now();
        }
        match read_jwks(config) {
            Ok(jwks) => {
                tracing::info!(issuer = %config.issuer, keys = jwks.len(), "JWT issuer key set re-read");
                let mut issuers = self.issuers.write().unwrap_or_else(|p| p.into_inner());
                if let Some(issuer) = issuers.get_mut(i) {
                    issuer.jwks = jwks;
                }
                // A key withdrawn from the set must stop working now, cached or not.
                self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
                true
            }
            Err(e) => {
                // Keep the keys we have: a broken file must not lock every user out.
                tracing::error!(issuer = %config.issuer, error = %e, "JWT issuer key set could not be re-read; the previous set stays");
                false
            }
        }
    }
}
