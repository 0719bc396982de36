//! Generated policy sets and questions for benches and equivalence tests: a deterministic mix of
//! group-scoped model permits, tool and document permits, per-user egress permits and forbids,
//! over a few hundred entities, shaped like a large organisation's policy set.
#![allow(dead_code)]

use super::RequestContext;
use ztai_core::{Action, Principal, PrincipalKind, Resource};

/// A small deterministic generator (xorshift); benches and tests need repeatable sets, not
/// statistical quality.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

pub struct GeneratedSet {
    pub text: String,
    /// (action, group, resource, resource parents) that some policy speaks about, so questions
    /// can aim at policies instead of mostly missing them.
    pub targets: Vec<(Action, usize, Resource, Vec<String>)>,
    pub groups: usize,
    pub model_groups: usize,
    pub models: usize,
    pub tools: usize,
    pub documents: usize,
    pub destinations: usize,
    pub users: usize,
}

pub struct Question {
    pub principal: Principal,
    pub action: Action,
    pub resource: Resource,
    pub parents: Vec<String>,
    pub context: RequestContext,
}

/// `n` policies over about `2.5 n` entities (at least a few hundred).
pub fn policy_set(n: usize) -> GeneratedSet {
    let s = GeneratedSet {
        text: String::new(),
        targets: Vec::new(),
        groups: (n / 2).max(40),
        model_groups: (n / 10).max(10),
        models: (n / 2).max(50),
        tools: (n / 2).max(50),
        documents: (n / 2).max(50),
        destinations: (n / 4).max(25),
        users: (n / 2).max(50),
    };
    let mut rng = Rng::new(n as u64 * 7919 + 1);
    let mut text = String::new();
    let mut targets = Vec::new();
    for k in 0..n {
        let g = rng.below(s.groups);
        let line = match k % 10 {
            0..=3 => {
                let cond = if k % 3 == 0 {
                    format!(" when {{ context.risk_score < {} }}", 30 + rng.below(60))
                } else {
                    String::new()
                };
                let mg = rng.below(s.model_groups);
                // model-m is in mg-(m % model_groups)
                let m = mg + s.model_groups * rng.below(s.models / s.model_groups);
                targets.push((
                    Action::Invoke,
                    g,
                    Resource::Model(format!("model-{m}")),
                    vec![format!("mg-{mg}")],
                ));
                format!(
                    "permit (principal in Group::\"team-{g}\", action in [Action::\"invoke\", Action::\"list_model\"], resource in ModelGroup::\"mg-{mg}\"){cond};"
                )
            }
            4 => format!(
                "forbid (principal, action == Action::\"invoke\", resource == Model::\"model-{}\") when {{ context.high_severity_categories.contains(\"pii\") }};",
                rng.below(s.models)
            ),
            5 | 6 => {
                let t = rng.below(s.tools);
                targets.push((
                    Action::CallTool,
                    g,
                    Resource::Tool(format!("tool-{t}")),
                    vec![],
                ));
                format!(
                    "permit (principal in Group::\"team-{g}\", action == Action::\"call_tool\", resource == Tool::\"tool-{t}\") when {{ context.risk_score < 50 && context.max_severity < 3 }};"
                )
            }
            7 => {
                let d = rng.below(s.documents);
                targets.push((
                    Action::ReadDocument,
                    g,
                    Resource::Document(format!("doc-{d}")),
                    vec![],
                ));
                format!(
                    "permit (principal in Group::\"team-{g}\", action == Action::\"read_document\", resource == Document::\"doc-{d}\");"
                )
            }
            8 => format!(
                "permit (principal == User::\"user-{}\", action == Action::\"egress\", resource == Destination::\"dest-{}\");",
                rng.below(s.users),
                rng.below(s.destinations)
            ),
            _ => format!(
                "forbid (principal in Group::\"team-{g}\", action, resource) when {{ context.max_severity >= 4 }};"
            ),
        };
        text.push_str(&format!("@id(\"p{k}\")\n{line}\n"));
    }
    GeneratedSet { text, targets, ..s }
}

impl GeneratedSet {
    /// `count` questions spread over every action the set speaks about.
    pub fn questions(&self, count: usize) -> Vec<Question> {
        let mut rng = Rng::new(count as u64 + 17);
        (0..count).map(|_| self.question(&mut rng)).collect()
    }

    pub fn question(&self, rng: &mut Rng) -> Question {
        let user = rng.below(self.users);
        let mut principal = Principal {
            kind: PrincipalKind::User,
            id: format!("user-{user}"),
            groups: (0..3)
                .map(|_| format!("team-{}", rng.below(self.groups)))
                .collect(),
            on_behalf_of: vec![],
            credential_id: "bench".into(),
            device_posture: Vec::new(),
        };
        // Half the questions aim at something a policy speaks about.
        let aimed = match self.targets.len() {
            0 => None,
            len if rng.below(2) == 0 => self.targets.get(rng.below(len)),
            _ => None,
        };
        let (action, resource, parents) = match (aimed, rng.below(4)) {
            (Some((action, group, resource, parents)), _) => {
                if let Some(first) = principal.groups.first_mut() {
                    *first = format!("team-{group}");
                }
                (*action, resource.clone(), parents.clone())
            }
            (None, 0) => {
                let m = rng.below(self.models);
                (
                    Action::Invoke,
                    Resource::Model(format!("model-{m}")),
                    vec![format!("mg-{}", m % self.model_groups)],
                )
            }
            (None, 1) => (
                Action::CallTool,
                Resource::Tool(format!("tool-{}", rng.below(self.tools))),
                vec![],
            ),
            (None, 2) => (
                Action::ReadDocument,
                Resource::Document(format!("doc-{}", rng.below(self.documents))),
                vec![],
            ),
            (None, _) => (
                Action::Egress,
                Resource::Destination(format!("dest-{}", rng.below(self.destinations))),
                vec![],
            ),
        };
        let mut context = RequestContext::new("chat");
        context.risk_score = rng.below(100) as i64;
        context.max_severity = rng.below(5) as i64;
        if rng.below(4) == 0 {
            context.high_severity_categories.insert("pii".into());
        }
        Question {
            principal,
            action,
            resource,
            parents,
            context,
        }
    }
}
