//! MCP session ids that any replica can open: the session's facts sealed with AES-256-GCM under
//! a key the replicas share.
//!
//! A session id is a bearer secret the client echoes in `Mcp-Session-Id`. Sealing rather than
//! storing means a request routed to a replica that never saw the session still knows which
//! server it is for, who opened it, the upstream's own session id and when it ends, without a
//! shared store and without sticky load balancing. The server's name is the associated data, so
//! an id minted for one server is refused by every other; the principal and its delegation
//! chain are inside, so a stolen id is useless to anyone who cannot also present the same
//! identity. What changes during a session (its taint) cannot live in an id the client already
//! holds, so it lives in the store (see `Mcp::taint`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};

const PREFIX: &str = "zmcp1.";
/// Session ids longer than this are refused before any decoding.
pub const MAX_SESSION_ID_BYTES: usize = 4096;

/// What a session id carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// The server it was opened on.
    pub server: String,
    /// `kind:id` of the principal that opened it, then its delegation chain.
    pub principal: String,
    pub chain: Vec<String>,
    /// The upstream server's own session id (HTTP servers that use sessions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// The protocol revision agreed at initialisation.
    pub protocol: String,
    /// Unix seconds.
    pub issued: i64,
    pub expires: i64,
    /// The replica that opened it.
    pub instance: String,
}

/// Why a session id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session id is not one this gateway issued; initialize a new session")]
    Malformed,
    #[error("the session id was issued for another MCP server; initialize a session at this one")]
    WrongServer,
    #[error("the session has expired; initialize a new session")]
    Expired,
    #[error("the session key is not usable: {0}")]
    Key(String),
}

/// Seals and opens session ids.
pub struct SessionSealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for SessionSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionSealer").finish_non_exhaustive()
    }
}

impl SessionSealer {
    /// A sealer over a 32-byte key.
    pub fn new(key: &[u8]) -> Result<Self, SessionError> {
        let unbound = UnboundKey::new(&AES_256_GCM, key).map_err(|_| {
            SessionError::Key("it must be exactly 32 bytes (64 hex characters)".into())
        })?;
        Ok(SessionSealer {
            key: LessSafeKey::new(unbound),
        })
    }

    fn aad(server: &str) -> Vec<u8> {
        let mut aad = b"ztai-mcp-session/v1\n".to_vec();
        aad.extend_from_slice(server.as_bytes());
        aad
    }

    /// A new session id for these claims. Each id has a fresh random 96-bit nonce.
    pub fn seal(&self, claims: &SessionClaims) -> Result<String, SessionError> {
        let mut plain = serde_json::to_vec(claims).map_err(|e| SessionError::Key(e.to_string()))?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(&claims.server)),
                &mut plain,
            )
            .map_err(|_| SessionError::Key("sealing failed".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&plain);
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out)))
    }

    /// The claims of a session id presented at `server` at `now` (Unix seconds).
    pub fn open(&self, id: &str, server: &str, now: i64) -> Result<SessionClaims, SessionError> {
        if id.len() > MAX_SESSION_ID_BYTES {
            return Err(SessionError::Malformed);
        }
        let body = id.strip_prefix(PREFIX).ok_or(SessionError::Malformed)?;
        let mut bytes = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| SessionError::Malformed)?;
        if bytes.len() < NONCE_LEN {
            return Err(SessionError::Malformed);
        }
        let sealed = bytes.split_off(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SessionError::Malformed)?;
        let mut sealed = sealed;
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(server)),
                &mut sealed,
            )
            // Another server's id fails here too (its associated data differs); say which
            // when the id opens under the server it names.
            .map_err(|_| SessionError::Malformed)?;
        let claims: SessionClaims =
            serde_json::from_slice(plain).map_err(|_| SessionError::Malformed)?;
        if claims.server != server {
            return Err(SessionError::WrongServer);
        }
        if now >= claims.expires {
            return Err(SessionError::Expired);
        }
        Ok(claims)
    }
}

/// SHA-256 of a session id, hex: how the store names it (the id itself is a secret).
pub fn session_hash(id: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(id.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn claims(server: &str) -> SessionClaims {
        SessionClaims {
            server: server.into(),
            principal: "user:alice".into(),
            chain: vec!["user:alice".into()],
            upstream: Some("up-1".into()),
            protocol: "2025-11-25".into(),
            issued: 100,
            expires: 200,
            instance: "ztai-1".into(),
        }
    }

    #[test]
    fn an_id_opens_only_with_the_key_at_its_server_before_expiry() {
        let a = SessionSealer::new(&[7u8; 32]).unwrap();
        let b = SessionSealer::new(&[8u8; 32]).unwrap();
        let id = a.seal(&claims("files")).unwrap();
        assert_eq!(a.open(&id, "files", 150).unwrap(), claims("files"));
        // Another replica with the same key opens it; one with another key does not.
        assert_eq!(
            SessionSealer::new(&[7u8; 32])
                .unwrap()
                .open(&id, "files", 150)
                .unwrap()
                .upstream
                .as_deref(),
            Some("up-1")
        );
        assert_eq!(b.open(&id, "files", 150), Err(SessionError::Malformed));
        assert_eq!(a.open(&id, "mail", 150), Err(SessionError::Malformed));
        assert_eq!(a.open(&id, "files", 200), Err(SessionError::Expired));
        // Two ids for the same claims differ (fresh nonces), and neither is the claims in clear.
        let again = a.seal(&claims("files")).unwrap();
        assert_ne!(id, again);
        assert!(!id.contains("alice"));
        assert!(SessionSealer::new(&[1u8; 16]).is_err());
    }

    #[test]
    fn a_tampered_id_is_refused() {
        let a = SessionSealer::new(&[7u8; 32]).unwrap();
        let id = a.seal(&claims("files")).unwrap();
        let mut raw = URL_SAFE_NO_PAD
            .decode(id.strip_prefix(PREFIX).unwrap())
            .unwrap();
        for i in [0, NONCE_LEN, raw.len() - 1] {
            raw[i] ^= 1;
            let forged = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(&raw));
            assert_eq!(a.open(&forged, "files", 150), Err(SessionError::Malformed));
            raw[i] ^= 1;
        }
        for junk in ["", "zmcp1.", "zmcp1.AAAA", "nope", &"zmcp1.A".repeat(5000)] {
            assert_eq!(a.open(junk, "files", 150), Err(SessionError::Malformed));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_ids_never_panic(id in ".{0,300}") {
            let a = SessionSealer::new(&[7u8; 32]).unwrap();
            prop_assert!(a.open(&id, "files", 0).is_err());
            let prefixed = format!("{PREFIX}{id}");
            prop_assert!(a.open(&prefixed, "files", 0).is_err());
        }
    }
}
