//! Task tokens: Biscuit capability tokens that let an agent act for a user on one task.
//!
//! The gateway mints a token (`TokenAuthority::issue`) whose authority block names the agent, the
//! user it acts for with that user's groups, the rights of the task and its expiry. Whoever holds a
//! token can narrow it offline (`attenuate`) before handing it to a sub-agent: every appended block
//! can only add checks, and Biscuit's signature chain keeps blocks from being removed or altered,
//! so nobody can widen a token or extend its life.
//!
//! Why the shape: the authorizer trusts only the authority block and its own facts, so a `right`
//! fact written into an appended block is ignored, whatever it says. Effective rights are decided
//! by Datalog on every question (`VerifiedTaskToken::authorize`); the fields this module reads out
//! of blocks (agent, user, delegate, expiry) name the chain for policy and audit and give clear
//! errors, but never grant anything. Everything here is pure: no clock, no I/O — callers pass
//! `now` in Unix seconds.

use biscuit_auth::builder::{BlockBuilder, Term};
use biscuit_auth::{
    Algorithm, AuthorizerBuilder, AuthorizerLimits, Biscuit, KeyPair, PrivateKey, PublicKey,
    UnverifiedBiscuit,
};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;
use ztai_core::{Principal, PrincipalKind, PrincipalRef};

/// Format marker in every authority block, so a future layout can be told apart.
pub const TOKEN_FORMAT: i64 = 1;
/// Larger tokens are refused before decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longer delegation chains are refused before verification.
pub const MAX_BLOCKS: usize = 16;
/// The resource kinds a right can name.
pub const RIGHT_KINDS: [&str; 4] = ["model", "tool", "document", "destination"];

/// Why a task token was refused or could not be built. Messages never echo the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskTokenError {
    #[error("the task token is larger than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("the task token is not a readable Biscuit token: {0}")]
    Malformed(String),
    #[error("the task token has {0} blocks; at most {MAX_BLOCKS} are accepted")]
    TooManyBlocks(usize),
    #[error(
        "the task token's signature does not verify against this gateway's token key (it was minted or altered elsewhere)"
    )]
    BadSignature,
    #[error("the task token was not minted by ZTAI: {0}")]
    NotZtai(String),
    #[error("the task token expired at {0}; ask for a new one")]
    Expired(String),
    #[error("{0}")]
    Denied(String),
    #[error("invalid task grant: {0}")]
    InvalidGrant(String),
    #[error("cannot narrow the token: {0}")]
    InvalidNarrowing(String),
    #[error("invalid token key: {0}")]
    Key(String),
    #[error("cannot build the token: {0}")]
    Build(String),
}

/// One right of a task: a resource kind and a name (`*` for every resource of the kind).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Right {
    pub kind: String,
    pub name: String,
}

impl Right {
    pub fn new(kind: &str, name: &str) -> Self {
        Right {
            kind: kind.to_string(),
            name: name.to_string(),
        }
    }
}

/// The most an agent may ever reach, whatever token it holds: registered with the agent and
/// checked on every request, for the agent and for every sub-agent in a chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Ceiling {
    rights: Vec<Right>,
}

impl Ceiling {
    /// Parses `kind:name` entries (`model:small`, `tool:orders.lookup`, `document:*`).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut rights = Vec::with_capacity(entries.len());
        for e in entries {
            let (kind, name) = e.split_once(':').ok_or_else(|| {
                format!(
                    "ceiling entry `{}` must be `kind:name`, e.g. `model:gpt-4o-mini` or `tool:*`",
                    e.chars().take(64).collect::<String>()
                )
            })?;
            check_kind(kind)?;
            if name != "*" {
                check_name(kind, name)?;
            }
            rights.push(Right::new(kind, name));
        }
        Ok(Ceiling { rights })
    }

    pub fn allows(&self, kind: &str, name: &str) -> bool {
        self.rights
            .iter()
            .any(|r| r.kind == kind && (r.name == name || r.name == "*"))
    }

    /// Whether every resource `right` names is within the ceiling.
    pub fn covers(&self, right: &Right) -> bool {
        if right.name == "*" {
            self.rights
                .iter()
                .any(|r| r.kind == right.kind && r.name == "*")
        } else {
            self.allows(&right.kind, &right.name)
        }
    }

    pub fn entries(&self) -> Vec<String> {
        self.rights
            .iter()
            .map(|r| format!("{}:{}", r.kind, r.name))
            .collect()
    }
}

/// A name as principals, groups and resources use them: 1–128 letters, digits, `-_.@:/`, or `*`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@:/".contains(c))
}

fn check_name(what: &str, s: &str) -> Result<(), String> {
    if valid_name(s) {
        Ok(())
    } else {
        Err(format!(
            "{what} `{}` must be 1-128 characters of letters, digits, `-`, `_`, `.`, `@`, `:` or `/`",
            s.chars().take(64).collect::<String>()
        ))
    }
}

/// What a token is minted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskGrant {
    /// The registered agent that will hold the token.
    pub agent: String,
    /// The user the agent acts for.
    pub user: String,
    /// The user's groups at issue time; policy evaluates the user's rights with them.
    pub user_groups: Vec<String>,
    /// Free text naming the task, for people reading the audit log.
    pub task: Option<String>,
    pub rights: Vec<Right>,
    /// Unix seconds.
    pub expires_at: u64,
}

/// How a holder narrows a token before passing it on. `None` leaves that aspect as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Narrowing {
    /// The registered sub-agent that will hold the narrowed token.
    pub delegate_to: Option<String>,
    /// Per resource kind, the only names still allowed (an empty list allows none of the kind).
    pub only: BTreeMap<String, Vec<String>>,
    /// Unix seconds; must not be later than the token's current expiry.
    pub expires_at: Option<u64>,
}

/// The signing key of the task tokens a gateway accepts.
pub struct TokenAuthority {
    keypair: KeyPair,
}

impl std::fmt::Debug for TokenAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthority")
            .field("public_key", &self.public_key_hex())
            .finish_non_exhaustive()
    }
}

impl TokenAuthority {
    /// A new Ed25519 key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        TokenAuthority {
            keypair: KeyPair::new_with_algorithm(Algorithm::Ed25519),
        }
    }

    /// Reads a key saved with `private_key_hex`.
    pub fn from_private_key_hex(hex: &str) -> Result<Self, TaskTokenError> {
        let key = PrivateKey::from_bytes_hex(hex.trim(), Algorithm::Ed25519)
            .map_err(|e| TaskTokenError::Key(e.to_string()))?;
        Ok(TokenAuthority {
            keypair: KeyPair::from(&key),
        })
    }

    /// The private key as hex, for the key file; never log it.
    pub fn private_key_hex(&self) -> String {
        self.keypair.private().to_bytes_hex()
    }

    pub fn public_key_hex(&self) -> String {
        self.keypair.public().to_bytes_hex()
    }

    pub fn verifier(&self) -> TaskTokenVerifier {
        TaskTokenVerifier {
            root: self.keypair.public(),
        }
    }

    /// Mints a token for `grant`. Refuses grants that are empty, malformed or already expired.
    pub fn issue(&self, grant: &TaskGrant, now: u64) -> Result<String, TaskTokenError> {
        let invalid = TaskTokenError::InvalidGrant;
        check_name("agent", &grant.agent).map_err(invalid)?;
        check_name("user", &grant.user).map_err(invalid)?;
        for g in &grant.user_groups {
            check_name("group", g).map_err(invalid)?;
        }
        if grant.rights.is_empty() {
            return Err(invalid(
                "a task token needs at least one right (a model, tool, document or destination)"
                    .into(),
            ));
        }
        for r in &grant.rights {
            check_kind(&r.kind).map_err(invalid)?;
            if r.name != "*" {
                check_name(&r.kind, &r.name).map_err(invalid)?;
            }
        }
        if let Some(t) = &grant.task
            && (t.len() > 512 || t.chars().any(char::is_control))
        {
            return Err(invalid(
                "the task description must be at most 512 characters without control characters"
                    .into(),
            ));
        }
        if grant.expires_at <= now {
            return Err(invalid("the expiry must be in the future".into()));
        }
        let build = |e: biscuit_auth::error::Token| TaskTokenError::Build(e.to_string());
        let mut b = Biscuit::builder()
            .fact(fact("ztai_task_token", vec![Term::Integer(TOKEN_FORMAT)]))
            .map_err(build)?
            .fact(fact("agent", vec![Term::Str(grant.agent.clone())]))
            .map_err(build)?
            .fact(fact("user", vec![Term::Str(grant.user.clone())]))
            .map_err(build)?
            .fact(fact("expires", vec![Term::Date(grant.expires_at)]))
            .map_err(build)?;
        for g in &grant.user_groups {
            b = b
                .fact(fact("user_group", vec![Term::Str(g.clone())]))
                .map_err(build)?;
        }
        if let Some(t) = &grant.task {
            b = b
                .fact(fact("task", vec![Term::Str(t.clone())]))
                .map_err(build)?;
        }
        for r in &grant.rights {
            b = b
                .fact(fact(
                    "right",
                    vec![Term::Str(r.kind.clone()), Term::Str(r.name.clone())],
                ))
                .map_err(build)?;
        }
        let b = b
            .code_with_params(
                "check if time($t), $t <= {expiry};",
                HashMap::from([("expiry".to_string(), Term::Date(grant.expires_at))]),
                HashMap::new(),
            )
            .map_err(build)?;
        let claims = AuthorityClaims {
            ztai_task_token: TOKEN_FORMAT,
            agent: grant.agent.clone(),
            user: grant.user.clone(),
            user_groups: grant.user_groups.clone(),
            task: grant.task.clone(),
            expires_at: grant.expires_at,
        };
        let context =
            serde_json::to_string(&claims).map_err(|e| TaskTokenError::Build(e.to_string()))?;
        b.context(context)
            .build(&self.keypair)
            .and_then(|t| t.to_base64())
            .map_err(build)
    }
}

/// The authority block's context: what its facts say, as JSON, so verification reads the chain
/// without re-parsing Datalog. Written only by `issue`, under the gateway's signature.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct AuthorityClaims {
    ztai_task_token: i64,
    agent: String,
    user: String,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    task: Option<String>,
    expires_at: u64,
}

/// A narrowing block's context. A holder writes it, so it can only name (a delegate, an earlier
/// expiry); the block's checks are what narrow.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
struct NarrowingClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delegate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
}

fn check_kind(kind: &str) -> Result<(), String> {
    if RIGHT_KINDS.contains(&kind) {
        Ok(())
    } else {
        Err(format!(
            "resource kind `{}` must be one of {}",
            kind.chars().take(32).collect::<String>(),
            RIGHT_KINDS.join(", ")
        ))
    }
}

fn fact(name: &str, terms: Vec<Term>) -> biscuit_auth::builder::Fact {
    biscuit_auth::builder::Fact::new(name.to_string(), terms)
}

/// Decodes a token's bytes without checking any signature.
fn decode(token: &str) -> Result<UnverifiedBiscuit, TaskTokenError> {
    let token = token.trim();
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TaskTokenError::TooLarge);
    }
    let t = UnverifiedBiscuit::from_base64(token)
        .map_err(|e| TaskTokenError::Malformed(e.to_string()))?;
    // `block_count` includes the authority block.
    if t.block_count() > MAX_BLOCKS {
        return Err(TaskTokenError::TooManyBlocks(t.block_count()));
    }
    Ok(t)
}

/// What one block says, read from its Datalog source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlockClaims {
    pub index: usize,
    /// The block's Datalog, as Biscuit prints it.
    pub source: String,
    pub delegate: Option<String>,
    /// Unix seconds.
    pub expires_at: Option<u64>,
    /// Rights the authority block grants (ignored in other blocks: they cannot grant).
    pub rights: Vec<Right>,
    /// Names each narrowing check of this block still allows, per kind.
    pub only: BTreeMap<String, Vec<String>>,
    pub revocation_id: String,
}

/// Reads a block's facts by parsing the source Biscuit prints for it.
fn claims(source: String, index: usize, revocation_id: String) -> BlockClaims {
    let parsed = BlockBuilder::new().code(&source).unwrap_or_default();
    let mut c = BlockClaims {
        index,
        revocation_id,
        ..Default::default()
    };
    for f in &parsed.facts {
        let terms = &f.predicate.terms;
        match (f.predicate.name.as_str(), terms.as_slice()) {
            ("delegate", [Term::Str(s)]) => c.delegate = Some(s.clone()),
            ("expires", [Term::Date(d)]) => {
                c.expires_at = Some(c.expires_at.map_or(*d, |e| e.min(*d)))
            }
            ("right", [Term::Str(k), Term::Str(n)]) if index == 0 => {
                c.rights.push(Right::new(k, n))
            }
            ("only", [Term::Str(k), Term::Set(names)]) => {
                let names = names
                    .iter()
                    .filter_map(|t| match t {
                        Term::Str(s) => Some(s.clone()),
                        _ => None,
                    })
                    .collect();
                c.only.insert(k.clone(), names);
            }
            _ => {}
        }
    }
    c.source = source;
    c
}

fn authority_str(parsed: &BlockBuilder, name: &str) -> Vec<String> {
    parsed
        .facts
        .iter()
        .filter(|f| f.predicate.name == name)
        .filter_map(|f| match f.predicate.terms.as_slice() {
            [Term::Str(s)] => Some(s.clone()),
            _ => None,
        })
        .collect()
}

/// Everything a token says, read without trusting it (signature unchecked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenReport {
    pub agent: Option<String>,
    pub user: Option<String>,
    pub user_groups: Vec<String>,
    pub task: Option<String>,
    /// The earliest expiry any block states, Unix seconds.
    pub expires_at: Option<u64>,
    /// Delegates named by appended blocks, in order.
    pub delegates: Vec<String>,
    /// Rights of the authority block, each with whether every narrowing block still allows it.
    pub rights: Vec<Right>,
    /// The authority block's rights that every narrowing block still allows.
    pub effective_rights: Vec<Right>,
    pub blocks: Vec<BlockClaims>,
}

/// Reads a token without verifying it: for `ztai token inspect` and for a holder deciding how to
/// narrow. Nothing read here may be used to grant access.
pub fn inspect(token: &str) -> Result<TokenReport, TaskTokenError> {
    let t = decode(token)?;
    report(
        t.block_count(),
        |i| t.print_block_source(i),
        t.revocation_identifiers(),
    )
}

fn report(
    count: usize,
    source: impl Fn(usize) -> Result<String, biscuit_auth::error::Token>,
    revocation_ids: Vec<Vec<u8>>,
) -> Result<TokenReport, TaskTokenError> {
    let mut blocks = Vec::with_capacity(count);
    let mut authority = BlockBuilder::new();
    for i in 0..count {
        let src = source(i).map_err(|e| TaskTokenError::Malformed(e.to_string()))?;
        if i == 0 {
            authority = BlockBuilder::new().code(&src).unwrap_or_default();
        }
        let rid = revocation_ids.get(i).map(hex::encode).unwrap_or_default();
        blocks.push(claims(src, i, rid));
    }
    let one = |name: &str| authority_str(&authority, name).into_iter().next();
    let rights = blocks.first().map(|b| b.rights.clone()).unwrap_or_default();
    let effective_rights = rights
        .iter()
        .filter(|r| {
            blocks.iter().skip(1).all(|b| match b.only.get(&r.kind) {
                Some(names) => names.contains(&r.name),
                None => true,
            })
        })
        .cloned()
        .collect();
    Ok(TokenReport {
        agent: one("agent"),
        user: one("user"),
        user_groups: authority_str(&authority, "user_group"),
        task: one("task"),
        expires_at: blocks.iter().filter_map(|b| b.expires_at).min(),
        delegates: blocks
            .iter()
            .skip(1)
            .filter_map(|b| b.delegate.clone())
            .collect(),
        rights,
        effective_rights,
        blocks,
    })
}

/// Appends a narrowing block, offline: no key is needed and nothing is widened. Refuses a
/// narrowing that would allow something the token no longer allows, or outlive the token, so a
/// mistake is caught when it is made rather than when the sub-agent is refused.
pub fn attenuate(token: &str, narrowing: &Narrowing, now: u64) -> Result<String, TaskTokenError> {
    let t = decode(token)?;
    let current = report(
        t.block_count(),
        |i| t.print_block_source(i),
        t.revocation_identifiers(),
    )?;
    let bad = TaskTokenError::InvalidNarrowing;
    if let Some(d) = &narrowing.delegate_to {
        check_name("delegate", d).map_err(bad)?;
    }
    if let (Some(new), Some(old)) = (narrowing.expires_at, current.expires_at)
        && new > old
    {
        return Err(bad(format!(
            "the token expires at {}; a narrowed token cannot outlive it (asked for {})",
            rfc3339(old),
            rfc3339(new)
        )));
    }
    if let Some(new) = narrowing.expires_at
        && new <= now
    {
        return Err(bad("the new expiry must be in the future".into()));
    }
    for (kind, names) in &narrowing.only {
        check_kind(kind).map_err(bad)?;
        for n in names {
            check_name(kind, n).map_err(bad)?;
            let held = current
                .effective_rights
                .iter()
                .any(|r| &r.kind == kind && (&r.name == n || r.name == "*"));
            if !held {
                return Err(bad(format!(
                    "the token does not grant {kind} `{n}`, so a narrowed token cannot either"
                )));
            }
        }
    }
    if narrowing.delegate_to.is_none()
        && narrowing.only.is_empty()
        && narrowing.expires_at.is_none()
    {
        return Err(bad(
            "nothing to narrow: name a delegate, an expiry or the resources to keep".into(),
        ));
    }
    let build = |e: biscuit_auth::error::Token| TaskTokenError::Build(e.to_string());
    let mut b = BlockBuilder::new();
    if let Some(d) = &narrowing.delegate_to {
        b = b
            .fact(fact("delegate", vec![Term::Str(d.clone())]))
            .map_err(build)?;
    }
    if let Some(e) = narrowing.expires_at {
        b = b
            .fact(fact("expires", vec![Term::Date(e)]))
            .map_err(build)?
            .code_with_params(
                "check if time($t), $t <= {expiry};",
                HashMap::from([("expiry".to_string(), Term::Date(e))]),
                HashMap::new(),
            )
            .map_err(build)?;
    }
    for (kind, names) in &narrowing.only {
        let set = Term::Set(
            names
                .iter()
                .map(|n| Term::Str(n.clone()))
                .collect::<BTreeSet<_>>(),
        );
        b = b
            .fact(fact("only", vec![Term::Str(kind.clone()), set.clone()]))
            .map_err(build)?
            .code_with_params(
                "check if resource($k, $n), $k != {kind} or resource({kind}, $n), {names}.contains($n);",
                HashMap::from([
                    ("kind".to_string(), Term::Str(kind.clone())),
                    ("names".to_string(), set),
                ]),
                HashMap::new(),
            )
            .map_err(build)?;
    }
    let context = serde_json::to_string(&NarrowingClaims {
        delegate: narrowing.delegate_to.clone(),
        expires_at: narrowing.expires_at,
    })
    .map_err(|e| TaskTokenError::Build(e.to_string()))?;
    t.append(b.context(context))
        .and_then(|t| t.to_base64())
        .map_err(build)
}

/// Checks task tokens against the gateway's public key.
#[derive(Debug, Clone)]
pub struct TaskTokenVerifier {
    root: PublicKey,
}

impl TaskTokenVerifier {
    pub fn from_public_key_hex(hex: &str) -> Result<Self, TaskTokenError> {
        Ok(TaskTokenVerifier {
            root: PublicKey::from_bytes_hex(hex.trim(), Algorithm::Ed25519)
                .map_err(|e| TaskTokenError::Key(e.to_string()))?,
        })
    }

    /// Checks the signature chain and the authority block's shape. Does not check time or rights:
    /// `VerifiedTaskToken::authorize` answers those per question.
    pub fn verify(&self, token: &str) -> Result<VerifiedTaskToken, TaskTokenError> {
        let unverified = decode(token)?;
        let biscuit = unverified
            .verify(self.root)
            .map_err(|_| TaskTokenError::BadSignature)?;
        let contexts = biscuit.context();
        let authority: AuthorityClaims = contexts
            .first()
            .and_then(|c| c.as_deref())
            .and_then(|c| serde_json::from_str(c).ok())
            .ok_or_else(|| {
                TaskTokenError::NotZtai("its authority block carries no ZTAI claims".into())
            })?;
        if authority.ztai_task_token != TOKEN_FORMAT {
            return Err(TaskTokenError::NotZtai(format!(
                "token format {} is not {TOKEN_FORMAT}",
                authority.ztai_task_token
            )));
        }
        let mut delegates = Vec::new();
        let mut expires_at = authority.expires_at;
        for (i, c) in contexts.iter().enumerate().skip(1) {
            // A block written with other Biscuit tools has no claims: its checks still apply.
            let Some(claims) = c
                .as_deref()
                .and_then(|c| serde_json::from_str::<NarrowingClaims>(c).ok())
            else {
                continue;
            };
            if let Some(d) = claims.delegate {
                if !valid_name(&d) {
                    return Err(TaskTokenError::Malformed(format!(
                        "block {i} names an invalid delegate"
                    )));
                }
                delegates.push(d);
            }
            if let Some(e) = claims.expires_at {
                expires_at = expires_at.min(e);
            }
        }
        Ok(VerifiedTaskToken {
            agent: authority.agent,
            user: authority.user,
            user_groups: authority.user_groups,
            delegates,
            task: authority.task,
            expires_at,
            revocation_ids: biscuit
                .revocation_identifiers()
                .iter()
                .map(hex::encode)
                .collect(),
            biscuit,
        })
    }
}

/// A token whose signatures checked out, with what its blocks name.
#[derive(Debug, Clone)]
pub struct VerifiedTaskToken {
    pub agent: String,
    pub user: String,
    pub user_groups: Vec<String>,
    /// Sub-agents the token was narrowed for, in order; the last one holds it.
    pub delegates: Vec<String>,
    pub task: Option<String>,
    /// The earliest expiry any block states, Unix seconds.
    pub expires_at: u64,
    /// Hex revocation ids, one per block: revoking any of them revokes this token and every
    /// token narrowed from the block onward.
    pub revocation_ids: Vec<String>,
    biscuit: Biscuit,
}

impl VerifiedTaskToken {
    /// The agent that presents the token: the last delegate, or the agent it was minted for.
    pub fn actor(&self) -> &str {
        self.delegates.last().unwrap_or(&self.agent)
    }

    /// Every agent in the chain, outermost first (the minted-for agent, then delegates).
    pub fn agents(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.agent.as_str()).chain(self.delegates.iter().map(String::as_str))
    }

    /// Names the token in audit records: the id of its authority block, which every token
    /// narrowed from it shares.
    pub fn credential_id(&self) -> String {
        format!(
            "task_token:{}",
            self.revocation_ids
                .first()
                .map(String::as_str)
                .unwrap_or("")
        )
    }

    /// The principal the gateway sees: the acting agent, acting for the user and the agents
    /// before it. `groups` are the acting agent's registered groups.
    pub fn principal(&self, groups: Vec<String>) -> Principal {
        let mut chain = vec![PrincipalRef {
            kind: PrincipalKind::User,
            id: self.user.clone(),
        }];
        let agents: Vec<&str> = self.agents().collect();
        if let Some((_, before)) = agents.split_last() {
            chain.extend(before.iter().map(|a| PrincipalRef {
                kind: PrincipalKind::Agent,
                id: (*a).to_string(),
            }));
        }
        Principal {
            kind: PrincipalKind::Agent,
            id: self.actor().to_string(),
            groups,
            on_behalf_of: chain,
            credential_id: self.credential_id(),
            device_posture: Vec::new(),
        }
    }

    /// Whether every block of the token lets it reach `kind`/`name` at `now`. Runs the Datalog
    /// of every block with bounded resources; any failure is a refusal.
    pub fn authorize(&self, kind: &str, name: &str, now: u64) -> Result<(), TaskTokenError> {
        if now > self.expires_at {
            return Err(TaskTokenError::Expired(rfc3339(self.expires_at)));
        }
        let refused = |e: biscuit_auth::error::Token| {
            TaskTokenError::Denied(format!("the task token could not be evaluated: {e}"))
        };
        let template = ACCESS_POLICIES.as_ref().map_err(|e| {
            TaskTokenError::Denied(format!(
                "the task token could not be evaluated: the gateway's access policies do not parse: {e}"
            ))
        })?;
        let mut authorizer = template
            .clone()
            .fact(fact("time", vec![Term::Date(now)]))
            .map_err(refused)?
            .fact(fact(
                "resource",
                vec![Term::Str(kind.to_string()), Term::Str(name.to_string())],
            ))
            .map_err(refused)?
            .set_limits(AuthorizerLimits {
                max_facts: 1000,
                max_iterations: 100,
                max_time: Duration::from_millis(5),
            })
            .build(&self.biscuit)
            .map_err(refused)?;
        match authorizer.authorize() {
            Ok(_) => Ok(()),
            Err(biscuit_auth::error::Token::FailedLogic(logic)) => Err(explain(logic, kind, name)),
            Err(e) => Err(refused(e)),
        }
    }
}

/// The authorizer's policies, parsed once: parsing them for every token was a fifth of a first
/// sight's Datalog time.
static ACCESS_POLICIES: std::sync::LazyLock<Result<AuthorizerBuilder, String>> =
    std::sync::LazyLock::new(|| {
        AuthorizerBuilder::new()
            .code(
                "allow if resource($k, $n), right($k, $n); allow if resource($k, $n), right($k, \"*\");",
            )
            .map_err(|e| e.to_string())
    });

fn explain(logic: biscuit_auth::error::Logic, kind: &str, name: &str) -> TaskTokenError {
    use biscuit_auth::error::{FailedCheck, Logic};
    let checks = match &logic {
        Logic::Unauthorized { checks, .. } | Logic::NoMatchingPolicy { checks } => checks.clone(),
        _ => Vec::new(),
    };
    for c in &checks {
        if let FailedCheck::Block(b) = c {
            if b.rule.contains("time(") {
                return TaskTokenError::Expired(format!(
                    "the time block {} allows (check `{}`)",
                    b.block_id, b.rule
                ));
            }
            return TaskTokenError::Denied(format!(
                "the task token does not allow {kind} `{name}`: block {} narrows it away (`{}`)",
                b.block_id, b.rule
            ));
        }
    }
    TaskTokenError::Denied(format!(
        "the task token does not grant {kind} `{name}`; ask for a token that includes it"
    ))
}

/// Verified tokens by digest, so a repeated token costs a hash and a lookup, and each token's
/// recent answers, keyed by the resource and the second they were given for: Biscuit time has
/// one-second resolution, so an answer is exact for the rest of its second. Revocation is not
/// cached here; the caller checks it on every use.
#[derive(Debug)]
pub struct TaskTokenCache {
    tokens: std::sync::RwLock<HashMap<[u8; 32], std::sync::Arc<CachedTaskToken>>>,
    capacity: usize,
}

/// One verified token with its recent answers.
#[derive(Debug)]
pub struct CachedTaskToken {
    pub token: VerifiedTaskToken,
    answers: std::sync::Mutex<HashMap<(String, String), Answer>>,
}

const ANSWERS_PER_TOKEN: usize = 256;

/// An answer and the Unix second it holds for.
type Answer = (u64, Result<(), TaskTokenError>);

impl CachedTaskToken {
    pub fn new(token: VerifiedTaskToken) -> Self {
        CachedTaskToken {
            token,
            answers: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// `VerifiedTaskToken::authorize`, answered from memory within the same second.
    pub fn authorize(&self, kind: &str, name: &str, now: u64) -> Result<(), TaskTokenError> {
        let key = (kind.to_string(), name.to_string());
        {
            let answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, answer)) = answers.get(&key)
                && *at == now
            {
                return answer.clone();
            }
        }
        let answer = self.token.authorize(kind, name, now);
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        if answers.len() >= ANSWERS_PER_TOKEN {
            answers.clear();
        }
        answers.insert(key, (now, answer.clone()));
        answer
    }
}

impl TaskTokenCache {
    pub fn new(capacity: usize) -> Self {
        TaskTokenCache {
            tokens: std::sync::RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn digest(token: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(token.trim().as_bytes()).into()
    }

    /// The verified token, from memory or by verifying it now. Only successes are kept.
    pub fn get_or_verify(
        &self,
        token: &str,
        verifier: &TaskTokenVerifier,
    ) -> Result<std::sync::Arc<CachedTaskToken>, TaskTokenError> {
        let digest = Self::digest(token);
        if let Some(hit) = self
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&digest)
        {
            return Ok(hit.clone());
        }
        let verified = std::sync::Arc::new(CachedTaskToken::new(verifier.verify(token)?));
        let mut tokens = self.tokens.write().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= self.capacity {
            tokens.clear();
        }
        tokens.insert(digest, verified.clone());
        Ok(verified)
    }

    pub fn clear(&self) {
        self.tokens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub fn len(&self) -> usize {
        self.tokens.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// RFC 3339 UTC for Unix seconds.
pub fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

#[cfg(test)]
mod tests;
