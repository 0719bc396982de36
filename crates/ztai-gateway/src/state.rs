//! The gateway's shared state and its construction from a validated `Config`.
//!
//! The policy engine sits behind an `ArcSwap`: request tasks load the current engine without a
//! lock, and a reload validates a new set completely before swapping it in, so an invalid set never
//! serves and the running one keeps going.

use crate::config::{Config, ConfigError, ModelConfig};
use crate::limits::RateLimiter;
use crate::metrics::{Metrics, Outcome};
use crate::upstream::{HttpClient, build_client};
use arc_swap::ArcSwap;
use http::HeaderValue;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;
use ztai_audit::{AuditLog, AuditLogConfig};
use ztai_core::{Decision, PrincipalKind};
use ztai_identity::{ApiKeyRegistry, KeyEntry};
use ztai_inspect::Inspector;
use ztai_policy::{PolicyEngine, PolicyError};
use ztai_store::prelude::*;

use crate::error::StartError;

/// Everything a request needs, shared by all request tasks.
#[derive(Debug)]
pub struct Gateway {
    pub(crate) config: Config,
    pub(crate) policy: ArcSwap<PolicyEngine>,
    pub(crate) policy_version: std::sync::atomic::AtomicI64,
    /// The documents catalogue (configuration over the store's registry) and the registry
    /// version it was read at.
    pub(crate) documents: ArcSwap<crate::documents::Documents>,
    pub(crate) documents_version: std::sync::atomic::AtomicI64,
    pub(crate) keys: RwLock<ApiKeyRegistry>,
    /// Trusted JWT issuers with their current key sets.
    pub(crate) jwt: Arc<crate::jwt::JwtIssuers>,
    /// Agents, the task token key and revocations.
    pub(crate) delegation: crate::delegation::Delegation,
    /// Principals' risk scores, fed by their requests' findings.
    pub(crate) risk: ztai_identity::risk::RiskScores,
    pub(crate) inspector: Inspector,
    pub(crate) audit: AuditLog,
    /// The verifier key of this gateway's checkpoint signatures (`name+id+key`).
    pub(crate) audit_verifier_key: String,
    /// Requests held for approval and the key that signs decisions.
    pub(crate) approvals: crate::approvals::Approvals,
    /// Replaces configured principals' identifiers in audit records.
    pub(crate) pseudonymiser: Option<ztai_audit::pseudonym::Pseudonymiser>,
    pub(crate) limiter: RateLimiter,
    /// Failed authentications per client address, and what limited addresses were refused.
    pub(crate) preauth: crate::preauth::PreAuth,
    pub(crate) metrics: Metrics,
    /// For webhooks, JWKS and MCP servers.
    pub(crate) client: HttpClient,
    /// One per model upstream, with that upstream's connect timeout.
    pub(crate) upstream_clients: HashMap<String, HttpClient>,
    pub(crate) upstream_auth: HashMap<String, Option<HeaderValue>>,
    pub(crate) models: HashMap<String, ModelConfig>,
    /// Where registry-gated models' traffic goes (the deployment gate).
    pub(crate) model_routes: ArcSwap<crate::model_gate::ModelRoutes>,
    /// The store, through its domain traits (a pool of connections for SQLite): keys, agents,
    /// approvals, registries, policy versions, audit queries.
    pub(crate) store: Arc<dyn Backend>,
    /// The MCP servers fronted at `/mcp/{server}` and the session key.
    pub(crate) mcp: crate::mcp::Mcp,
    /// Open redaction sessions (numbering, hash keys, token vaults), in memory only.
    pub(crate) redaction: crate::redaction::RedactionSessions,
    /// The policy directory as it was when the running set was read, so a change made at any
    /// moment after that — even before the watcher first runs — is seen.
    /// The policy directory as last applied, and a change seen once but not yet settled.
    policy_signature: Mutex<(DirSignature, Option<DirSignature>)>,
}

type DirSignature = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// How long a decided or expired approval request is kept after its deadline (its audit
/// records stay for the audit log's own retention).
const APPROVAL_RETENTION_SECS: i64 = 30 * 86_400;

pub(crate) fn entry_from_row(row: &ztai_store::KeyRow) -> Option<(String, KeyEntry)> {
    let hash: [u8; 32] = row.secret_hash.as_slice().try_into().ok()?;
    Some((
        row.key_id.clone(),
        KeyEntry {
            secret_hash: hash,
            principal_kind: PrincipalKind::parse(&row.principal_kind)?,
            principal_id: row.principal_id.clone(),
            groups: row.groups.clone(),
            revoked: row.revoked_at.is_some(),
        },
    ))
}

impl Gateway {
    /// This gateway's instance name, as its records carry it.
    pub fn instance(&self) -> &str {
        &self.config.instance
    }

    /// Opens the store, loads keys and policies and starts the audit writer.
    pub fn new(config: Config) -> Result<Arc<Self>, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| StartError::DataDir {
            path: config.data_dir.display().to_string(),
            message: e.to_string(),
        })?;
        restrict_permissions(&config.data_dir);
        let store: Arc<dyn Backend> = Arc::new(ztai_store::Sqlite::open(&config.db_path())?);
        // Offline commands (`ztai keys create`) read this to record the way this gateway does.
        store.meta_set(
            ztai_audit::pseudonym::META_KEY,
            &config.audit.pseudonymise.join(","),
        )?;
        let jwt = Arc::new(crate::jwt::JwtIssuers::load(&config.jwt_issuers)?);
        let mut keys = ApiKeyRegistry::new();
        for row in store.list_keys()? {
            match entry_from_row(&row) {
                Some((id, entry)) => keys.insert(id, entry),
                None => {
                    tracing::warn!(key_id = %row.key_id, "skipping a stored API key that is corrupt")
                }
            }
        }
        let delegation = crate::delegation::Delegation::load(&config.data_dir, store.as_ref())?;
        let (documents, documents_version) = crate::documents::load(&config, store.as_ref())?;
        let model_routes = crate::model_gate::ModelRoutes::load(store.as_ref())?;
        let signature = dir_signature(&config.policy_dir);
        let engine =
            PolicyEngine::load_dir(&config.policy_dir).map_err(|source| StartError::Policy {
                dir: config.policy_dir.display().to_string(),
                source,
            })?;
        let version = record_policy_version(store.as_ref(), &engine, "startup")?;
        // Every gateway signs tree heads of its log with a key kept in its data directory.
        let key_name: String = format!("ztai-audit-{}", config.instance)
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-._".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let signer = ztai_audit::keyfile::load_or_create_signer(&config.data_dir, &key_name)?;
        // The same key, loaded again, signs approval decisions.
        let approval_signer =
            ztai_audit::keyfile::load_or_create_signer(&config.data_dir, &key_name)?;
        let audit_verifier_key = signer.verifier_key();
        let audit_config = AuditLogConfig {
            signer: Some(signer),
            origin: format!("ztai-audit/{}", config.instance),
            checkpoint_every: config.audit.checkpoint_every,
            checkpoint_interval: config.audit.checkpoint_interval,
            ..AuditLogConfig::default()
        };
        let pseudonymiser = if config.audit.pseudonymise.is_empty() {
            None
        } else {
            Some(ztai_audit::pseudonym::Pseudonymiser::new(
                &ztai_audit::keyfile::load_or_create_pseudonym_key(&config.data_dir)?,
                config.audit.pseudonymise.clone(),
            ))
        };
        let audit = AuditLog::open(store.as_ref(), audit_config)?;
        let mut upstream_auth = HashMap::new();
        for u in &config.upstreams {
            let header = match u.resolve_key()? {
                Some(k) => Some(HeaderValue::from_str(&format!("Bearer {k}")).map_err(|_| {
                    ConfigError {
                        key: format!("upstreams.{}.api_key", u.name),
                        message: "the key contains characters not allowed in an HTTP header".into(),
                    }
                })?),
                None => None,
            }
            .map(|mut h| {
                h.set_sensitive(true);
                h
            });
            upstream_auth.insert(u.name.clone(), header);
        }
        let models = config
            .models
            .iter()
            .map(|m| (m.name.clone(), m.clone()))
            .collect();
        let client = build_client(crate::upstream::DEFAULT_CONNECT_TIMEOUT);
        let upstream_clients = config
            .upstreams
            .iter()
            .map(|u| (u.name.clone(), build_client(u.connect_timeout)))
            .collect();
        let mut inspector =
            Inspector::with_default_rules()?.with_link_allowlist(&config.inspect.link_allowlist)?;
        if !config.inspect.dictionaries.is_empty() {
            inspector = inspector.with_detector(Box::new(ztai_inspect::CustomDictionaries::new(
                &config.inspect.dictionaries,
            )?));
        }
        if let Some(tier) = crate::semantic::tier(&config.inspect.semantic)? {
            inspector = inspector.with_semantic(tier);
        }
        let mcp = crate::mcp::Mcp::new(&config.mcp, &config.data_dir)?;
        Ok(Arc::new(Gateway {
            policy: ArcSwap::from_pointee(engine),
            policy_version: std::sync::atomic::AtomicI64::new(version),
            documents: ArcSwap::from_pointee(documents),
            model_routes: ArcSwap::from_pointee(model_routes),
            documents_version: std::sync::atomic::AtomicI64::new(documents_version),
            keys: RwLock::new(keys),
            jwt,
            delegation,
            risk: ztai_identity::risk::RiskScores::new(config.risk_half_life, 100_000),
            inspector,
            audit,
            audit_verifier_key,
            approvals: crate::approvals::Approvals::new(approval_signer),
            pseudonymiser,
            limiter: RateLimiter::new(),
            preauth: crate::preauth::PreAuth::default(),
            metrics: Metrics::new(),
            client,
            upstream_clients,
            upstream_auth,
            models,
            store,
            mcp,
            redaction: crate::redaction::RedactionSessions::new(
                config.inspect.redaction,
                config.inspect.redaction_session_ttl,
                config.inspect.redaction_max_sessions,
            ),
            policy_signature: Mutex::new((signature, None)),
            config,
        }))
    }

    /// Re-reads the documents catalogue when the store's registry changed (or always, `force`).
    pub(crate) fn refresh_documents(
        &self,
        store: &dyn DocumentStore,
        force: bool,
    ) -> Result<(), ztai_store::StoreError> {
        use std::sync::atomic::Ordering;
        if !force && store.documents_version()? == self.documents_version.load(Ordering::Relaxed) {
            return Ok(());
        }
        let (documents, version) = crate::documents::load(&self.config, store)?;
        self.documents.store(Arc::new(documents));
        self.documents_version.store(version, Ordering::Relaxed);
        Ok(())
    }

    /// Rebuilds the deployment gate's routes from the registry.
    pub(crate) fn refresh_model_routes(
        &self,
        store: &dyn RegistryStore,
    ) -> Result<(), ztai_store::StoreError> {
        let routes = crate::model_gate::ModelRoutes::load(store)?;
        self.model_routes.store(Arc::new(routes));
        Ok(())
    }

    /// What the catalogues say of a resource: documents from the documents catalogue, tools and
    /// destinations from the configuration.
    pub(crate) fn catalogue_entry(
        &self,
        resource: &ztai_core::Resource,
    ) -> Option<crate::config::CatalogueEntry> {
        match resource {
            ztai_core::Resource::Document(id) => self.documents.load().get(id).cloned(),
            other => self.config.catalogue.entry(other).cloned(),
        }
    }

    /// Authorises a request: for a principal acting for itself, the policy set alone; for a
    /// task token, the token's blocks and every agent's ceiling, then the policy set for every
    /// principal in the chain (the user and each agent), so the request gets the intersection.
    pub(crate) fn authorize(
        &self,
        who: &crate::proxy::Authenticated,
        action: ztai_core::Action,
        resource: &ztai_core::Resource,
        parents: &[String],
        ctx: &ztai_policy::RequestContext,
    ) -> Result<ztai_policy::Verdict, crate::GatewayError> {
        if let Some(denial) = self.scope_denial(who, action, resource) {
            return Ok(ztai_policy::Verdict::Deny(denial));
        }
        let ctx = ctx.clone().with_principal(&who.principal);
        self.policy_verdict(&self.policy.load(), who, action, resource, parents, &ctx)
    }

    /// What the credential itself refuses before policy is asked: a task token's scope and
    /// expiry, and an agent's ceiling.
    pub(crate) fn scope_denial(
        &self,
        who: &crate::proxy::Authenticated,
        action: ztai_core::Action,
        resource: &ztai_core::Resource,
    ) -> Option<ztai_core::PolicyDecision> {
        match &who.task {
            Some(task) => {
                self.delegation
                    .scope_denial(task, action, resource, crate::clock::unix_now())
            }
            None if who.principal.kind == ztai_core::PrincipalKind::Agent => self
                .delegation
                .own_ceiling_denial(&who.principal.id, action, resource),
            None => None,
        }
    }

    /// The policy set's answer, for `who` alone or for every principal of its task's chain.
    /// `ctx` must already carry the principal (`with_principal`). Callers deciding many
    /// questions at once pass the same `engine` to all of them, so a reload cannot split a batch.
    pub(crate) fn policy_verdict(
        &self,
        engine: &ztai_policy::PolicyEngine,
        who: &crate::proxy::Authenticated,
        action: ztai_core::Action,
        resource: &ztai_core::Resource,
        parents: &[String],
        ctx: &ztai_policy::RequestContext,
    ) -> Result<ztai_policy::Verdict, crate::GatewayError> {
        let answer = match &who.task {
            Some(task) => {
                let chain = self.delegation.chain(&task.token);
                engine.authorize_chain(&chain, action, resource, parents, ctx)
            }
            None => engine.authorize(&who.principal, action, resource, parents, ctx),
        };
        answer.map_err(|e| {
            self.metrics.fail("policy");
            crate::GatewayError::StageFailed {
                stage: crate::error::Stage::Policy,
                message: format!("the policy decision failed, so the request was refused: {e}"),
            }
        })
    }

    /// Re-reads agents and revocations from the store every `identity.tokens.revocation_poll`,
    /// so changes made through another replica or offline take effect here, and sweeps expired
    /// approval requests on the same beat.
    pub(crate) async fn follow_revocations(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.config.tokens.revocation_poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let gw = self.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                let store = gw.store.as_ref();
                if let Err(e) = gw.refresh_documents(store, false) {
                    gw.metrics.fail("documents");
                    tracing::error!(error = %e, "cannot re-read the documents registry; the last known catalogue stays in force");
                }
                if let Err(e) = gw.refresh_model_routes(store) {
                    gw.metrics.fail("model_registry");
                    tracing::error!(error = %e, "cannot re-read the model registry; the last known routes stay in force");
                }
                let now = crate::clock::unix_now_i64();
                match store.sweep_approvals(now, now.saturating_sub(APPROVAL_RETENTION_SECS)) {
                    Ok((0, 0)) => {}
                    Ok((expired, deleted)) => tracing::info!(expired, deleted, "swept approval requests"),
                    Err(e) => {
                        gw.metrics.fail("store");
                        tracing::error!(error = %e, "cannot sweep expired approval requests");
                    }
                }
                gw.delegation.refresh(store)
            })
            .await;
            match outcome {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    self.metrics.fail("revocations");
                    tracing::error!(error = %e, "cannot re-read agents and revocations; the last known state stays in force")
                }
                Err(e) => tracing::error!(error = %e, "the revocation refresh task failed"),
            }
        }
    }

    /// Adds findings to the risk score of every principal in `principal`'s chain, and returns
    /// the highest score in the chain afterwards.
    pub(crate) fn observe_risk<'a>(
        &self,
        principal: &ztai_core::Principal,
        findings: impl Iterator<Item = &'a ztai_core::Finding> + Clone,
    ) -> i64 {
        let now = crate::clock::unix_ms();
        principal
            .chain()
            .iter()
            .map(|who| {
                self.risk.observe(who, findings.clone(), now);
                self.risk.score(who, now)
            })
            .max()
            .unwrap_or(0)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The audit record of a finished trace, as this gateway records it (instance, pseudonyms).
    pub(crate) fn record_of(&self, trace: crate::record::Trace) -> ztai_core::AuditRecord {
        let mut record = trace.into_record(&self.config.instance);
        if let Some(p) = &self.pseudonymiser {
            p.apply_record(&mut record);
        }
        record
    }

    /// Records something that happened outside a request (a credential a bootstrap step
    /// issued, say), pseudonymised as this gateway's records are; returns its sequence number.
    pub async fn record(
        &self,
        mut record: ztai_core::AuditRecord,
    ) -> Result<i64, ztai_audit::AuditError> {
        if let Some(p) = &self.pseudonymiser {
            p.apply_record(&mut record);
        }
        self.audit.append(record).await
    }

    /// The Prometheus exposition, with the audit writer's own counters added.
    pub fn metrics_text(&self) -> String {
        let mut text = self.metrics.encode();
        let body_end = text.rfind("# EOF").unwrap_or(text.len());
        text.truncate(body_end);
        for (name, help, value) in [
            (
                "ztai_audit_records",
                "Audit records made durable",
                self.audit.appended(),
            ),
            (
                "ztai_audit_batches",
                "Audit transactions committed (group commits)",
                self.audit.batches(),
            ),
            (
                "ztai_audit_append_failures",
                "Audit records that could not be made durable",
                self.audit.failed(),
            ),
            (
                "ztai_audit_checkpoints",
                "Signed checkpoints (Merkle tree heads) stored",
                self.audit.checkpoints(),
            ),
            (
                "ztai_audit_checkpoint_failures",
                "Checkpoints that could not be signed or stored",
                self.audit.checkpoint_failures(),
            ),
        ] {
            text.push_str(&format!(
                "# HELP {name} {help}.\n# TYPE {name} counter\n{name}_total {value}\n"
            ));
        }
        text.push_str("# EOF\n");
        text
    }

    /// Reloads the policy directory; on any error the running set stays.
    /// Returns the new version, or the error that kept the old set.
    pub async fn reload_policies(self: &Arc<Self>, actor: &str) -> Result<i64, PolicyError> {
        let gw = self.clone();
        let actor = actor.to_string();

        tokio::task::spawn_blocking(move || gw.reload_blocking(&actor))
            .await
            .unwrap_or_else(|e| {
                Err(PolicyError::Io {
                    file: "reload task".into(),
                    message: e.to_string(),
                })
            })
    }

    fn reload_blocking(&self, actor: &str) -> Result<i64, PolicyError> {
        let outcome = PolicyEngine::load_dir(&self.config.policy_dir);
        match outcome {
            Ok(engine) => {
                if engine.digest() == self.policy.load().digest() {
                    return Ok(self
                        .policy_version
                        .load(std::sync::atomic::Ordering::Relaxed));
                }
                let version = {
                    let store = self.store.as_ref();
                    record_policy_version(store, &engine, actor).map_err(|e| PolicyError::Io {
                        file: "store".into(),
                        message: e.to_string(),
                    })?
                };
                let digest = engine.digest().to_string();
                self.policy.store(Arc::new(engine));
                self.policy_version
                    .store(version, std::sync::atomic::Ordering::Relaxed);
                self.metrics
                    .policy_reloads
                    .get_or_create(&Outcome { outcome: "applied" })
                    .inc();
                tracing::info!(version, %digest, actor, "policy set reloaded");
                self.record_system_event(
                    "policy_reload",
                    Decision::Allow,
                    format!("policy set version {version} ({digest}) applied"),
                );
                Ok(version)
            }
            Err(e) => {
                self.metrics
                    .policy_reloads
                    .get_or_create(&Outcome {
                        outcome: "rejected",
                    })
                    .inc();
                tracing::error!(error = %e, "policy reload rejected; the running policy set stays in force");
                self.record_system_event("policy_reload", Decision::Deny, format!("rejected: {e}"));
                Err(e)
            }
        }
    }

    /// Records a control-plane event that has no HTTP caller (a reload by the file watcher).
    fn record_system_event(&self, action: &str, decision: Decision, reason: String) {
        let record = crate::record::system_record(
            &self.config.instance,
            action,
            "Api::\"policies\"",
            decision,
            reason,
        );
        let audit = self.audit.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                if let Err(e) = audit.append(record).await {
                    tracing::error!(error = %e, "could not record a policy reload");
                }
            });
        }
    }

    /// Polls the policy directory and reloads once a change has settled (see `settle`).
    pub(crate) async fn watch_policies(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.config.policy_reload_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now = dir_signature(&self.config.policy_dir);
            let settled = settle(
                &mut self
                    .policy_signature
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
                now,
            );
            if settled {
                let _ = self.reload_policies("policy-watcher").await;
            }
        }
    }
}

fn record_policy_version(
    store: &dyn PolicySetStore,
    engine: &PolicyEngine,
    author: &str,
) -> Result<i64, ztai_store::StoreError> {
    let files: serde_json::Map<String, serde_json::Value> = engine
        .sources()
        .iter()
        .map(|s| (s.name.clone(), serde_json::Value::String(s.text.clone())))
        .collect();
    store.record_policy_set(
        engine.digest(),
        "directory",
        author,
        &crate::record::rfc3339(SystemTime::now()),
        &serde_json::Value::Object(files).to_string(),
    )
}

/// Whether the policy directory, seen as `now`, should be reloaded: only when it differs from
/// what was applied and is the same as at the previous look. A change is applied one interval
/// after it stops changing, so a file caught half-written — an empty or truncated policy file is
/// often valid, and weaker — is never applied.
fn settle(state: &mut (DirSignature, Option<DirSignature>), now: DirSignature) -> bool {
    let (applied, pending) = state;
    if *applied == now {
        *pending = None;
        false
    } else if pending.as_ref() == Some(&now) {
        *applied = now;
        *pending = None;
        true
    } else {
        *pending = Some(now);
        false
    }
}

/// Names, sizes and modification times of the policy files: cheap to compute every second.
fn dir_signature(dir: &std::path::Path) -> DirSignature {
    let mut sig: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let m = e.metadata().ok()?;
                    Some((e.path(), m.len(), m.modified().ok()))
                })
                .collect()
        })
        .unwrap_or_default();
    sig.sort();
    sig
}

#[cfg(unix)]
fn restrict_permissions(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700));
}

#[cfg(not(unix))]
fn restrict_permissions(_path: &std::path::Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(files: &[(&str, u64)]) -> DirSignature {
        files
            .iter()
            .map(|(n, len)| (std::path::PathBuf::from(n), *len, None))
            .collect()
    }

    #[test]
    fn a_policy_change_applies_only_once_it_has_stopped_changing() {
        let base = sig(&[("a.cedar", 10)]);
        let mut state = (base.clone(), None);
        assert!(!settle(&mut state, base.clone()), "nothing changed");
        // A file appears empty (caught mid-write), then full, then stays so.
        let empty = sig(&[("a.cedar", 10), ("b.cedar", 0)]);
        let full = sig(&[("a.cedar", 10), ("b.cedar", 80)]);
        assert!(!settle(&mut state, empty), "first sight of a change");
        assert!(!settle(&mut state, full.clone()), "still changing");
        assert!(settle(&mut state, full.clone()), "settled: apply");
        assert!(!settle(&mut state, full.clone()), "applied once");
        // A change that is undone before it settles is never applied.
        assert!(!settle(&mut state, base));
        assert!(!settle(&mut state, full));
        assert_eq!(state.1, None);
    }
}
