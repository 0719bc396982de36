//! Redaction sessions, and `POST /v1/reveal` for getting tokenised values back.
//!
//! With `inspect.redaction` set to `numbered`, `hash` or `token`, what replaces a redacted value
//! depends on the session it was redacted in: the same address keeps its number, hashes are
//! keyed per session, and tokens can be given back. A session belongs to one owner — the user a
//! delegated request acts for, else the principal itself — and is named by the caller with the
//! `x-ztai-session` header or minted by the gateway and returned in it. Two owners using the same
//! name get two sessions, so a session name is not a capability: guessing one reveals nothing.
//!
//! Session state lives in this gateway's memory only, never in the store or the audit log, which
//! must not hold the values redaction exists to hide. It is forgotten after
//! `inspect.redaction_session_ttl_secs` without use or when `inspect.redaction_max_sessions`
//! newer sessions exist (or its owner opens `MAX_SESSIONS_PER_OWNER` newer ones), and on
//! restart; tokens of a forgotten session stay tokens for good (nothing is revealed that cannot
//! be checked). Each session keeps at most `ztai_inspect::DEFAULT_MAX_VALUE_BYTES` of values, so
//! the whole store is bounded by `redaction_max_sessions` × 64 KiB (256 MiB at the default
//! 4,096; that is the worst case under abuse — a session usually holds a few values).
//!
//! Revealing is `Action::"reveal"` on `Api::"redaction"`, decided by policy with the kinds of the
//! values asked for in `context.finding_types` and `context.finding_categories`, and recorded
//! with those kinds and counts, never the values. Agents never reveal: the user an agent acts for
//! can, with their own credential.

use crate::error::GatewayError;
use crate::ids::new_request_id;
use crate::proxy::{
    Answer, authenticate_traced, finish, json_answer, principal_limit, read_body, with_request_id,
};
use crate::record::{Trace, micros};
use crate::state::Gateway;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{HeaderValue, Request};
use rand::RngCore;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use ztai_core::{Action, Principal, PrincipalKind, Resource};
use ztai_inspect::{Redactor, Replacement};
use ztai_policy::Verdict;

/// The request and response header that names a redaction session.
pub const SESSION_HEADER: &str = "x-ztai-session";

/// The longest session name a caller may choose.
const MAX_SESSION_NAME: usize = 128;

/// Open sessions one owner may hold: past it their own least recently used session goes, so one
/// principal minting sessions cannot push everyone else's out.
const MAX_SESSIONS_PER_OWNER: usize = 256;

/// One session's redactor, shared by the requests (and streams) that use it.
pub(crate) type SharedRedactor = Arc<Mutex<Redactor>>;

/// The redactor a request uses, and the session it belongs to (none for placeholder and mask
/// redaction, which need no state).
pub(crate) struct RedactionSession {
    pub id: Option<String>,
    pub redactor: SharedRedactor,
}

impl RedactionSession {
    /// Names the session in a response, so the caller can continue it or reveal from it.
    pub fn tag(&self, resp: &mut Response) {
        if let Some(v) = self
            .id
            .as_deref()
            .and_then(|id| HeaderValue::from_str(id).ok())
        {
            resp.headers_mut().insert(SESSION_HEADER, v);
        }
    }
}

/// A redaction session opened on first use, for paths where most requests redact nothing (MCP
/// tool calls and results, `/v1/authorize` arguments): those leave no session state behind and
/// answer with no session header. The name asked for is checked at once, so a malformed one is
/// refused whether or not anything gets redacted.
pub(crate) struct LazySession<'a> {
    sessions: &'a RedactionSessions,
    owner: String,
    requested: Option<HeaderValue>,
    opened: Option<RedactionSession>,
}

impl<'a> LazySession<'a> {
    /// `requested` is the caller's `x-ztai-session` header, else a name the path derives (an MCP
    /// session's), else none (a fresh name is minted if a stateful mode needs one).
    pub fn new(
        sessions: &'a RedactionSessions,
        owner: String,
        requested: Option<HeaderValue>,
    ) -> Result<Self, GatewayError> {
        if let Some(v) = &requested {
            session_name(v)?;
        }
        Ok(LazySession {
            sessions,
            owner,
            requested,
            opened: None,
        })
    }

    /// The session's redactor, opening the session the first time.
    pub fn redactor(&mut self, now: Instant) -> Result<SharedRedactor, GatewayError> {
        if let Some(s) = &self.opened {
            return Ok(s.redactor.clone());
        }
        let s = self
            .sessions
            .open(&self.owner, self.requested.as_ref(), now)?;
        let r = s.redactor.clone();
        self.opened = Some(s);
        Ok(r)
    }

    /// The name of the session once something was redacted in a stateful mode.
    pub fn id(&self) -> Option<&str> {
        self.opened.as_ref().and_then(|s| s.id.as_deref())
    }

    /// Names the session in a response once one was used.
    pub fn tag(&self, resp: &mut Response) {
        if let Some(s) = &self.opened {
            s.tag(resp);
        }
    }

    /// Redacts `findings` of `categories` (all when empty) in `text` within the session.
    pub fn redact(
        &mut self,
        text: &str,
        findings: &[ztai_core::Finding],
        categories: &[ztai_core::FindingCategory],
        now: Instant,
    ) -> Result<String, GatewayError> {
        let r = self.redactor(now)?;
        let mut r = r.lock().unwrap_or_else(|p| p.into_inner());
        Ok(r.redact(text, findings, categories))
    }
}

struct Entry {
    redactor: SharedRedactor,
    last_used: Instant,
}

/// Every open redaction session of this gateway, by (owner, name).
pub(crate) struct RedactionSessions {
    mode: Replacement,
    ttl: Duration,
    max: usize,
    sessions: Mutex<HashMap<(String, String), Entry>>,
}

impl std::fmt::Debug for RedactionSessions {
    // Counts only: the sessions hold the values redaction hides.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let open = self
            .sessions
            .lock()
            .map(|s| s.len())
            .unwrap_or_else(|p| p.into_inner().len());
        f.debug_struct("RedactionSessions")
            .field("mode", &self.mode)
            .field("ttl", &self.ttl)
            .field("open", &open)
            .finish()
    }
}

/// Whose session a request belongs to: the user at the root of a delegation chain, else the
/// principal itself, as `kind:id`.
pub(crate) fn owner_of(principal: &Principal) -> String {
    match principal.on_behalf_of.first() {
        Some(root) => format!("{}:{}", root.kind, root.id),
        None => format!("{}:{}", principal.kind, principal.id),
    }
}

fn session_name(value: &HeaderValue) -> Result<String, GatewayError> {
    let bad = || {
        GatewayError::BadRequest(format!(
            "the `{SESSION_HEADER}` header must be 1 to {MAX_SESSION_NAME} letters, digits, `.`, `_`, `:` or `-`; omit it and the gateway names a session for you"
        ))
    };
    let s = value.to_str().map_err(|_| bad())?;
    let ok = !s.is_empty()
        && s.len() <= MAX_SESSION_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok { Ok(s.to_string()) } else { Err(bad()) }
}

fn fresh_redactor(mode: Replacement) -> Redactor {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    Redactor::new(mode, key)
}

impl RedactionSessions {
    pub fn new(mode: Replacement, ttl: Duration, max: usize) -> Self {
        RedactionSessions {
            mode,
            ttl,
            max: max.max(1),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The redactor for a request of `owner` that named `requested` (or none). Stateful modes
    /// continue the named session or open one (minting a name when none was given); stateless
    /// modes get a redactor of their own.
    pub fn open(
        &self,
        owner: &str,
        requested: Option<&HeaderValue>,
        now: Instant,
    ) -> Result<RedactionSession, GatewayError> {
        let requested = requested.map(session_name).transpose()?;
        if !self.mode.is_stateful() {
            return Ok(RedactionSession {
                id: None,
                // Placeholders and masks never use the key: no randomness on every request.
                redactor: Arc::new(Mutex::new(Redactor::new(self.mode, [0; 32]))),
            });
        }
        let id = requested.unwrap_or_else(|| {
            let mut b = [0u8; 16];
            rand::rng().fill_bytes(&mut b);
            format!("rs_{}", hex::encode(b))
        });
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let key = (owner.to_string(), id.clone());
        if let Some(e) = sessions.get_mut(&key)
            && now.saturating_duration_since(e.last_used) < self.ttl
        {
            e.last_used = now;
            return Ok(RedactionSession {
                id: Some(id),
                redactor: e.redactor.clone(),
            });
        }
        // A new session (or an expired one under the same name, which starts over: its tokens
        // are not carried into the new one).
        sessions.remove(&key);
        let own: Vec<((String, String), Instant)> = sessions
            .iter()
            .filter(|((o, _), _)| o == owner)
            .map(|(k, e)| (k.clone(), e.last_used))
            .collect();
        if own.len() >= MAX_SESSIONS_PER_OWNER
            && let Some((oldest, _)) = own.into_iter().min_by_key(|(_, t)| *t)
        {
            sessions.remove(&oldest);
        }
        if sessions.len() >= self.max {
            let ttl = self.ttl;
            sessions.retain(|_, e| now.saturating_duration_since(e.last_used) < ttl);
        }
        if sessions.len() >= self.max
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        let redactor = Arc::new(Mutex::new(fresh_redactor(self.mode)));
        sessions.insert(
            key,
            Entry {
                redactor: redactor.clone(),
                last_used: now,
            },
        );
        Ok(RedactionSession {
            id: Some(id),
            redactor,
        })
    }

    /// `owner`'s open session named `id`, if it has not expired.
    pub fn find(&self, owner: &str, id: &str, now: Instant) -> Option<SharedRedactor> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let key = (owner.to_string(), id.to_string());
        let e = sessions.get_mut(&key)?;
        if now.saturating_duration_since(e.last_used) >= self.ttl {
            sessions.remove(&key);
            return None;
        }
        e.last_used = now;
        Some(e.redactor.clone())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevealRequest {
    text: String,
}

pub async fn reveal(State(gw): State<Arc<Gateway>>, req: Request<Body>) -> Response {
    let request_id = new_request_id();
    let mut trace = Trace::new(request_id.clone(), Action::Reveal.cedar_id());
    trace.client = crate::conn::ClientAddr::of(req.extensions());
    let result = reveal_values(&gw, req, &mut trace).await;
    let resp = finish(&gw, "/v1/reveal", trace, result).await;
    with_request_id(resp, &request_id)
}

async fn reveal_values(
    gw: &Arc<Gateway>,
    req: Request<Body>,
    trace: &mut Trace,
) -> Result<Answer, GatewayError> {
    let who = authenticate_traced(gw, &req, trace)?;
    let resource = Resource::Api("redaction".into());
    trace.resource = resource.to_string();
    if who.principal.kind == PrincipalKind::Agent || who.task.is_some() {
        return Err(GatewayError::Forbidden(
            "an agent never sees back redacted values; the user it acts for can, with their own credential".into(),
        ));
    }
    principal_limit(gw, &who.principal)?;
    let id = match req.headers().get(SESSION_HEADER) {
        Some(v) => session_name(v)?,
        None => {
            return Err(GatewayError::BadRequest(format!(
                "name the session whose values you want back in the `{SESSION_HEADER}` header (answers carry it when `inspect.redaction` is `token`)"
            )));
        }
    };
    let bytes = read_body(gw, req).await?;
    let body: RevealRequest = serde_json::from_slice(&bytes).map_err(|e| {
        GatewayError::Unprocessable(format!(
            "expected {{\"text\": \"…\"}} holding the tokens to put back: {e}"
        ))
    })?;
    let owner = owner_of(&who.principal);
    let redactor = gw
        .redaction
        .find(&owner, &id, Instant::now())
        .ok_or_else(|| {
            GatewayError::NotFound(format!(
                "you have no open redaction session `{id}` on this gateway: sessions are kept in memory for {} s after their last use, are forgotten on restart, and belong to the user who opened them",
                gw.redaction.ttl().as_secs()
            ))
        })?;
    let refs = redactor
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .tokens_in(&body.text);

    let t = Instant::now();
    let mut ctx = crate::proxy::request_context(gw, "reveal", &trace.client);
    for r in &refs {
        ctx.finding_types.insert(r.kind.clone());
        ctx.finding_categories
            .insert(r.category.as_str().to_string());
    }
    let verdict = gw.authorize(&who, Action::Reveal, &resource, &[], &ctx)?;
    trace.timings.authorize_us = micros(t);
    match verdict {
        Verdict::Permit(p) => trace.decision = Some(p.decision().clone()),
        Verdict::Deny(d) => {
            let msg = d.denial_message();
            trace.reason = msg.clone();
            trace.decision = Some(d);
            return Err(GatewayError::Forbidden(msg));
        }
    }
    let text = redactor
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .reveal(&body.text);
    let types: std::collections::BTreeSet<&str> = refs.iter().map(|r| r.kind.as_str()).collect();
    // The record says what kinds of values were given back and how many, never the values.
    trace.reason = format!(
        "revealed {} value(s) of session `{id}`: {}",
        refs.len(),
        types.iter().copied().collect::<Vec<_>>().join(", ")
    );
    let out = serde_json::to_vec(&serde_json::json!({
        "text": text,
        "revealed": refs.len(),
        "types": types,
    }))
    .map_err(|e| GatewayError::StageFailed {
        stage: crate::error::Stage::Gateway,
        message: e.to_string(),
    })?;
    Ok(match json_answer(out)? {
        Answer::Buffered(mut resp, digest) => {
            resp.headers_mut().insert(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
            Answer::Buffered(resp, digest)
        }
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(mode: Replacement, max: usize) -> RedactionSessions {
        RedactionSessions::new(mode, Duration::from_secs(60), max)
    }

    fn email_finding(text: &str) -> ztai_core::Finding {
        let start = text.find('j').unwrap();
        ztai_core::Finding {
            kind: "email".into(),
            category: ztai_core::FindingCategory::Pii,
            severity: ztai_core::Severity::Medium,
            confidence: 1.0,
            detector: "test",
            span: ztai_core::Span::new(start, text.len()),
            channel: ztai_core::Channel::Untrusted,
        }
    }

    #[test]
    fn a_lazy_session_opens_on_first_redaction_and_continues_by_name() {
        let s = sessions(Replacement::Token, 10);
        let now = Instant::now();
        let text = "mail jane@example.com";
        let f = [email_finding(text)];
        let name = HeaderValue::from_static("mcp-abc");
        let mut lazy = LazySession::new(&s, "user:alice".into(), Some(name.clone())).unwrap();
        assert_eq!(lazy.id(), None);
        assert!(
            s.find("user:alice", "mcp-abc", now).is_none(),
            "nothing opened yet"
        );
        let out = lazy.redact(text, &f, &[], now).unwrap();
        assert!(
            out.starts_with("mail [EMAIL:tok_") && !out.contains("jane"),
            "{out}"
        );
        assert_eq!(lazy.id(), Some("mcp-abc"));
        // A later request naming the session gets the same token; another owner does not.
        let mut later = LazySession::new(&s, "user:alice".into(), Some(name.clone())).unwrap();
        assert_eq!(later.redact(text, &f, &[], now).unwrap(), out);
        let mut bob = LazySession::new(&s, "user:bob".into(), Some(name)).unwrap();
        assert_ne!(bob.redact(text, &f, &[], now).unwrap(), out);
        // A malformed name is refused before anything is redacted.
        assert!(
            LazySession::new(
                &s,
                "user:alice".into(),
                Some(HeaderValue::from_static("a b"))
            )
            .is_err()
        );
        // Stateless modes redact without a session to name.
        let p = sessions(Replacement::Placeholder, 10);
        let mut lazy = LazySession::new(&p, "user:alice".into(), None).unwrap();
        assert_eq!(lazy.redact(text, &f, &[], now).unwrap(), "mail [EMAIL]");
        assert_eq!(lazy.id(), None);
    }

    #[test]
    fn a_named_session_is_continued_only_by_its_owner() {
        let s = sessions(Replacement::Token, 10);
        let now = Instant::now();
        let name = HeaderValue::from_static("case-42");
        let a = s.open("user:alice", Some(&name), now).unwrap();
        let again = s.open("user:alice", Some(&name), now).unwrap();
        assert!(Arc::ptr_eq(&a.redactor, &again.redactor));
        let bob = s.open("user:bob", Some(&name), now).unwrap();
        assert!(!Arc::ptr_eq(&a.redactor, &bob.redactor));
        assert!(s.find("user:alice", "case-42", now).is_some());
        assert!(s.find("user:mallory", "case-42", now).is_none());
    }

    #[test]
    fn unnamed_requests_get_a_minted_session_and_stateless_modes_none() {
        let s = sessions(Replacement::Numbered, 10);
        let a = s.open("user:alice", None, Instant::now()).unwrap();
        let id = a.id.unwrap();
        assert!(id.starts_with("rs_") && id.len() == 35, "{id}");
        let p = sessions(Replacement::Placeholder, 10);
        assert!(
            p.open("user:alice", None, Instant::now())
                .unwrap()
                .id
                .is_none()
        );
    }

    #[test]
    fn sessions_expire_and_the_oldest_is_dropped_when_full() {
        let s = sessions(Replacement::Token, 2);
        let t0 = Instant::now();
        let n = |x: &'static str| HeaderValue::from_static(x);
        s.open("user:a", Some(&n("one")), t0).unwrap();
        s.open("user:a", Some(&n("two")), t0 + Duration::from_secs(1))
            .unwrap();
        s.open("user:a", Some(&n("three")), t0 + Duration::from_secs(2))
            .unwrap();
        let later = t0 + Duration::from_secs(3);
        assert!(s.find("user:a", "one", later).is_none(), "oldest dropped");
        assert!(s.find("user:a", "three", later).is_some());
        let expired = later + Duration::from_secs(61);
        assert!(s.find("user:a", "three", expired).is_none());
    }

    #[test]
    fn one_owner_cannot_push_out_everyone_elses_sessions() {
        let s = sessions(Replacement::Token, 10_000);
        let t0 = Instant::now();
        let alice = HeaderValue::from_static("alice-1");
        s.open("user:alice", Some(&alice), t0).unwrap();
        for i in 0..MAX_SESSIONS_PER_OWNER + 10 {
            let name = HeaderValue::from_str(&format!("m-{i}")).unwrap();
            s.open(
                "user:mallory",
                Some(&name),
                t0 + Duration::from_millis(i as u64 + 1),
            )
            .unwrap();
        }
        let later = t0 + Duration::from_secs(1);
        assert!(s.find("user:alice", "alice-1", later).is_some());
        assert!(
            s.find("user:mallory", "m-0", later).is_none(),
            "their own oldest went"
        );
        let last = format!("m-{}", MAX_SESSIONS_PER_OWNER + 9);
        assert!(s.find("user:mallory", &last, later).is_some());
    }

    #[test]
    fn bad_session_names_are_refused() {
        let s = sessions(Replacement::Token, 2);
        for bad in ["", "has space", "semi;colon", &"x".repeat(129)] {
            let v = HeaderValue::from_str(bad).unwrap();
            assert!(
                matches!(
                    s.open("user:a", Some(&v), Instant::now()),
                    Err(GatewayError::BadRequest(_))
                ),
                "{bad:?}"
            );
        }
        let non_utf8 = HeaderValue::from_bytes(b"caf\xe9").unwrap();
        assert!(s.open("user:a", Some(&non_utf8), Instant::now()).is_err());
    }

    #[test]
    fn a_delegated_request_belongs_to_the_user_it_acts_for() {
        let p = Principal {
            kind: PrincipalKind::Agent,
            id: "support-bot".into(),
            groups: vec![],
            on_behalf_of: vec![ztai_core::PrincipalRef {
                kind: PrincipalKind::User,
                id: "alice".into(),
            }],
            credential_id: "t".into(),
            device_posture: vec![],
        };
        assert_eq!(owner_of(&p), "user:alice");
    }
}
