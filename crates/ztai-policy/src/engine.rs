//! Loading, validating and evaluating a Cedar policy set.
//!
//! Each policy file is parsed on its own so every error can name its file, line and column, and each
//! policy is re-keyed by its `@id` annotation (or `file#n`) so decisions and audit records name
//! policies the way their authors do. The whole set is validated in strict mode against the built-in
//! schema; one invalid policy refuses the whole set, so a reload is all or nothing.

use crate::cache::{ContextUse, DecisionCache};
use crate::slice::{PolicyIndex, ScopeMismatch, Slice};
use crate::{Permit, PolicyError, RequestContext, Verdict};
use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Effect, Entities, Entity, EntityId,
    EntityTypeName, EntityUid, PolicyId, PolicySet, Request, RestrictedExpression, Schema,
    ValidationMode, Validator,
};
use miette::Diagnostic;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use ztai_core::{Action, Decision, Obligation, PolicyDecision, Principal, Resource};

/// The schema every policy set is validated against.
pub const SCHEMA_TEXT: &str = include_str!("../schema/ztai.cedarschema");

/// One policy file's name and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    pub name: String,
    pub text: String,
}

/// A validated, immutable policy set ready to answer questions.
#[derive(Debug)]
pub struct PolicyEngine {
    policies: PolicySet,
    authorizer: Authorizer,
    sources: Vec<PolicySource>,
    digest: String,
    policy_count: usize,
    context_use: ContextUse,
    cache: DecisionCache,
    index: PolicyIndex,
    meta: HashMap<PolicyId, PolicyMeta>,
    /// Entities some policy names by a literal (`Document::"d1"`), by type; `None` when the set
    /// could not be read that way, and then every entity counts as named.
    named: Option<HashMap<String, HashSet<String>>>,
}

/// What a decision needs from a policy besides its evaluation, read once at load (reading an
/// annotation through Cedar parses its name every time).
#[derive(Debug)]
struct PolicyMeta {
    file: String,
    effect: Effect,
    reason: Option<String>,
    obligations: Vec<Obligation>,
}

impl PolicyEngine {
    /// Loads every `*.cedar` file in `dir` (sorted by name, not recursive).
    pub fn load_dir(dir: &Path) -> Result<Self, PolicyError> {
        let io = |e: std::io::Error| PolicyError::Io {
            file: dir.display().to_string(),
            message: e.to_string(),
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "cedar") && p.is_file())
            .collect();
        paths.sort();
        let mut sources = Vec::with_capacity(paths.len());
        for p in paths {
            let text = std::fs::read_to_string(&p).map_err(|e| PolicyError::Io {
                file: p.display().to_string(),
                message: e.to_string(),
            })?;
            sources.push(PolicySource {
                name: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                text,
            });
        }
        if sources.is_empty() {
            return Err(PolicyError::Empty(dir.display().to_string()));
        }
        Self::from_sources(sources)
    }

    /// Parses and validates policy texts.
    pub fn from_sources(sources: Vec<PolicySource>) -> Result<Self, PolicyError> {
        let (schema, _warnings) = Schema::from_cedarschema_str(SCHEMA_TEXT)
            .map_err(|e| PolicyError::Schema(e.to_string()))?;
        let mut set = PolicySet::new();
        let mut origin: HashMap<PolicyId, usize> = HashMap::new(); // id → source index
        for (index, src) in sources.iter().enumerate() {
            let parsed = PolicySet::from_str(&src.text).map_err(|e| {
                let (line, column) = first_label(&e, &src.text);
                PolicyError::Parse {
                    file: src.name.clone(),
                    line,
                    column,
                    message: e.to_string(),
                }
            })?;
            if parsed.templates().next().is_some() {
                return Err(PolicyError::Parse {
                    file: src.name.clone(),
                    line: 1,
                    column: 1,
                    message: "policy templates are not supported; write static policies".into(),
                });
            }
            // Cedar names a file's policies `policy0`, `policy1`, … in source order; keep that
            // order so `file#n` numbering follows the file.
            let mut in_file: Vec<_> = parsed
                .policies()
                .map(|p| {
                    let n: usize = p
                        .id()
                        .to_string()
                        .trim_start_matches("policy")
                        .parse()
                        .unwrap_or(usize::MAX);
                    (n, p)
                })
                .collect();
            in_file.sort_by_key(|(n, _)| *n);
            for (n, policy) in in_file {
                let id = match policy.annotation("id") {
                    Some(id) => PolicyId::new(id),
                    None => PolicyId::new(format!("{}#{n}", src.name)),
                };
                if let Some(first) = origin.get(&id) {
                    return Err(PolicyError::DuplicateId {
                        id: id.to_string(),
                        first: sources
                            .get(*first)
                            .map(|s| s.name.clone())
                            .unwrap_or_default(),
                        second: src.name.clone(),
                    });
                }
                origin.insert(id.clone(), index);
                set.add(policy.new_id(id.clone()))
                    .map_err(|e| PolicyError::Parse {
                        file: src.name.clone(),
                        line: 1,
                        column: 1,
                        message: e.to_string(),
                    })?;
            }
        }
        let validator = Validator::new(schema.clone());
        let result = validator.validate(&set, ValidationMode::Strict);
        if let Some(err) = result.validation_errors().next() {
            let index = origin.get(err.policy_id()).copied().unwrap_or(0);
            let src = sources.get(index);
            let text = src.map(|s| s.text.as_str()).unwrap_or("");
            // Validation labels are offsets into the policy's own file.
            let (line, column) = err
                .labels()
                .and_then(|mut l| l.next())
                .map(|l| line_col(text, l.offset()))
                .unwrap_or((1, 1));
            return Err(PolicyError::Validation {
                file: src.map(|s| s.name.clone()).unwrap_or_default(),
                line,
                column,
                policy: err.policy_id().to_string(),
                message: err.to_string(),
            });
        }
        let policy_count = set.policies().count();
        let meta = set
            .policies()
            .map(|p| {
                (
                    p.id().clone(),
                    PolicyMeta {
                        file: origin
                            .get(p.id())
                            .and_then(|i| sources.get(*i))
                            .map(|s| s.name.clone())
                            .unwrap_or_default(),
                        effect: p.effect(),
                        reason: p.annotation("reason").map(str::to_string),
                        obligations: obligations_of(p.annotations()),
                    },
                )
            })
            .collect();
        Ok(PolicyEngine {
            index: PolicyIndex::new(&set, &schema),
            named: named_entities(&set),
            meta,
            policies: set,
            authorizer: Authorizer::new(),
            context_use: ContextUse::of(sources.iter().map(|s| s.text.as_str())),
            cache: DecisionCache::new(),
            digest: digest_sources(&sources),
            sources,
            policy_count,
        })
    }

    /// A stable digest of the policy texts (names and contents), to version the set.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    pub fn sources(&self) -> &[PolicySource] {
        &self.sources
    }

    pub fn policy_count(&self) -> usize {
        self.policy_count
    }

    /// Whether some policy names this very resource by a literal. When none does, the resource's
    /// identity cannot change a decision: two resources of one type with the same parents and
    /// context are decided alike, so a batch (retrieval over many documents) can decide each
    /// such class once. Cedar has no way to read an entity's id other than comparing it with a
    /// literal, which is what this looks for.
    pub fn names(&self, resource: &Resource) -> bool {
        match &self.named {
            None => true,
            Some(by_type) => by_type
                .get(resource.entity_type())
                .is_some_and(|ids| ids.contains(resource.id())),
        }
    }

    /// Decides whether `principal` may perform `action` on `resource`.
    ///
    /// `resource_parents` are the groups the resource belongs to: model groups of a model, tool
    /// groups of a tool, collections of a document, destination groups of a destination, groups of
    /// an agent or an approval.
    /// Anything that goes wrong building the question is an error, which callers must treat as
    /// deny; a question Cedar answers with evaluation errors denies unless a permit still applies
    /// and no forbid errored, because Cedar skips erroring policies.
    pub fn authorize(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
        resource_parents: &[String],
        ctx: &RequestContext,
    ) -> Result<Verdict, PolicyError> {
        let key = crate::cache::key(
            principal,
            action,
            resource,
            resource_parents,
            ctx,
            self.context_use,
        );
        if let Some(v) = self.cache.get(&key) {
            return Ok(v);
        }
        let verdict = self.evaluate(principal, action, resource, resource_parents, ctx)?;
        self.cache.insert(key, verdict.clone());
        Ok(verdict)
    }

    /// Decides for a delegated request: every principal in `chain` (the user, then each agent)
    /// must be permitted on its own, so the request gets the intersection of their rights. The
    /// first denial answers, its reasons prefixed with whose rights refused; a permit carries the
    /// policies and obligations of every link.
    pub fn authorize_chain(
        &self,
        chain: &[Principal],
        action: Action,
        resource: &Resource,
        resource_parents: &[String],
        ctx: &RequestContext,
    ) -> Result<Verdict, PolicyError> {
        let mut permit: Option<Permit> = None;
        for principal in chain {
            match self.authorize(principal, action, resource, resource_parents, ctx)? {
                Verdict::Permit(p) => {
                    permit = Some(match permit {
                        None => p,
                        Some(mut acc) => {
                            acc.absorb(p);
                            acc
                        }
                    })
                }
                Verdict::Deny(mut d) => {
                    let who = format!("{}:{}", principal.kind, principal.id);
                    let message = d.denial_message();
                    d.reasons = vec![format!("as {who}: {message}")];
                    return Ok(Verdict::Deny(d));
                }
            }
        }
        permit
            .map(Verdict::Permit)
            .ok_or_else(|| PolicyError::Request("an empty delegation chain".into()))
    }

    /// Whether some permit whose scope matches this principal, action and resource has a
    /// condition on `context.arguments`: such a permit may allow a call with the right
    /// arguments even though a call without any is denied. Listings (`tools/list` through the
    /// MCP proxy) offer such tools; each call is still decided on its own arguments.
    pub fn may_permit_with_arguments(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
        resource_parents: &[String],
    ) -> Result<bool, PolicyError> {
        let q = CedarQuestion::new(principal, action, resource, resource_parents)?;
        Ok(self.index.scopes(&q).any(|(policy, mismatch)| {
            mismatch.is_none()
                && policy.effect() == cedar_policy::Effect::Permit
                && policy.to_string().contains("context.arguments")
        }))
    }

    /// Whether the policy with this id has a condition on `context.arguments` (so whether it
    /// applies depends on a call's arguments).
    pub fn reads_arguments(&self, policy_id: &str) -> bool {
        self.policies
            .policy(&PolicyId::new(policy_id))
            .is_some_and(|p| p.to_string().contains("context.arguments"))
    }

    /// Evaluates without the cache (what `authorize` does on a miss).
    pub fn evaluate(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
        resource_parents: &[String],
        ctx: &RequestContext,
    ) -> Result<Verdict, PolicyError> {
        self.evaluate_with(principal, action, resource, resource_parents, ctx, true)
    }

    /// Explains a decision: the decision itself, and for every policy in the set whether it
    /// determined the decision, applied but was overridden, had false conditions, failed to
    /// evaluate, or was out of scope (and which part of the scope did not match). Slower than
    /// `evaluate` (each policy in scope is evaluated on its own); for tools, not the request path.
    pub fn explain(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
        resource_parents: &[String],
        ctx: &RequestContext,
    ) -> Result<Explanation, PolicyError> {
        let verdict = self.evaluate(principal, action, resource, resource_parents, ctx)?;
        let decision = verdict.decision().clone();
        let q = CedarQuestion::new(principal, action, resource, resource_parents)?;
        let mut policies = Vec::new();
        for (policy, mismatch) in self.index.scopes(&q) {
            let id = policy.id().to_string();
            let meta = self.meta.get(policy.id());
            let outcome = match mismatch {
                Some(part) => PolicyOutcome::OutOfScope(part),
                None if decision.policies.contains(&id) => PolicyOutcome::Determining,
                None => {
                    let mut alone = PolicySet::new();
                    alone
                        .add(policy.clone())
                        .map_err(|e| PolicyError::Request(e.to_string()))?;
                    let (request, entities) =
                        CedarQuestion::new(principal, action, resource, resource_parents)?
                            .into_cedar(ctx, self.context_use)?;
                    let response = self.authorizer.is_authorized(&request, &alone, &entities);
                    let d = response.diagnostics();
                    if let Some(e) = d.errors().next() {
                        PolicyOutcome::Errored(e.to_string())
                    } else if d.reason().next().is_some() {
                        PolicyOutcome::Overridden
                    } else {
                        PolicyOutcome::ConditionsFalse
                    }
                }
            };
            policies.push(PolicyExplanation {
                id,
                effect: match policy.effect() {
                    Effect::Permit => "permit",
                    Effect::Forbid => "forbid",
                },
                file: meta.map(|m| m.file.clone()).unwrap_or_default(),
                reason: meta.and_then(|m| m.reason.clone()),
                outcome,
            });
        }
        // Determining first, then the rest in scope, then out of scope; by id within each.
        policies.sort_by(|a, b| (a.outcome.rank(), &a.id).cmp(&(b.outcome.rank(), &b.id)));
        Ok(Explanation { decision, policies })
    }

    /// Evaluates on the policies whose scope can match (`sliced`) or on the whole set; both
    /// give the same answer, which the tests check.
    fn evaluate_with(
        &self,
        principal: &Principal,
        action: Action,
        resource: &Resource,
        resource_parents: &[String],
        ctx: &RequestContext,
        sliced: bool,
    ) -> Result<Verdict, PolicyError> {
        let q = CedarQuestion::new(principal, action, resource, resource_parents)?;
        let slice = if sliced {
            self.index.slice(
                &q.principal,
                &q.principal_ancestors,
                &q.action,
                &q.resource,
                &q.resource_ancestors,
            )
        } else {
            Slice::Whole
        };
        let policies_in_play = match &slice {
            Slice::Empty => {
                return Ok(Verdict::Deny(PolicyDecision {
                    decision: Decision::Deny,
                    policies: Vec::new(),
                    reasons: Vec::new(),
                    obligations: Vec::new(),
                    errors: Vec::new(),
                }));
            }
            Slice::Policies(set) => set.as_ref(),
            Slice::Whole => &self.policies,
        };
        let (request, entities) = q.into_cedar(ctx, self.context_use)?;
        let response = self
            .authorizer
            .is_authorized(&request, policies_in_play, &entities);
        let diagnostics = response.diagnostics();
        let errors: Vec<String> = diagnostics.errors().map(|e| e.to_string()).collect();
        let mut determining: Vec<&PolicyId> = diagnostics.reason().collect();
        determining.sort();
        let policies: Vec<String> = determining.iter().map(|id| id.to_string()).collect();
        let reasons: Vec<String> = determining
            .iter()
            .filter_map(|id| self.meta.get(*id).and_then(|m| m.reason.clone()))
            .collect();
        // A forbid that failed to evaluate might have applied: fail closed. A policy we have no
        // record of counts as a forbid.
        let forbid_errored = diagnostics.errors().any(|e| {
            let cedar_policy::AuthorizationError::PolicyEvaluationError(e) = e;
            self.meta
                .get(e.policy_id())
                .is_none_or(|m| m.effect == Effect::Forbid)
        });
        match response.decision() {
            CedarDecision::Allow if !forbid_errored => {
                let obligations = determining
                    .iter()
                    .filter_map(|id| self.meta.get(*id))
                    .flat_map(|m| m.obligations.iter().cloned())
                    .collect();
                Ok(Verdict::Permit(Permit {
                    decision: PolicyDecision {
                        decision: Decision::Allow,
                        policies,
                        reasons,
                        obligations,
                        errors,
                    },
                }))
            }
            _ => {
                let mut reasons = reasons;
                if forbid_errored {
                    reasons.insert(
                        0,
                        "a forbid policy failed to evaluate, so the request is denied (fail closed)"
                            .to_string(),
                    );
                }
                Ok(Verdict::Deny(PolicyDecision {
                    decision: Decision::Deny,
                    policies,
                    reasons,
                    obligations: Vec::new(),
                    errors,
                }))
            }
        }
    }
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Explanation {
    pub decision: PolicyDecision,
    /// Every policy of the set, determining ones first.
    pub policies: Vec<PolicyExplanation>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicyExplanation {
    pub id: String,
    pub effect: &'static str,
    pub file: String,
    pub reason: Option<String>,
    pub outcome: PolicyOutcome,
}

/// What one policy did for one question.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome", content = "detail")]
pub enum PolicyOutcome {
    /// It decided: a satisfied permit of an allow, or a satisfied forbid of a deny.
    Determining,
    /// Its scope and conditions held, but it did not decide (a permit beaten by a forbid).
    Overridden,
    /// Its scope matched and its `when`/`unless` conditions did not hold.
    ConditionsFalse,
    /// Its conditions failed to evaluate (Cedar skips it; a forbid that errors denies).
    Errored(String),
    /// This part of its scope does not match the question.
    OutOfScope(ScopeMismatch),
}

impl PolicyOutcome {
    fn rank(&self) -> u8 {
        match self {
            PolicyOutcome::Determining => 0,
            PolicyOutcome::Overridden => 1,
            PolicyOutcome::Errored(_) => 2,
            PolicyOutcome::ConditionsFalse => 3,
            PolicyOutcome::OutOfScope(_) => 4,
        }
    }

    /// A short phrase for people.
    pub fn describe(&self) -> String {
        match self {
            PolicyOutcome::Determining => "determined the decision".into(),
            PolicyOutcome::Overridden => "applied, but a forbid overrides it".into(),
            PolicyOutcome::ConditionsFalse => "in scope; its conditions do not hold".into(),
            PolicyOutcome::Errored(e) => format!("in scope; failed to evaluate: {e}"),
            PolicyOutcome::OutOfScope(part) => format!(
                "does not apply: the {} is outside its scope",
                match part {
                    ScopeMismatch::Action => "action",
                    ScopeMismatch::Principal => "principal",
                    ScopeMismatch::Resource => "resource",
                }
            ),
        }
    }
}

/// One question in Cedar's terms: the principal, action and resource and their ancestors.
pub(crate) struct CedarQuestion {
    pub principal: EntityUid,
    pub principal_ancestors: HashSet<EntityUid>,
    pub action: EntityUid,
    pub resource: EntityUid,
    pub resource_ancestors: HashSet<EntityUid>,
}

impl CedarQuestion {
    pub fn new(
        principal: &Principal,
        action: Action,
        resource: &Resource,
        resource_parents: &[String],
    ) -> Result<Self, PolicyError> {
        let parent_type = match resource {
            Resource::Model(_) => Some("ModelGroup"),
            Resource::Tool(_) => Some("ToolGroup"),
            Resource::Document(_) => Some("Collection"),
            Resource::Destination(_) => Some("DestinationGroup"),
            Resource::Agent(_) | Resource::Approval(_) => Some("Group"),
            Resource::Dataset(_) | Resource::Api(_) => None,
        };
        Ok(CedarQuestion {
            principal: uid(principal.kind.entity_type(), &principal.id)?,
            principal_ancestors: principal
                .groups
                .iter()
                .map(|g| uid("Group", g))
                .collect::<Result<HashSet<_>, _>>()?,
            action: uid("Action", action.cedar_id())?,
            resource: uid(resource.entity_type(), resource.id())?,
            resource_ancestors: match parent_type {
                Some(t) => resource_parents
                    .iter()
                    .map(|g| uid(t, g))
                    .collect::<Result<HashSet<_>, _>>()?,
                None => HashSet::new(),
            },
        })
    }

    /// The Cedar request and the entities it needs.
    pub fn into_cedar(
        self,
        ctx: &RequestContext,
        used: ContextUse,
    ) -> Result<(Request, Entities), PolicyError> {
        let mut entities = vec![
            Entity::new_no_attrs(self.principal.clone(), self.principal_ancestors),
            Entity::new_no_attrs(self.resource.clone(), self.resource_ancestors),
        ];
        let arguments_uid = uid("Arguments", "call")?;
        if used.arguments {
            entities.push(
                Entity::new_with_tags(
                    arguments_uid.clone(),
                    [],
                    [],
                    ctx.arguments
                        .iter()
                        .map(|(k, v)| (k.clone(), RestrictedExpression::new_string(v.clone()))),
                )
                .map_err(|e| PolicyError::Request(e.to_string()))?,
            );
        }
        let entities = Entities::from_entities(entities, None)
            .map_err(|e| PolicyError::Request(e.to_string()))?;
        let request = Request::new(
            self.principal,
            self.action,
            self.resource,
            context(ctx, used, arguments_uid)?,
            None,
        )
        .map_err(|e| PolicyError::Request(e.to_string()))?;
        Ok((request, entities))
    }
}

/// Every entity literal in the set's policies (scopes and conditions), from their JSON form: any
/// object with a string `type` and a string `id` is an entity reference there. Reading more than
/// is there only makes batches decide more resources one by one.
fn named_entities(set: &PolicySet) -> Option<HashMap<String, HashSet<String>>> {
    fn walk(v: &serde_json::Value, out: &mut HashMap<String, HashSet<String>>) {
        match v {
            serde_json::Value::Object(m) => {
                if let (Some(serde_json::Value::String(t)), Some(serde_json::Value::String(id))) =
                    (m.get("type"), m.get("id"))
                {
                    out.entry(t.clone()).or_default().insert(id.clone());
                }
                m.values().for_each(|c| walk(c, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let mut out = HashMap::new();
    for p in set.policies() {
        walk(&p.to_json().ok()?, &mut out);
    }
    Some(out)
}

/// Reads `@obligation("redact")`, `@obligation("log_full")` and `@obligation("approval")` (with
/// `@redact("pii,secret")`, `@approver_group("…")` and `@approval_timeout_secs("…")`).
fn obligations_of<'a>(annotations: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<Obligation> {
    let map: BTreeMap<&str, &str> = annotations.collect();
    let mut out = Vec::new();
    let Some(kinds) = map.get("obligation") else {
        return out;
    };
    for kind in kinds.split(',').map(str::trim) {
        match kind {
            "redact" => out.push(Obligation::Redact {
                categories: map
                    .get("redact")
                    .map(|s| {
                        s.split(',')
                            .map(|c| c.trim().to_string())
                            .filter(|c| !c.is_empty())
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            "log_full" => out.push(Obligation::LogFull),
            "approval" => out.push(Obligation::Approval {
                group: map.get("approver_group").unwrap_or(&"admins").to_string(),
                timeout_secs: map
                    .get("approval_timeout_secs")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(300),
            }),
            // Unknown obligations must not be silently dropped: the gateway refuses what it
            // cannot carry out.
            other => out.push(Obligation::Approval {
                group: format!("unknown obligation `{other}`"),
                timeout_secs: 0,
            }),
        }
    }
    out
}

/// Entity type names parsed once: parsing a Cedar name runs the policy parser, which cost more
/// than the rest of building a request.
fn type_name(name: &str) -> Result<EntityTypeName, PolicyError> {
    static PARSED: std::sync::OnceLock<HashMap<&'static str, EntityTypeName>> =
        std::sync::OnceLock::new();
    let parsed = PARSED.get_or_init(|| {
        [
            "Action",
            "Group",
            "User",
            "Agent",
            "Service",
            "Model",
            "ModelGroup",
            "Tool",
            "Document",
            "Dataset",
            "Destination",
            "Api",
            "Arguments",
            "Approval",
            "ToolGroup",
            "Collection",
            "DestinationGroup",
        ]
        .into_iter()
        .filter_map(|n| EntityTypeName::from_str(n).ok().map(|t| (n, t)))
        .collect()
    });
    match parsed.get(name) {
        Some(t) => Ok(t.clone()),
        None => EntityTypeName::from_str(name)
            .map_err(|e| PolicyError::Request(format!("entity type `{name}`: {e}"))),
    }
}

fn uid(type_name_str: &str, id: &str) -> Result<EntityUid, PolicyError> {
    Ok(EntityUid::from_type_name_and_id(
        type_name(type_name_str)?,
        EntityId::new(id),
    ))
}

fn string_set(items: &std::collections::BTreeSet<String>) -> RestrictedExpression {
    RestrictedExpression::new_set(
        items
            .iter()
            .map(|s| RestrictedExpression::new_string(s.clone())),
    )
}

/// The Cedar context. It is not checked against the schema per request (that cost a fifth of a
/// decision): it is built from the typed `RequestContext`, so its shape is fixed at compile time,
/// and a unit test checks that shape against the schema.
///
/// Only the fields some policy reads are built: policies are validated in strict mode, so a field
/// no policy names can never be looked at, and leaving it out saves building it (the address
/// alone cost an eighth of a decision).
fn context(
    ctx: &RequestContext,
    used: ContextUse,
    arguments: EntityUid,
) -> Result<Context, PolicyError> {
    let fields: [(bool, &str, &dyn Fn() -> RestrictedExpression); 27] = [
        (used.operation, "operation", &|| {
            RestrictedExpression::new_string(ctx.operation.clone())
        }),
        (used.stream, "stream", &|| {
            RestrictedExpression::new_bool(ctx.stream)
        }),
        (used.max_severity, "max_severity", &|| {
            RestrictedExpression::new_long(ctx.max_severity)
        }),
        (used.finding_categories, "finding_categories", &|| {
            string_set(&ctx.finding_categories)
        }),
        (used.finding_types, "finding_types", &|| {
            string_set(&ctx.finding_types)
        }),
        (
            used.high_severity_categories,
            "high_severity_categories",
            &|| string_set(&ctx.high_severity_categories),
        ),
        (used.risk_score, "risk_score", &|| {
            RestrictedExpression::new_long(ctx.risk_score)
        }),
        (used.estimated_tokens, "estimated_tokens", &|| {
            RestrictedExpression::new_long(ctx.estimated_tokens)
        }),
        (used.on_behalf_of, "on_behalf_of", &|| {
            RestrictedExpression::new_string(ctx.on_behalf_of.clone())
        }),
        (used.delegation_chain, "delegation_chain", &|| {
            string_set(&ctx.delegation_chain)
        }),
        (used.delegation_depth, "delegation_depth", &|| {
            RestrictedExpression::new_long(ctx.delegation_depth)
        }),
        (used.arguments, "arguments", &|| {
            RestrictedExpression::new_entity_uid(arguments.clone())
        }),
        (used.data_classification, "data_classification", &|| {
            RestrictedExpression::new_string(ctx.data_classification.clone())
        }),
        // An IPv4 client on a dual-stack socket arrives as `::ffff:a.b.c.d`; policy speaks of
        // it as IPv4 (and Cedar refuses the mapped spelling).
        (used.client_ip, "client_ip", &|| {
            RestrictedExpression::new_ip(ctx.client_ip.to_canonical().to_string())
        }),
        (used.network_zone, "network_zone", &|| {
            RestrictedExpression::new_string(ctx.network_zone.clone())
        }),
        (used.hour_utc, "hour_utc", &|| {
            RestrictedExpression::new_long(ctx.hour_utc)
        }),
        (used.weekday_utc, "weekday_utc", &|| {
            RestrictedExpression::new_long(ctx.weekday_utc)
        }),
        (used.device_posture, "device_posture", &|| {
            string_set(&ctx.device_posture)
        }),
        (used.principal_groups, "principal_groups", &|| {
            string_set(&ctx.principal_groups)
        }),
        (used.resource_owner, "resource_owner", &|| {
            RestrictedExpression::new_string(ctx.resource_owner.clone())
        }),
        (used.resource_readers, "resource_readers", &|| {
            string_set(&ctx.resource_readers)
        }),
        (used.resource_labels, "resource_labels", &|| {
            string_set(&ctx.resource_labels)
        }),
        (used.session_taint, "session_taint", &|| {
            string_set(&ctx.session_taint)
        }),
        (used.destination_port, "destination_port", &|| {
            RestrictedExpression::new_long(ctx.destination_port)
        }),
        (used.destination_method, "destination_method", &|| {
            RestrictedExpression::new_string(ctx.destination_method.clone())
        }),
        (used.destination_path, "destination_path", &|| {
            RestrictedExpression::new_string(ctx.destination_path.clone())
        }),
        (used.destination_ip, "destination_ip", &|| {
            RestrictedExpression::new_ip(ctx.destination_ip.to_canonical().to_string())
        }),
    ];
    Context::from_pairs(
        fields
            .iter()
            .filter(|(on, _, _)| *on)
            .map(|(_, name, build)| (name.to_string(), build())),
    )
    .map_err(|e| PolicyError::Request(e.to_string()))
}

fn first_label(diag: &dyn Diagnostic, text: &str) -> (usize, usize) {
    diag.labels()
        .and_then(|mut l| l.next())
        .map(|l| line_col(text, l.offset()))
        .unwrap_or((1, 1))
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut line = 1;
    let mut col = 1;
    for (i, ch) in text.char_indices() {
        if i >= offset {
            break;
        }
        if ch == '\n' {
            line += 1;
            col = 1;
        } else {
            col += 1;
        }
    }
    (line, col)
}

/// SHA-256 over the files' names and texts, length-prefixed so no two sets collide by
/// shifting bytes between files; the digest versions the set in the store and the audit log.
fn digest_sources(sources: &[PolicySource]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for s in sources {
        h.update((s.name.len() as u64).to_le_bytes());
        h.update(s.name.as_bytes());
        h.update((s.text.len() as u64).to_le_bytes());
        h.update(s.text.as_bytes());
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests;
