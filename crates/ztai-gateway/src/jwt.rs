//! The gateway's JWT issuers: their key sets, read from files or fetched over HTTPS, and re-read
//! when a token names a key the gateway has not seen (key rotation) or the set passes its maximum
//! age (withdrawal), at most once per issuer per refresh floor so made-up `kid`s cannot turn into a
//! flood of reads. A file is re-read in place (it is small and local); a URL is fetched in the
//! background, so no request waits on the identity provider — the request that asked gets "retry
//! shortly" and the next one sees the new set. Verification itself is `ztai-identity`'s; a
//! repeated token is served from a cache keyed by its digest until its expiry, and the cache is
//! dropped whenever a key set changes.

use crate::config::{JwksSource, JwtIssuerConfig};
use crate::error::StartError;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use std::time::{Instant, SystemTime};
use ztai_core::Principal;
use ztai_identity::jwt::{self, Jwks, JwtError, JwtIssuer, UnverifiedJwt, VerifiedCache};

/// Verified tokens kept for reuse; a full cache is cleared, not grown.
const CACHE_CAPACITY: usize = 10_000;
/// Largest JWKS document accepted from a URL.
const MAX_JWKS_BYTES: usize = 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

type JwksClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

fn jwks_client() -> JwksClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(FETCH_TIMEOUT));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new()).build(https)
}

async fn fetch_jwks(client: &JwksClient, uri: &http::Uri) -> Result<Jwks, String> {
    let req = http::Request::get(uri.clone())
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let fetch = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("unreachable: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("answered {}", resp.status()));
        }
        Limited::new(resp.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| {
                format!("the key set could not be read (larger than {MAX_JWKS_BYTES} bytes?): {e}")
            })
    };
    let bytes = tokio::time::timeout(FETCH_TIMEOUT, fetch)
        .await
        .map_err(|_| format!("no answer within {} s", FETCH_TIMEOUT.as_secs()))??;
    parse_jwks(&bytes)
}

/// Fetches a key set before the gateway serves, on a thread of its own (the caller may be inside
/// the runtime, which must not block on itself).
fn fetch_jwks_now(uri: &http::Uri) -> Result<Jwks, String> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(async { fetch_jwks(&jwks_client(), uri).await })
            })
            .join()
            .unwrap_or_else(|_| Err("the fetch thread stopped".into()))
    })
}

fn parse_jwks(bytes: &[u8]) -> Result<Jwks, String> {
    let jwks = Jwks::parse(bytes).map_err(|e| e.to_string())?;
    if jwks.is_empty() {
        return Err("it holds no signing key this gateway can verify with".into());
    }
    Ok(jwks)
}

pub(crate) struct JwtIssuers {
    issuers: RwLock<Vec<JwtIssuer>>,
    configs: Vec<JwtIssuerConfig>,
    /// When each issuer's key set was last read, by index.
    refreshed: RwLock<Vec<Instant>>,
    /// Whether a background fetch of each issuer's set is under way.
    fetching: Vec<AtomicBool>,
    cache: Mutex<VerifiedCache>,
    /// Bumped whenever a key set is installed, so a verification that used the previous set
    /// cannot put its result in the cache after the cache was dropped.
    generation: AtomicU64,
    client: JwksClient,
}

impl std::fmt::Debug for JwtIssuers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtIssuers")
            .field("issuers", &self.configs.len())
            .finish_non_exhaustive()
    }
}

fn read_jwks(c: &JwtIssuerConfig) -> Result<Jwks, String> {
    match &c.jwks {
        JwksSource::File(path) => parse_jwks(&std::fs::read(path).map_err(|e| e.to_string())?),
        JwksSource::Url(uri) => fetch_jwks_now(uri),
    }
}

impl JwtIssuers {
    pub fn load(configs: &[JwtIssuerConfig]) -> Result<Self, StartError> {
        let mut issuers = Vec::with_capacity(configs.len());
        for c in configs {
            let jwks = read_jwks(c).map_err(|message| StartError::Jwks {
                issuer: c.issuer.clone(),
                file: c.jwks.to_string(),
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
            fetching: configs.iter().map(|_| AtomicBool::new(false)).collect(),
            issuers: RwLock::new(issuers),
            configs: configs.to_vec(),
            cache: Mutex::new(VerifiedCache::new(CACHE_CAPACITY)),
            generation: AtomicU64::new(0),
            client: jwks_client(),
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
        let (principal, until, generation) = {
            let issuers = self.issuers.read().unwrap_or_else(|p| p.into_inner());
            let generation = self.generation.load(Ordering::Acquire);
            let (p, until) = jwt::verify_until(token, &issuers, now)?;
            (p, until, generation)
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == generation {
            cache.insert(token, principal.clone(), until);
        }
        Ok(principal)
    }

    /// Verifies a bearer token. Key sets older than their `jwks_max_age` are re-read first (so a
    /// withdrawn key stops working without a restart); a token naming an unknown key triggers one
    /// re-read of its issuer's set (if the floor allows) and one retry.
    pub fn verify(self: &Arc<Self>, token: &str) -> Result<Principal, JwtError> {
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
    fn refresh_stale(self: &Arc<Self>) {
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
    fn refresh_for(self: &Arc<Self>, token: &str) -> bool {
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
    /// a new set was installed (and the cache dropped) before it returned. A URL is fetched in
    /// the background, so that is always `false` for one.
    fn refresh(self: &Arc<Self>, i: usize) -> bool {
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
        match &config.jwks {
            JwksSource::File(_) => self.install(i, read_jwks(config)),
            JwksSource::Url(uri) => {
                if self
                    .fetching
                    .get(i)
                    .is_none_or(|f| f.swap(true, Ordering::AcqRel))
                {
                    return false;
                }
                let (this, uri) = (self.clone(), uri.clone());
                match tokio::runtime::Handle::try_current() {
                    Ok(handle) => {
                        handle.spawn(async move {
                            let fetched = fetch_jwks(&this.client, &uri).await;
                            this.install(i, fetched);
                            if let Some(f) = this.fetching.get(i) {
                                f.store(false, Ordering::Release);
                            }
                        });
                    }
                    Err(_) => {
                        if let Some(f) = self.fetching.get(i) {
                            f.store(false, Ordering::Release);
                        }
                    }
                }
                false
            }
        }
    }

    /// Installs a freshly read key set for issuer `i` (dropping the cache), or keeps the old one
    /// when reading failed: a broken file or an unreachable provider must not lock every user out.
    fn install(&self, i: usize, read: Result<Jwks, String>) -> bool {
        let Some(config) = self.configs.get(i) else {
            return false;
        };
        match read {
            Ok(jwks) => {
                tracing::info!(issuer = %config.issuer, keys = jwks.len(), "JWT issuer key set re-read");
                let mut issuers = self.issuers.write().unwrap_or_else(|p| p.into_inner());
                if let Some(issuer) = issuers.get_mut(i) {
                    issuer.jwks = jwks;
                }
                self.generation.fetch_add(1, Ordering::AcqRel);
                drop(issuers);
                // A key withdrawn from the set must stop working now, cached or not.
                self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
                true
            }
            Err(e) => {
                tracing::error!(issuer = %config.issuer, source = %config.jwks, error = %e, "JWT issuer key set could not be re-read; the previous set stays");
                false
            }
        }
    }
}
