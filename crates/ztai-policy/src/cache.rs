//! The decision cache: answers a repeated question without evaluating Cedar again.
//!
//! The key holds everything a decision can depend on — the principal and its groups, the action,
//! the resource and its parents, and every context field some policy reads — so a hit can never
//! answer a different question. Fields no policy reads are left out of the key, which is what lets
//! requests that differ only in, say, prompt length share an entry. The cache belongs to one
//! `PolicyEngine`; a reload builds a new engine and so starts empty.

use crate::{RequestContext, Verdict};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use ztai_core::{Action, Principal, Resource};

const SHARDS: usize = 16;
const MAX_PER_SHARD: usize = 8192;

/// Which context fields the policy set reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ContextUse {
    pub operation: bool,
    pub stream: bool,
    pub max_severity: bool,
    pub finding_categories: bool,
    pub finding_types: bool,
    pub high_severity_categories: bool,
    pub risk_score: bool,
    pub estimated_tokens: bool,
    pub on_behalf_of: bool,
    pub delegation_chain: bool,
    pub delegation_depth: bool,
    pub arguments: bool,
    pub data_classification: bool,
    pub client_ip: bool,
    pub network_zone: bool,
    pub hour_utc: bool,
    pub weekday_utc: bool,
    pub device_posture: bool,
    pub principal_groups: bool,
    pub resource_owner: bool,
    pub resource_readers: bool,
    pub resource_labels: bool,
    pub session_taint: bool,
    pub destination_port: bool,
    pub destination_method: bool,
    pub destination_path: bool,
    pub destination_ip: bool,
}

impl ContextUse {
    /// Scans policy texts. Any use of `context` other than `context.<field>` (a comparison of the
    /// whole record, `context has …`, an index) counts as reading every field.
    pub fn of<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut u = ContextUse::default();
        for text in texts {
            let mut rest = text;
            while let Some(i) = rest.find("context") {
                let after = rest.get(i + "context".len()..).unwrap_or("");
                let before_ok = rest
                    .get(..i)
                    .and_then(|b| b.chars().next_back())
                    .is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
                let trimmed = after.trim_start();
                if before_ok {
                    match trimmed.strip_prefix('.') {
                        Some(field) => {
                            let name: String = field
                                .trim_start()
                                .chars()
                                .take_while(|c| c.is_alphanumeric() || *c == '_')
                                .collect();
                            u.mark(&name);
                        }
                        None if after.starts_with(|c: char| c.is_alphanumeric() || c == '_') => {}
                        None => u = ContextUse::all(),
                    }
                }
                rest = after;
            }
        }
        u
    }

    pub(crate) fn all() -> Self {
        ContextUse {
            operation: true,
            stream: true,
            max_severity: true,
            finding_categories: true,
            finding_types: true,
            high_severity_categories: true,
            risk_score: true,
            estimated_tokens: true,
            on_behalf_of: true,
            delegation_chain: true,
            delegation_depth: true,
            arguments: true,
            data_classification: true,
            client_ip: true,
            network_zone: true,
            hour_utc: true,
            weekday_utc: true,
            device_posture: true,
            principal_groups: true,
            resource_owner: true,
            resource_readers: true,
            resource_labels: true,
            session_taint: true,
            destination_port: true,
            destination_method: true,
            destination_path: true,
            destination_ip: true,
        }
    }

    fn mark(&mut self, field: &str) {
        match field {
            "operation" => self.operation = true,
            "stream" => self.stream = true,
            "max_severity" => self.max_severity = true,
            "finding_categories" => self.finding_categories = true,
            "finding_types" => self.finding_types = true,
            "high_severity_categories" => self.high_severity_categories = true,
            "risk_score" => self.risk_score = true,
            "estimated_tokens" => self.estimated_tokens = true,
            "on_behalf_of" => self.on_behalf_of = true,
            "delegation_chain" => self.delegation_chain = true,
            "delegation_depth" => self.delegation_depth = true,
            "arguments" => self.arguments = true,
            "data_classification" => self.data_classification = true,
            "client_ip" => self.client_ip = true,
            "network_zone" => self.network_zone = true,
            "hour_utc" => self.hour_utc = true,
            "weekday_utc" => self.weekday_utc = true,
            "device_posture" => self.device_posture = true,
            "principal_groups" => self.principal_groups = true,
            "resource_owner" => self.resource_owner = true,
            "resource_readers" => self.resource_readers = true,
            "resource_labels" => self.resource_labels = true,
            "session_taint" => self.session_taint = true,
            "destination_port" => self.destination_port = true,
            "destination_method" => self.destination_method = true,
            "destination_path" => self.destination_path = true,
            "destination_ip" => self.destination_ip = true,
            // A field the schema does not have fails validation; be safe anyway.
            _ => *self = ContextUse::all(),
        }
    }
}

fn push(key: &mut Vec<u8>, s: &str) {
    key.extend_from_slice(&(s.len() as u64).to_le_bytes());
    key.extend_from_slice(s.as_bytes());
}

/// A length-prefixed encoding of everything the decision depends on.
pub(crate) fn key(
    principal: &Principal,
    action: Action,
    resource: &Resource,
    parents: &[String],
    ctx: &RequestContext,
    used: ContextUse,
) -> Vec<u8> {
    let mut k = Vec::with_capacity(128);
    push(&mut k, principal.kind.as_str());
    push(&mut k, &principal.id);
    let mut groups: Vec<&str> = principal.groups.iter().map(String::as_str).collect();
    groups.sort_unstable();
    k.extend_from_slice(&(groups.len() as u64).to_le_bytes());
    for g in groups {
        push(&mut k, g);
    }
    push(&mut k, action.cedar_id());
    push(&mut k, resource.entity_type());
    push(&mut k, resource.id());
    let mut parents: Vec<&str> = parents.iter().map(String::as_str).collect();
    parents.sort_unstable();
    k.extend_from_slice(&(parents.len() as u64).to_le_bytes());
    for p in parents {
        push(&mut k, p);
    }
    let sets = [
        (used.finding_categories, &ctx.finding_categories),
        (used.finding_types, &ctx.finding_types),
        (used.high_severity_categories, &ctx.high_severity_categories),
        (used.delegation_chain, &ctx.delegation_chain),
        (used.device_posture, &ctx.device_posture),
        (used.principal_groups, &ctx.principal_groups),
        (used.resource_readers, &ctx.resource_readers),
        (used.resource_labels, &ctx.resource_labels),
        (used.session_taint, &ctx.session_taint),
    ];
    let ip = if used.client_ip {
        ctx.client_ip.to_canonical().to_string()
    } else {
        String::new()
    };
    let destination_ip = if used.destination_ip {
        ctx.destination_ip.to_canonical().to_string()
    } else {
        String::new()
    };
    for (on, text) in [
        (used.operation, &ctx.operation),
        (used.on_behalf_of, &ctx.on_behalf_of),
        (used.data_classification, &ctx.data_classification),
        (used.network_zone, &ctx.network_zone),
        (used.client_ip, &ip),
        (used.resource_owner, &ctx.resource_owner),
        (used.destination_method, &ctx.destination_method),
        (used.destination_path, &ctx.destination_path),
        (used.destination_ip, &destination_ip),
    ] {
        k.push(u8::from(on));
        if on {
            push(&mut k, text);
        }
    }
    k.push(u8::from(used.stream) * 2 + u8::from(ctx.stream && used.stream));
    for (on, value) in [
        (used.max_severity, ctx.max_severity),
        (used.risk_score, ctx.risk_score),
        (used.estimated_tokens, ctx.estimated_tokens),
        (used.delegation_depth, ctx.delegation_depth),
        (used.hour_utc, ctx.hour_utc),
        (used.weekday_utc, ctx.weekday_utc),
        (used.destination_port, ctx.destination_port),
    ] {
        k.push(u8::from(on));
        if on {
            k.extend_from_slice(&value.to_le_bytes());
        }
    }
    k.push(u8::from(used.arguments));
    if used.arguments {
        k.extend_from_slice(&(ctx.arguments.len() as u64).to_le_bytes());
        for (name, value) in &ctx.arguments {
            push(&mut k, name);
            push(&mut k, value);
        }
    }
    for (on, set) in sets {
        k.push(u8::from(on));
        if on {
            k.extend_from_slice(&(set.len() as u64).to_le_bytes());
            for s in set {
                push(&mut k, s);
            }
        }
    }
    k
}

type Shard = Mutex<HashMap<Vec<u8>, Verdict, foldhash::fast::RandomState>>;

#[derive(Debug)]
pub(crate) struct DecisionCache {
    shards: Vec<Shard>,
    hasher: foldhash::fast::RandomState,
}

impl DecisionCache {
    pub fn new() -> Self {
        DecisionCache {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::default()))
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    fn shard(&self, key: &[u8]) -> Option<&Shard> {
        self.shards
            .get((self.hasher.hash_one(key) as usize) % SHARDS)
    }

    pub fn get(&self, key: &[u8]) -> Option<Verdict> {
        let shard = self.shard(key)?;
        shard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    pub fn insert(&self, key: Vec<u8>, verdict: Verdict) {
        if let Some(shard) = self.shard(&key) {
            let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() >= MAX_PER_SHARD {
                // Bounded memory: start the shard over rather than track recency.
                map.clear();
            }
            map.insert(key, verdict);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_use_is_read_from_the_policy_text() {
        let u = ContextUse::of([
            "permit (principal, action, resource) when { context.max_severity > 2 && context . risk_score < 5 };",
        ]);
        assert!(u.max_severity && u.risk_score);
        assert!(!u.estimated_tokens && !u.finding_types);
        // Whole-record use means every field matters.
        assert_eq!(
            ContextUse::of(["when { context has foo }"]),
            ContextUse::all()
        );
        assert_eq!(
            ContextUse::of(["when { context == {} }"]),
            ContextUse::all()
        );
        // Identifiers that merely contain the word are not uses.
        assert_eq!(
            ContextUse::of(["// mycontextual notes; contextual"]),
            ContextUse::default()
        );
    }

    #[test]
    fn keys_differ_exactly_where_the_used_fields_differ() {
        let p = Principal {
            kind: ztai_core::PrincipalKind::User,
            id: "a".into(),
            groups: vec!["x".into(), "y".into()],
            on_behalf_of: vec![],
            credential_id: "k1".into(),
            device_posture: Vec::new(),
        };
        let r = Resource::Model("m".into());
        let used = ContextUse {
            estimated_tokens: false,
            max_severity: true,
            ..Default::default()
        };
        let mut c1 = RequestContext::new("chat");
        c1.estimated_tokens = 10;
        let mut c2 = c1.clone();
        c2.estimated_tokens = 99;
        let k = |p: &Principal, c: &RequestContext| key(p, Action::Invoke, &r, &[], c, used);
        assert_eq!(
            k(&p, &c1),
            k(&p, &c2),
            "an unused field does not split the key"
        );
        c2.max_severity = 3;
        assert_ne!(k(&p, &c1), k(&p, &c2));
        let mut q = p.clone();
        q.groups.reverse();
        assert_eq!(k(&p, &c1), k(&q, &c1), "group order does not matter");
        q.groups.push("z".into());
        assert_ne!(k(&p, &c1), k(&q, &c1));
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        let mut s1 = p.clone();
        s1.id = "ab".into();
        s1.groups = vec!["c".into()];
        let mut s2 = p.clone();
        s2.id = "a".into();
        s2.groups = vec!["bc".into()];
        assert_ne!(k(&s1, &c1), k(&s2, &c1));
    }
}
