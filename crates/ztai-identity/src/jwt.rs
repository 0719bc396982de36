//! OIDC/JWT users: a compact JWS checked against an issuer's JWKS, then its claims.
//!
//! Pure: the caller hands in the token, the issuers (with their key sets, however it fetched
//! them) and the time. Signatures are verified by `ring` (ES256 in about 50 µs, where the
//! pure-Rust P-256 crates take four times as long); this module only parses and decides, and it
//! is shaped to make the classic JWT attacks impossible rather than checked for:
//! - there is no symmetric algorithm at all, so `none` and the HS256-with-the-RSA-public-key
//!   confusion have nothing to be confused with;
//! - the algorithm must be on the issuer's allowlist *and* match the type (and any `alg`) of the
//!   key the `kid` names, so a key is only ever used the one way it was published for;
//! - the issuer is chosen from the configuration by the exact `iss`, and only its keys are tried;
//! - headers with `crit` extensions are refused (we implement none), base64url is decoded
//!   strictly, and the whole token is bounded in size before anything is parsed.

use crate::AuthError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use ztai_core::{Principal, PrincipalKind};

/// Longest token considered; a bigger one is refused before it is decoded.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Asymmetric JWS algorithms we verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    Es256,
    Es384,
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    EdDsa,
}

impl JwtAlgorithm {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "ES256" => JwtAlgorithm::Es256,
            "ES384" => JwtAlgorithm::Es384,
            "RS256" => JwtAlgorithm::Rs256,
            "RS384" => JwtAlgorithm::Rs384,
            "RS512" => JwtAlgorithm::Rs512,
            "PS256" => JwtAlgorithm::Ps256,
            "EdDSA" => JwtAlgorithm::EdDsa,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            JwtAlgorithm::Es256 => "ES256",
            JwtAlgorithm::Es384 => "ES384",
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Rs384 => "RS384",
            JwtAlgorithm::Rs512 => "RS512",
            JwtAlgorithm::Ps256 => "PS256",
            JwtAlgorithm::EdDsa => "EdDSA",
        }
    }
}

/// One published verification key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyMaterial {
    /// Uncompressed point `0x04 ‖ x ‖ y` on P-256 or P-384.
    Ec {
        curve: &'static str,
        point: Vec<u8>,
    },
    /// Modulus and exponent, big-endian.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    Ed25519(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Jwk {
    material: KeyMaterial,
    /// The key's own `alg`, when it pins one.
    alg: Option<JwtAlgorithm>,
}

/// An issuer's JSON Web Key Set, by `kid`. Keys that are not for signatures, or of kinds we do
/// not verify, are left out (and counted), never guessed at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    keys: HashMap<String, Jwk>,
    /// Keys in the set that were skipped (encryption keys, symmetric keys, unknown curves).
    pub skipped: usize,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<RawJwk>,
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
}

fn b64(field: &Option<String>) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(field.as_deref()?).ok()
}

impl Jwks {
    /// Parses a JWKS document (`{"keys": [...]}`).
    pub fn parse(json: &[u8]) -> Result<Self, JwtError> {
        let raw: RawJwks = serde_json::from_slice(json)
            .map_err(|e| JwtError::Jwks(format!("not a JWKS document: {e}")))?;
        let mut set = Jwks::default();
        for k in raw.keys {
            let usable = k.use_.as_deref().is_none_or(|u| u == "sig");
            let alg = match k.alg.as_deref() {
                None => None,
                Some(a) => match JwtAlgorithm::parse(a) {
                    Some(a) => Some(a),
                    None => {
                        set.skipped += 1;
                        continue;
                    }
                },
            };
            let material = match (k.kty.as_str(), k.crv.as_deref()) {
                ("EC", Some(name @ ("P-256" | "P-384"))) => {
                    let crv: &'static str = if name == "P-256" { "P-256" } else { "P-384" };
                    let (Some(x), Some(y)) = (b64(&k.x), b64(&k.y)) else {
                        set.skipped += 1;
                        continue;
                    };
                    let len = if crv == "P-256" { 32 } else { 48 };
                    if x.len() != len || y.len() != len {
                        set.skipped += 1;
                        continue;
                    }
                    let mut point = Vec::with_capacity(1 + 2 * len);
                    point.push(4);
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    KeyMaterial::Ec { curve: crv, point }
                }
                ("RSA", _) => match (b64(&k.n), b64(&k.e)) {
                    (Some(n), Some(e)) => KeyMaterial::Rsa { n, e },
                    _ => {
                        set.skipped += 1;
                        continue;
                    }
                },
                ("OKP", Some("Ed25519")) => match b64(&k.x) {
                    Some(x) if x.len() == 32 => KeyMaterial::Ed25519(x),
                    _ => {
                        set.skipped += 1;
                        continue;
                    }
                },
                _ => {
                    set.skipped += 1;
                    continue;
                }
            };
            if !usable {
                set.skipped += 1;
                continue;
            }
            // A key without a kid can only be chosen when it is the only one; keep it under "".
            set.keys
                .insert(k.kid.unwrap_or_default(), Jwk { material, alg });
        }
        Ok(set)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }
}

/// How a verified token becomes a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimMapping {
    /// The claim holding the principal's id (`sub`, `email`, `preferred_username`, …).
    pub subject_claim: String,
    /// A claim holding group names (an array of strings, or one space-separated string).
    pub groups_claim: Option<String>,
    /// Claim value → group; values not listed pass through unchanged when `pass_through`.
    pub group_map: HashMap<String, String>,
    pub pass_through: bool,
    /// Groups every principal of this issuer gets.
    pub default_groups: Vec<String>,
    /// A claim holding device posture attributes: an array of names, one space-separated
    /// string, or an object whose `true` members are the attributes (`{"managed": true}`).
    pub posture_claim: Option<String>,
}

impl Default for ClaimMapping {
    fn default() -> Self {
        ClaimMapping {
            subject_claim: "sub".into(),
            groups_claim: Some("groups".into()),
            group_map: HashMap::new(),
            pass_through: true,
            default_groups: vec![],
            posture_claim: None,
        }
    }
}

/// At most this many posture attributes are taken from a token; the rest are ignored.
pub const MAX_POSTURE_ATTRIBUTES: usize = 32;

/// A posture attribute name: 1–64 letters, digits, `_`, `-` or `.`.
fn valid_attribute(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Posture attributes from a claim value; only well-formed names are kept.
fn posture_of(value: Option<&serde_json::Value>) -> Vec<String> {
    use serde_json::Value;
    let names: Vec<&str> = match value {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => s.split_whitespace().collect(),
        Some(Value::Object(o)) => o
            .iter()
            .filter(|(_, v)| v.as_bool() == Some(true))
            .map(|(k, _)| k.as_str())
            .collect(),
        _ => Vec::new(),
    };
    let mut out: Vec<String> = names
        .into_iter()
        .filter(|n| valid_attribute(n))
        .take(MAX_POSTURE_ATTRIBUTES)
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A trusted token issuer.
#[derive(Debug, Clone)]
pub struct JwtIssuer {
    /// Must equal the token's `iss` exactly.
    pub issuer: String,
    /// The token's `aud` must name at least one of these.
    pub audiences: Vec<String>,
    pub algorithms: Vec<JwtAlgorithm>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    pub mapping: ClaimMapping,
    pub jwks: Jwks,
}

/// Why a token was refused. Messages name the check, never the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the bearer token is not a well-formed JWT (three base64url parts)")]
    Malformed,
    #[error("the bearer token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error(
        "the token's algorithm `{0}` is not accepted (no `none`, no symmetric algorithms; the issuer lists which asymmetric ones it uses)"
    )]
    Algorithm(String),
    #[error("the token's header has `crit` extensions, which this gateway does not implement")]
    Critical,
    #[error("the token's issuer `{0}` is not trusted here")]
    UnknownIssuer(String),
    #[error(
        "the token names key `{0}`, which its issuer has not published (its key set may be refreshing; retry shortly)"
    )]
    UnknownKey(String),
    #[error("the token's key does not fit its algorithm")]
    KeyMismatch,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has no `exp`; tokens without an expiry are refused")]
    NoExpiry,
    #[error("the token is not meant for this gateway (audience)")]
    Audience,
    #[error("the token's `{0}` claim is missing or not a usable identifier")]
    Subject(String),
    #[error("the issuer's key set is unusable: {0}")]
    Jwks(String),
}

impl From<JwtError> for AuthError {
    fn from(e: JwtError) -> Self {
        AuthError::Token(e.to_string())
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

/// The token's header and claims, decoded but not yet trusted: for choosing the issuer and
/// the key (and for `ztai token inspect`).
#[derive(Debug, Clone)]
pub struct UnverifiedJwt<'a> {
    pub alg: String,
    pub kid: Option<String>,
    pub claims: serde_json::Map<String, serde_json::Value>,
    signing_input: &'a [u8],
    signature: Vec<u8>,
    critical: bool,
}

impl<'a> UnverifiedJwt<'a> {
    pub fn decode(token: &'a str) -> Result<Self, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: Header = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(JwtError::Malformed)?;
        let claims: serde_json::Map<String, serde_json::Value> = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(JwtError::Malformed)?;
        let signature = URL_SAFE_NO_PAD.decode(s).map_err(|_| JwtError::Malformed)?;
        let signing_input = token
            .get(..h.len() + 1 + p.len())
            .ok_or(JwtError::Malformed)?
            .as_bytes();
        Ok(UnverifiedJwt {
            alg: header.alg,
            kid: header.kid,
            claims,
            signing_input,
            signature,
            critical: header.crit.is_some(),
        })
    }

    fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(serde_json::Value::as_str)
    }

    fn claim_time(&self, name: &str) -> Option<f64> {
        self.claims.get(name).and_then(serde_json::Value::as_f64)
    }
}

fn verify_signature(
    alg: JwtAlgorithm,
    key: &KeyMaterial,
    input: &[u8],
    sig: &[u8],
) -> Result<(), JwtError> {
    let result = match (alg, key) {
        (
            JwtAlgorithm::Es256,
            KeyMaterial::Ec {
                curve: "P-256",
                point,
            },
        ) => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point).verify(input, sig),
        (
            JwtAlgorithm::Es384,
            KeyMaterial::Ec {
                curve: "P-384",
                point,
            },
        ) => UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point).verify(input, sig),
        (JwtAlgorithm::EdDsa, KeyMaterial::Ed25519(x)) => {
            UnparsedPublicKey::new(&signature::ED25519, x).verify(input, sig)
        }
        (
            JwtAlgorithm::Rs256 | JwtAlgorithm::Rs384 | JwtAlgorithm::Rs512 | JwtAlgorithm::Ps256,
            KeyMaterial::Rsa { n, e },
        ) => {
            let params = match alg {
                JwtAlgorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                JwtAlgorithm::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                JwtAlgorithm::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                _ => &signature::RSA_PSS_2048_8192_SHA256,
            };
            signature::RsaPublicKeyComponents { n, e }.verify(params, input, sig)
        }
        _ => return Err(JwtError::KeyMismatch),
    };
    result.map_err(|_| JwtError::Signature)
}

fn valid_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.chars().all(|c| !c.is_control() && c != ':')
}

/// Verifies `token` against the issuers and turns it into a principal.
pub fn verify(token: &str, issuers: &[JwtIssuer], now: SystemTime) -> Result<Principal, JwtError> {
    verify_until(token, issuers, now).map(|(p, _)| p)
}

/// Like `verify`, also returning the last moment the token is accepted (its `exp` plus the
/// issuer's leeway), for a verification cache.
pub fn verify_until(
    token: &str,
    issuers: &[JwtIssuer],
    now: SystemTime,
) -> Result<(Principal, SystemTime), JwtError> {
    let jwt = UnverifiedJwt::decode(token)?;
    if jwt.critical {
        return Err(JwtError::Critical);
    }
    let alg = JwtAlgorithm::parse(&jwt.alg).ok_or_else(|| JwtError::Algorithm(jwt.alg.clone()))?;
    let iss = jwt.claim_str("iss").unwrap_or_default();
    let issuer = issuers
        .iter()
        .find(|i| i.issuer == iss)
        .ok_or_else(|| JwtError::UnknownIssuer(iss.chars().take(200).collect()))?;
    if !issuer.algorithms.contains(&alg) {
        return Err(JwtError::Algorithm(jwt.alg.clone()));
    }
    let kid = jwt.kid.clone().unwrap_or_default();
    let key = match issuer.jwks.keys.get(&kid) {
        Some(k) => k,
        // No kid: only a set of exactly one key is unambiguous.
        None if jwt.kid.is_none() && issuer.jwks.keys.len() == 1 => issuer
            .jwks
            .keys
            .values()
            .next()
            .ok_or_else(|| JwtError::UnknownKey(String::new()))?,
        None => return Err(JwtError::UnknownKey(kid.chars().take(100).collect())),
    };
    if key.alg.is_some_and(|a| a != alg) {
        return Err(JwtError::KeyMismatch);
    }
    verify_signature(alg, &key.material, jwt.signing_input, &jwt.signature)?;

    // Signed by the issuer; now the claims.
    let now = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let leeway = issuer.leeway.as_secs_f64();
    let exp = jwt.claim_time("exp").ok_or(JwtError::NoExpiry)?;
    if now > exp + leeway {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = jwt.claim_time("nbf")
        && now + leeway < nbf
    {
        return Err(JwtError::NotYetValid);
    }
    let audiences: Vec<&str> = match jwt.claims.get("aud") {
        Some(serde_json::Value::String(a)) => vec![a.as_str()],
        Some(serde_json::Value::Array(a)) => {
            a.iter().filter_map(serde_json::Value::as_str).collect()
        }
        _ => vec![],
    };
    if !audiences
        .iter()
        .any(|a| issuer.audiences.iter().any(|want| want == a))
    {
        return Err(JwtError::Audience);
    }
    let m = &issuer.mapping;
    let id = jwt
        .claim_str(&m.subject_claim)
        .filter(|s| valid_id(s))
        .ok_or_else(|| JwtError::Subject(m.subject_claim.clone()))?
        .to_string();
    let mut groups = m.default_groups.clone();
    if let Some(claim) = &m.groups_claim {
        let values: Vec<&str> = match jwt.claims.get(claim) {
            Some(serde_json::Value::Array(a)) => {
                a.iter().filter_map(serde_json::Value::as_str).collect()
            }
            Some(serde_json::Value::String(s)) => s.split_whitespace().collect(),
            _ => vec![],
        };
        for v in values {
            match m.group_map.get(v) {
                Some(g) => groups.push(g.clone()),
                None if m.pass_through && valid_id(v) => groups.push(v.to_string()),
                None => {}
            }
        }
    }
    groups.sort();
    groups.dedup();
    let jti = jwt.claim_str("jti").map(str::to_string).unwrap_or_else(|| {
        use sha2::Digest;
        hex::encode(
            sha2::Sha256::digest(token.as_bytes())
                .get(..8)
                .unwrap_or_default(),
        )
    });
    let until = UNIX_EPOCH + Duration::from_secs_f64((exp + leeway).clamp(0.0, 1e11));
    Ok((
        Principal {
            kind: PrincipalKind::User,
            id,
            groups,
            on_behalf_of: vec![],
            credential_id: format!("jwt:{jti}"),
            device_posture: m
                .posture_claim
                .as_ref()
                .map(|c| posture_of(jwt.claims.get(c)))
                .unwrap_or_default(),
        },
        until,
    ))
}

/// Verified tokens by SHA-256 digest, so a repeated token skips the signature check. An entry is
/// only served before its token's expiry, and the whole cache is dropped whenever an issuer's
/// key set changes (a withdrawn key must stop working at once). Bounded: when full it is
/// cleared rather than grown, which costs one verification per token afterwards.
#[derive(Debug)]
pub struct VerifiedCache {
    entries: HashMap<[u8; 32], (Principal, SystemTime)>,
    capacity: usize,
}

impl VerifiedCache {
    pub fn new(capacity: usize) -> Self {
        VerifiedCache {
            entries: HashMap::with_capacity(capacity.min(4096)),
            capacity: capacity.max(1),
        }
    }

    fn digest(token: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(token.as_bytes()).into()
    }

    /// The principal of a token verified before, if it has not expired since.
    pub fn get(&self, token: &str, now: SystemTime) -> Option<Principal> {
        match self.entries.get(&Self::digest(token)) {
            Some((p, until)) if now <= *until => Some(p.clone()),
            _ => None,
        }
    }

    pub fn insert(&mut self, token: &str, principal: Principal, until: SystemTime) {
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
        self.entries.insert(Self::digest(token), (principal, until));
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
mod tests;
