//! Slicing the policy set so a question evaluates only the policies whose scope can match it.
//!
//! Cedar evaluates every policy of the set it is given. With hundreds of policies most of them are
//! about other actions, other groups and other resources, and their scopes are false before any
//! condition is read. The scope of a static policy (`principal …, action …, resource …`) depends
//! only on the principal, the action, the resource and their ancestors, all of which the engine
//! knows before it builds the Cedar request. So the set is indexed once, at load, by action and by
//! the entity a principal constraint names; a question collects the few candidates, checks their
//! scopes exactly, and evaluates the survivors. A policy whose scope is false can neither determine
//! a decision nor raise an evaluation error, so the answer (decision, determining policies, errors)
//! is the same as evaluating the whole set — a property the tests check on generated sets.
//!
//! Sub-sets are memoised by the list of policies they hold: questions from the same groups about the
//! same resource share one, and a reload builds a new engine and so a new memo.

use cedar_policy::{
    ActionConstraint, EntityTypeName, EntityUid, Policy, PolicySet, PrincipalConstraint,
    ResourceConstraint, Schema,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// At most this many distinct sub-sets are memoised; past it the memo starts over.
const MAX_SUBSETS: usize = 4096;

/// A principal or resource scope constraint, in one shape for both.
#[derive(Debug, Clone)]
enum Scope {
    Any,
    Eq(EntityUid),
    In(EntityUid),
    Is(EntityTypeName),
    IsIn(EntityTypeName, EntityUid),
}

impl Scope {
    fn of_principal(c: PrincipalConstraint) -> Self {
        match c {
            PrincipalConstraint::Any => Scope::Any,
            PrincipalConstraint::Eq(u) => Scope::Eq(u),
            PrincipalConstraint::In(u) => Scope::In(u),
            PrincipalConstraint::Is(t) => Scope::Is(t),
            PrincipalConstraint::IsIn(t, u) => Scope::IsIn(t, u),
        }
    }

    fn of_resource(c: ResourceConstraint) -> Self {
        match c {
            ResourceConstraint::Any => Scope::Any,
            ResourceConstraint::Eq(u) => Scope::Eq(u),
            ResourceConstraint::In(u) => Scope::In(u),
            ResourceConstraint::Is(t) => Scope::Is(t),
            ResourceConstraint::IsIn(t, u) => Scope::IsIn(t, u),
        }
    }

    /// The entity the constraint is anchored on, if any.
    fn anchor(&self) -> Option<&EntityUid> {
        match self {
            Scope::Eq(u) | Scope::In(u) | Scope::IsIn(_, u) => Some(u),
            Scope::Any | Scope::Is(_) => None,
        }
    }

    /// Exactly Cedar's scope semantics for an entity with the given ancestors (`in` is reflexive).
    fn matches(&self, uid: &EntityUid, ancestors: &HashSet<EntityUid>) -> bool {
        let is_in = |u: &EntityUid| u == uid || ancestors.contains(u);
        match self {
            Scope::Any => true,
            Scope::Eq(u) => u == uid,
            Scope::In(u) => is_in(u),
            Scope::Is(t) => t == uid.type_name(),
            Scope::IsIn(t, u) => t == uid.type_name() && is_in(u),
        }
    }
}

#[derive(Debug)]
struct Indexed {
    policy: Policy,
    principal: Scope,
    resource: Scope,
    actions: Vec<EntityUid>,
}

/// Which part of a policy's scope a question fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeMismatch {
    Action,
    Principal,
    Resource,
}

/// The policies of one action, by the entity their principal constraint names.
#[derive(Debug, Default)]
struct ActionSlice {
    /// Principal unconstrained or constrained by type only.
    any_principal: Vec<u32>,
    by_principal: HashMap<EntityUid, Vec<u32>>,
}

/// The whole set, indexed for slicing.
#[derive(Debug)]
pub(crate) struct PolicyIndex {
    policies: Vec<Indexed>,
    by_action: HashMap<EntityUid, ActionSlice>,
    subsets: RwLock<HashMap<Vec<u32>, Arc<PolicySet>>>,
}

/// The policies that can apply to one question.
pub(crate) enum Slice {
    /// No policy's scope matches: the answer is the default deny.
    Empty,
    Policies(Arc<PolicySet>),
    /// The sub-set could not be built; evaluate the whole set (same answer, more work).
    Whole,
}

impl PolicyIndex {
    /// Indexes `set` for the actions of `schema`. An action constraint that names an action
    /// group covers every action in that group.
    pub fn new(set: &PolicySet, schema: &Schema) -> Self {
        let actions: Vec<EntityUid> = schema.actions().cloned().collect();
        let action_entities = schema.action_entities().ok();
        // `action in [A]` holds for A and for every action A is an ancestor of.
        let action_is_in = |action: &EntityUid, group: &EntityUid| {
            action == group
                || action_entities
                    .as_ref()
                    .is_some_and(|e| e.is_ancestor_of(group, action))
        };
        let mut policies = Vec::new();
        let mut by_action: HashMap<EntityUid, ActionSlice> = HashMap::new();
        for policy in set.policies() {
            let index = u32::try_from(policies.len()).unwrap_or(u32::MAX);
            let principal = Scope::of_principal(policy.principal_constraint());
            let resource = Scope::of_resource(policy.resource_constraint());
            let applies: Vec<&EntityUid> = match policy.action_constraint() {
                ActionConstraint::Any => actions.iter().collect(),
                ActionConstraint::Eq(a) => actions.iter().filter(|x| **x == a).collect(),
                ActionConstraint::In(list) => actions
                    .iter()
                    .filter(|x| list.iter().any(|g| action_is_in(x, g)))
                    .collect(),
            };
            let actions: Vec<EntityUid> = applies.iter().map(|a| (*a).clone()).collect();
            for action in applies {
                let slice = by_action.entry(action.clone()).or_default();
                match principal.anchor() {
                    Some(anchor) => slice
                        .by_principal
                        .entry(anchor.clone())
                        .or_default()
                        .push(index),
                    None => slice.any_principal.push(index),
                }
            }
            policies.push(Indexed {
                policy: policy.clone(),
                principal,
                resource,
                actions,
            });
        }
        PolicyIndex {
            policies,
            by_action,
            subsets: RwLock::new(HashMap::new()),
        }
    }

    /// Every policy with the first part of its scope this question fails, if any (for
    /// explanations; the request path uses `slice`).
    pub fn scopes<'a>(
        &'a self,
        q: &'a crate::engine::CedarQuestion,
    ) -> impl Iterator<Item = (&'a Policy, Option<ScopeMismatch>)> + 'a {
        self.policies.iter().map(move |p| {
            let mismatch = if !p.actions.contains(&q.action) {
                Some(ScopeMismatch::Action)
            } else if !p.principal.matches(&q.principal, &q.principal_ancestors) {
                Some(ScopeMismatch::Principal)
            } else if !p.resource.matches(&q.resource, &q.resource_ancestors) {
                Some(ScopeMismatch::Resource)
            } else {
                None
            };
            (&p.policy, mismatch)
        })
    }

    /// The policies whose scope matches this principal, action and resource.
    pub fn slice(
        &self,
        principal: &EntityUid,
        principal_ancestors: &HashSet<EntityUid>,
        action: &EntityUid,
        resource: &EntityUid,
        resource_ancestors: &HashSet<EntityUid>,
    ) -> Slice {
        let Some(by_action) = self.by_action.get(action) else {
            return Slice::Empty;
        };
        let mut chosen: Vec<u32> = Vec::new();
        let anchored = std::iter::once(principal)
            .chain(principal_ancestors.iter())
            .filter_map(|u| by_action.by_principal.get(u))
            .flatten();
        for &i in by_action.any_principal.iter().chain(anchored) {
            let Some(p) = self.policies.get(i as usize) else {
                return Slice::Whole;
            };
            if p.principal.matches(principal, principal_ancestors)
                && p.resource.matches(resource, resource_ancestors)
            {
                chosen.push(i);
            }
        }
        if chosen.is_empty() {
            return Slice::Empty;
        }
        chosen.sort_unstable();
        chosen.dedup();
        if let Some(set) = self
            .subsets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&chosen)
        {
            return Slice::Policies(Arc::clone(set));
        }
        let mut set = PolicySet::new();
        for &i in &chosen {
            let Some(p) = self.policies.get(i as usize) else {
                return Slice::Whole;
            };
            // Ids are unique in the whole set, so this cannot fail; if it ever did, dropping a
            // policy could drop a forbid, so fall back to the whole set.
            if set.add(p.policy.clone()).is_err() {
                return Slice::Whole;
            }
        }
        let set = Arc::new(set);
        let mut memo = self.subsets.write().unwrap_or_else(|p| p.into_inner());
        if memo.len() >= MAX_SUBSETS {
            memo.clear();
        }
        memo.insert(chosen, Arc::clone(&set));
        Slice::Policies(set)
    }
}
