//! Agents, task tokens and revocation, as the gateway holds them.
//!
//! The registry of agents and the revocation list live in the store; the gateway keeps both in
//! memory so the request path never waits on SQLite, applies changes made through its own admin
//! API at once, and follows the store every `revocation_poll` so a change made through another
//! replica takes effect within that interval. The token signing key is created on first start in
//! the data directory, readable only by its owner, with its public half beside it.

use crate::GatewayError;
use crate::error::StartError;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use ztai_core::{
    Action, Decision, PolicyDecision, Principal, PrincipalKind, PrincipalRef, Resource,
};
use ztai_identity::task_token::{
    CachedTaskToken, Ceiling, TaskTokenCache, TaskTokenVerifier, TokenAuthority, VerifiedTaskToken,
};
use ztai_store::AgentRow;
use ztai_store::prelude::*;

/// The task token signing key in a data directory (hex, owner-only).
pub fn token_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("task-token.key")
}

/// The task token public key in a data directory (hex), for offline verification.
pub fn token_public_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("task-token.pub")
}

/// Policy ids that name the identity layer's own refusals in decisions and audit records.
pub const TOKEN_SCOPE_POLICY: &str = "ztai:task-token-scope";
pub const CEILING_POLICY: &str = "ztai:agent-ceiling";

/// What a token is asked for, from either issuing path (admin API or the user's own call).
#[derive(Debug, Clone)]
pub struct MintRequest {
    pub agent: String,
    pub user: String,
    pub user_groups: Vec<String>,
    pub models: Vec<String>,
    pub tools: Vec<String>,
    /// Further rights as `kind:name`.
    pub resources: Vec<String>,
    pub ttl_secs: Option<u64>,
    pub task: Option<String>,
}

/// The answer to a mint: the token and what it says, as the API returns it.
#[derive(Debug, Clone)]
pub struct MintedToken {
    pub json: serde_json::Value,
}

/// A registered agent as the request path needs it.
#[derive(Debug, Clone)]
pub struct AgentEntry {
    pub row: AgentRow,
    pub ceiling: Ceiling,
}

impl AgentEntry {
    pub fn from_row(row: AgentRow) -> Result<Self, String> {
        Ok(AgentEntry {
            ceiling: Ceiling::parse(&row.ceiling)?,
            row,
        })
    }

    pub fn revoked(&self) -> bool {
        self.row.revoked_at.is_some()
    }
}

#[derive(Debug, Default)]
struct Revoked {
    tokens: HashSet<String>,
    users: HashSet<String>,
    last_seq: i64,
}

/// Agents, the token key and what has been revoked.
#[derive(Debug)]
pub struct Delegation {
    pub authority: TokenAuthority,
    verifier: TaskTokenVerifier,
    cache: TaskTokenCache,
    agents: RwLock<HashMap<String, AgentEntry>>,
    revoked: RwLock<Revoked>,
}

/// Loads the token key, creating it on first start.
fn load_or_create_authority(data_dir: &Path) -> Result<TokenAuthority, StartError> {
    let path = token_key_path(data_dir);
    let failed = |message: String| StartError::TokenKey {
        path: path.display().to_string(),
        message,
    };
    match std::fs::read_to_string(&path) {
        Ok(hex) => TokenAuthority::from_private_key_hex(&hex).map_err(|e| failed(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let authority = TokenAuthority::generate();
            ztai_audit::keyfile::create_private(&path, authority.private_key_hex().as_bytes())
                .map_err(|e| failed(e.to_string()))?;
            std::fs::write(
                token_public_key_path(data_dir),
                format!("{}\n", authority.public_key_hex()),
            )
            .map_err(|e| failed(e.to_string()))?;
            Ok(authority)
        }
        Err(e) => Err(failed(e.to_string())),
    }
}

impl Delegation {
    pub fn load(data_dir: &Path, store: &dyn AgentStore) -> Result<Self, StartError> {
        let authority = load_or_create_authority(data_dir)?;
        let d = Delegation {
            verifier: authority.verifier(),
            authority,
            cache: TaskTokenCache::new(50_000),
            agents: RwLock::new(HashMap::new()),
            revoked: RwLock::new(Revoked::default()),
        };
        d.refresh(store)?;
        Ok(d)
    }

    /// Re-reads the agents and any revocations recorded since the last look.
    pub fn refresh(&self, store: &dyn AgentStore) -> Result<(), ztai_store::StoreError> {
        let mut agents = HashMap::new();
        let mut corrupt = Vec::new();
        for row in store.list_agents()? {
            let id = row.agent_id.clone();
            match AgentEntry::from_row(row) {
                Ok(entry) => {
                    agents.insert(id, entry);
                }
                // A corrupt row must not leave the agent usable: it is dropped, so the agent is
                // refused as unregistered until the row is fixed.
                Err(e) => {
                    tracing::error!(agent = %id, error = %e, "a stored agent is corrupt; refusing it");
                    corrupt.push(id);
                }
            }
        }
        {
            // Merge rather than replace: an agent registered or revoked through this gateway's
            // admin API a moment ago may not be in what was just read, and a revocation must
            // never be undone by a stale read. Agents are never deleted, so keeping is safe.
            let mut current = self.agents.write().unwrap_or_else(|p| p.into_inner());
            for (id, known) in current.drain() {
                match agents.get_mut(&id) {
                    None => {
                        agents.insert(id, known);
                    }
                    Some(read) if known.revoked() && !read.revoked() => *read = known,
                    Some(_) => {}
                }
            }
            for id in &corrupt {
                agents.remove(id);
            }
            *current = agents;
        }
        let after = self
            .revoked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .last_seq;
        let rows = store.revocations_after(after)?;
        let mut revoked = self.revoked.write().unwrap_or_else(|p| p.into_inner());
        for r in rows {
            match r.kind.as_str() {
                "token" => {
                    revoked.tokens.insert(r.subject);
                }
                "user" => {
                    revoked.users.insert(r.subject);
                }
                _ => {}
            }
            revoked.last_seq = revoked.last_seq.max(r.seq);
        }
        Ok(())
    }

    pub fn agent(&self, id: &str) -> Option<AgentEntry> {
        self.agents
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    pub fn agents(&self) -> Vec<AgentEntry> {
        let mut all: Vec<_> = self
            .agents
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.row.agent_id.cmp(&b.row.agent_id));
        all
    }

    /// Puts an agent (new or just revoked) into memory.
    pub fn put_agent(&self, entry: AgentEntry) {
        self.agents
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(entry.row.agent_id.clone(), entry);
    }

    /// Applies a revocation in memory; the caller also stores it.
    pub fn revoke(&self, kind: &str, subject: &str) {
        let mut r = self.revoked.write().unwrap_or_else(|p| p.into_inner());
        match kind {
            "token" => r.tokens.insert(subject.to_string()),
            _ => r.users.insert(subject.to_string()),
        };
    }

    pub fn user_revoked(&self, id: &str) -> bool {
        self.revoked
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .users
            .contains(id)
    }

    /// Refuses principals that are revoked (users by id) and agents that are not registered or
    /// were revoked.
    pub fn check_principal(&self, p: &Principal) -> Result<(), GatewayError> {
        match p.kind {
            PrincipalKind::User if self.user_revoked(&p.id) => Err(GatewayError::Unauthenticated(
                format!("user `{}` has been revoked; ask an administrator", p.id),
            )),
            PrincipalKind::Agent => match self.agent(&p.id) {
                None => Err(GatewayError::Unauthenticated(format!(
                    "agent `{}` is not registered; register it with `ztai agents register` (owner, purpose, ceiling)",
                    p.id
                ))),
                Some(a) if a.revoked() => Err(GatewayError::Unauthenticated(format!(
                    "agent `{}` has been revoked; ask its owner",
                    p.id
                ))),
                Some(_) => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Verifies a task token (from the cache when seen before) and checks, every time, that it,
    /// its user and every agent in its chain are still in good standing.
    pub fn authenticate(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(Principal, Arc<CachedTaskToken>), GatewayError> {
        let cached = self
            .cache
            .get_or_verify(token, &self.verifier)
            .map_err(|e| GatewayError::Unauthenticated(e.to_string()))?;
        let t = &cached.token;
        if now > t.expires_at {
            return Err(GatewayError::Unauthenticated(format!(
                "the task token expired at {}; ask for a new one",
                ztai_identity::task_token::rfc3339(t.expires_at)
            )));
        }
        {
            let revoked = self.revoked.read().unwrap_or_else(|p| p.into_inner());
            if let Some(id) = t
                .revocation_ids
                .iter()
                .find(|id| revoked.tokens.contains(*id))
            {
                return Err(GatewayError::Unauthenticated(format!(
                    "the task token has been revoked (revocation id {}…); ask for a new one",
                    id.get(..16).unwrap_or(id)
                )));
            }
            if revoked.users.contains(&t.user) {
                return Err(GatewayError::Unauthenticated(format!(
                    "user `{}`, for whom this task token acts, has been revoked",
                    t.user
                )));
            }
        }
        let agents = self.agents.read().unwrap_or_else(|p| p.into_inner());
        for a in t.agents() {
            match agents.get(a) {
                None => {
                    return Err(GatewayError::Unauthenticated(format!(
                        "agent `{a}` in the task token's chain is not registered; register it with `ztai agents register`"
                    )));
                }
                Some(e) if e.revoked() => {
                    return Err(GatewayError::Unauthenticated(format!(
                        "agent `{a}` in the task token's chain has been revoked"
                    )));
                }
                Some(_) => {}
            }
        }
        let groups = agents
            .get(t.actor())
            .map(|e| e.row.groups.clone())
            .unwrap_or_default();
        Ok((t.principal(groups), cached.clone()))
    }

    /// Mints a task token after the checks every issuing path shares: the agent is registered
    /// and active, the user is not revoked, every right is within the agent's ceiling and the
    /// life is within `max_ttl`.
    pub fn mint(&self, request: MintRequest, max_ttl: u64) -> Result<MintedToken, GatewayError> {
        let agent = self.agent(&request.agent).ok_or_else(|| {
            GatewayError::NotFound(format!(
                "agent `{}` is not registered; register it first (`ztai agents register`)",
                request.agent
            ))
        })?;
        if agent.revoked() {
            return Err(GatewayError::Conflict(format!(
                "agent `{}` has been revoked",
                request.agent
            )));
        }
        if self.user_revoked(&request.user) {
            return Err(GatewayError::Conflict(format!(
                "user `{}` has been revoked",
                request.user
            )));
        }
        use ztai_identity::task_token::Right;
        let mut rights: Vec<Right> = Vec::new();
        rights.extend(request.models.iter().map(|m| Right::new("model", m)));
        rights.extend(request.tools.iter().map(|t| Right::new("tool", t)));
        for e in Ceiling::parse(&request.resources)
            .map_err(GatewayError::Unprocessable)?
            .entries()
        {
            if let Some((k, n)) = e.split_once(':') {
                rights.push(Right::new(k, n));
            }
        }
        if let Some(r) = rights.iter().find(|r| !agent.ceiling.covers(r)) {
            return Err(GatewayError::Forbidden(format!(
                "agent `{}` may never use {} `{}`: it is outside the agent's registered ceiling ({})",
                request.agent,
                r.kind,
                r.name,
                agent.row.ceiling.join(", ")
            )));
        }
        let ttl = request.ttl_secs.unwrap_or(900.min(max_ttl));
        if ttl == 0 || ttl > max_ttl {
            return Err(GatewayError::Unprocessable(format!(
                "`ttl_secs` must be between 1 and {max_ttl} (identity.tokens.max_ttl_secs)"
            )));
        }
        let now = crate::clock::unix_now();
        let grant = ztai_identity::task_token::TaskGrant {
            agent: request.agent,
            user: request.user,
            user_groups: request.user_groups,
            task: request.task,
            rights,
            expires_at: now + ttl,
        };
        let token = self
            .authority
            .issue(&grant, now)
            .map_err(|e| GatewayError::Unprocessable(e.to_string()))?;
        let revocation_id = self
            .verifier
            .verify(&token)
            .map_err(|e| GatewayError::StageFailed {
                stage: crate::error::Stage::Identity,
                message: format!("a freshly minted token did not verify: {e}"),
            })?
            .revocation_ids
            .first()
            .cloned()
            .unwrap_or_default();
        Ok(MintedToken {
            json: serde_json::json!({
                "token": token,
                "credential_id": format!("task_token:{revocation_id}"),
                "revocation_id": revocation_id,
                "principal": format!("agent:{}", grant.agent),
                "on_behalf_of": format!("user:{}", grant.user),
                "groups": grant.user_groups,
                "rights": grant.rights.iter().map(|r| format!("{}:{}", r.kind, r.name)).collect::<Vec<_>>(),
                "task": grant.task,
                "expires_at": ztai_identity::task_token::rfc3339(grant.expires_at),
                "note": "the token is a bearer credential; hand it to the agent only",
            }),
        })
    }

    /// The principals whose rights a delegated request must all have: the user, then each agent.
    pub fn chain(&self, token: &VerifiedTaskToken) -> Vec<Principal> {
        let agents = self.agents.read().unwrap_or_else(|p| p.into_inner());
        let mut before = Vec::new();
        let mut chain = vec![Principal {
            kind: PrincipalKind::User,
            id: token.user.clone(),
            groups: token.user_groups.clone(),
            on_behalf_of: Vec::new(),
            credential_id: token.credential_id(),
            device_posture: Vec::new(),
        }];
        before.push(PrincipalRef {
            kind: PrincipalKind::User,
            id: token.user.clone(),
        });
        for a in token.agents() {
            chain.push(Principal {
                kind: PrincipalKind::Agent,
                id: a.to_string(),
                groups: agents
                    .get(a)
                    .map(|e| e.row.groups.clone())
                    .unwrap_or_default(),
                on_behalf_of: before.clone(),
                credential_id: token.credential_id(),
                device_posture: Vec::new(),
            });
            before.push(PrincipalRef {
                kind: PrincipalKind::Agent,
                id: a.to_string(),
            });
        }
        chain
    }

    /// The identity layer's half of authorising a delegated request: every block of the token
    /// and the ceiling of every agent in its chain must allow the resource. `None` when they do.
    pub fn scope_denial(
        &self,
        cached: &CachedTaskToken,
        action: Action,
        resource: &Resource,
        now: u64,
    ) -> Option<PolicyDecision> {
        let (kind, name) = match right_of(action, resource, TOKEN_SCOPE_POLICY) {
            Ok(r) => r,
            Err(d) => return Some(d),
        };
        if let Some(d) = self.ceiling_denial(cached.token.agents(), kind, name) {
            return Some(d);
        }
        match cached.authorize(kind, name, now) {
            Ok(()) => None,
            Err(e) => Some(deny(TOKEN_SCOPE_POLICY, e.to_string())),
        }
    }

    /// An agent acting on its own behalf (an API key or a certificate of kind agent) is held to
    /// its ceiling too: the ceiling is what it may ever use, whatever the credential.
    pub fn own_ceiling_denial(
        &self,
        agent: &str,
        action: Action,
        resource: &Resource,
    ) -> Option<PolicyDecision> {
        match right_of(action, resource, CEILING_POLICY) {
            Ok((kind, name)) => self.ceiling_denial(std::iter::once(agent), kind, name),
            Err(d) => Some(d),
        }
    }

    fn ceiling_denial<'a>(
        &self,
        agents_in_chain: impl Iterator<Item = &'a str>,
        kind: &str,
        name: &str,
    ) -> Option<PolicyDecision> {
        let agents = self.agents.read().unwrap_or_else(|p| p.into_inner());
        for a in agents_in_chain {
            let allowed = agents.get(a).is_some_and(|e| e.ceiling.allows(kind, name));
            if !allowed {
                return Some(deny(
                    CEILING_POLICY,
                    format!(
                        "agent `{a}` may never use {kind} `{name}`: it is outside the agent's registered ceiling"
                    ),
                ));
            }
        }
        None
    }
}

fn deny(policy: &str, reason: String) -> PolicyDecision {
    PolicyDecision {
        decision: Decision::Deny,
        policies: vec![policy.to_string()],
        reasons: vec![reason],
        obligations: Vec::new(),
        errors: Vec::new(),
    }
}

/// The right a resource needs (`kind`, `name`); agents never reach the control plane.
fn right_of<'r>(
    action: Action,
    resource: &'r Resource,
    policy: &str,
) -> Result<(&'static str, &'r str), PolicyDecision> {
    let kind = match resource {
        Resource::Model(_) => "model",
        Resource::Tool(_) => "tool",
        Resource::Document(_) | Resource::Dataset(_) => "document",
        Resource::Destination(_) => "destination",
        Resource::Api(_) if action == Action::Reveal => {
            return Err(deny(
                policy,
                "an agent never sees back redacted values; the user it acts for can, with their own credential (`POST /v1/reveal`)".into(),
            ));
        }
        Resource::Api(_) => {
            return Err(deny(
                policy,
                format!(
                    "an agent cannot `{action}` on the control plane; use an administrator's credential"
                ),
            ));
        }
        Resource::Approval(_) => {
            return Err(deny(
                policy,
                "an agent acting for a user cannot decide approvals; an approver decides with their own credential".into(),
            ));
        }
        Resource::Agent(_) => {
            return Err(deny(
                policy,
                "an agent cannot mint task tokens; narrow the token you hold offline (`ztai token attenuate`) to hand it on".into(),
            ));
        }
    };
    Ok((kind, resource.id()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn row(id: &str, revoked: bool) -> AgentRow {
        AgentRow {
            agent_id: id.into(),
            owner: "alice".into(),
            purpose: "tests".into(),
            groups: vec!["agents".into()],
            ceiling: vec!["model:small".into()],
            created_at: "2026-11-22T00:00:00Z".into(),
            created_by: "user:admin".into(),
            revoked_at: revoked.then(|| "2026-11-22T01:00:00Z".into()),
            revoked_by: revoked.then(|| "user:admin".into()),
        }
    }

    #[test]
    fn a_stale_read_of_the_store_never_undoes_a_revocation_or_loses_an_agent() {
        let dir = tempfile::tempdir().unwrap();
        let store = ztai_store::Sqlite::open(&dir.path().join("ztai.db")).unwrap();
        store.insert_agent(&row("bot", false)).unwrap();
        let d = Delegation::load(dir.path(), &store).unwrap();
        assert!(d.agent("bot").is_some_and(|a| !a.revoked()));
        // Revoked in memory (the admin API) before the store write lands…
        d.put_agent(AgentEntry::from_row(row("bot", true)).unwrap());
        // …and registered in memory only, as between the store insert and the next read.
        d.put_agent(AgentEntry::from_row(row("fresh", false)).unwrap());
        d.refresh(&store).unwrap();
        assert!(
            d.agent("bot").is_some_and(|a| a.revoked()),
            "a stale read undid a revocation"
        );
        assert!(d.agent("fresh").is_some(), "a stale read lost a new agent");
        // The key file is created once, owner-only, and reused.
        let again = Delegation::load(dir.path(), &store).unwrap();
        assert_eq!(
            again.authority.public_key_hex(),
            d.authority.public_key_hex()
        );
    }

    #[test]
    fn revocations_recorded_elsewhere_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ztai_store::Sqlite::open(&dir.path().join("ztai.db")).unwrap();
        let d = Delegation::load(dir.path(), &store).unwrap();
        assert!(!d.user_revoked("bob"));
        store
            .insert_revocation("user", "bob", "t", "user:admin", "left")
            .unwrap();
        d.refresh(&store).unwrap();
        assert!(d.user_revoked("bob"));
        let bob = Principal {
            kind: PrincipalKind::User,
            id: "bob".into(),
            groups: vec![],
            on_behalf_of: vec![],
            credential_id: "k".into(),
            device_posture: Vec::new(),
        };
        assert!(d.check_principal(&bob).is_err());
    }
}
