//! Declarative policy tests: a question (principal, action, resource, context) and the decision
//! it must get, with optional exact determining policies, obligations and a reason fragment.
//!
//! The types deserialise from any serde format; `ztai policy test` reads TOML. Unknown keys are
//! refused so a misspelt field cannot silently test nothing. Each case is answered with
//! `PolicyEngine::explain`, so a failure shows why every policy did or did not apply.

use crate::{Explanation, PolicyEngine, PolicyError, RequestContext};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use ztai_core::{Action, Decision, Principal, PrincipalKind, PrincipalRef, Resource};

/// A file of test cases (`[[test]]` tables in TOML).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyTestFile {
    #[serde(rename = "test", default)]
    pub tests: Vec<PolicyTestCase>,
}

/// One question and what its answer must be.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyTestCase {
    pub name: String,
    /// The question's fields, as in `PolicyQuestion` (serde cannot refuse unknown keys through
    /// a flattened struct, so they are spelt out here).
    pub principal: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub on_behalf_of: Vec<String>,
    pub action: String,
    pub resource: String,
    #[serde(default)]
    pub resource_parents: Vec<String>,
    #[serde(default)]
    pub context: ContextSpec,
    /// `allow` or `deny`.
    pub expect: Decision,
    /// When given, the determining policies must be exactly these.
    #[serde(default)]
    pub policies: Option<Vec<String>>,
    /// When given, the obligations must be exactly these labels (`redact:secret`, `log_full`,
    /// `approval:admins`).
    #[serde(default)]
    pub obligations: Option<Vec<String>>,
    /// When given, some reason must contain this text.
    #[serde(default)]
    pub reason_contains: Option<String>,
}

impl PolicyTestCase {
    pub fn question(&self) -> PolicyQuestion {
        PolicyQuestion {
            principal: self.principal.clone(),
            groups: self.groups.clone(),
            on_behalf_of: self.on_behalf_of.clone(),
            action: self.action.clone(),
            resource: self.resource.clone(),
            resource_parents: self.resource_parents.clone(),
            context: self.context.clone(),
        }
    }
}

/// A question in the shape people write: `principal = "user:alice"`, `resource = "model:m"`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyQuestion {
    /// `kind:id`, e.g. `user:alice`, `agent:support-bot`.
    pub principal: String,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The delegation chain this principal acts for, outermost first (`["user:alice"]`).
    #[serde(default)]
    pub on_behalf_of: Vec<String>,
    /// A Cedar action id: `invoke`, `call_tool`, `read_document`, `egress`, `delegate`, `admin`…
    pub action: String,
    /// `kind:id`, e.g. `model:echo-small`, `tool:orders.lookup`.
    pub resource: String,
    /// Groups of the resource (model groups for a model, groups for an agent).
    #[serde(default)]
    pub resource_parents: Vec<String>,
    #[serde(default)]
    pub context: ContextSpec,
}

/// Context facts; every field may be left out and then has its quiet default.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ContextSpec {
    pub operation: Option<String>,
    pub stream: Option<bool>,
    pub max_severity: Option<i64>,
    #[serde(default)]
    pub finding_categories: BTreeSet<String>,
    #[serde(default)]
    pub finding_types: BTreeSet<String>,
    #[serde(default)]
    pub high_severity_categories: BTreeSet<String>,
    pub risk_score: Option<i64>,
    pub estimated_tokens: Option<i64>,
    /// Tool-call arguments as a JSON object (a TOML table).
    pub arguments: Option<serde_json::Value>,
    pub data_classification: Option<String>,
    pub client_ip: Option<std::net::IpAddr>,
    pub network_zone: Option<String>,
    pub hour_utc: Option<i64>,
    pub weekday_utc: Option<i64>,
    #[serde(default)]
    pub device_posture: BTreeSet<String>,
    pub resource_owner: Option<String>,
    #[serde(default)]
    pub resource_readers: BTreeSet<String>,
    #[serde(default)]
    pub resource_labels: BTreeSet<String>,
    #[serde(default)]
    pub session_taint: BTreeSet<String>,
    pub destination_port: Option<i64>,
    pub destination_method: Option<String>,
    pub destination_path: Option<String>,
    pub destination_ip: Option<std::net::IpAddr>,
}

/// Why a question cannot be asked.
#[derive(Debug, thiserror::Error)]
pub enum QuestionError {
    #[error(
        "`{0}` is not a principal: write kind:id with kind user, agent, service or model (e.g. `user:alice`)"
    )]
    Principal(String),
    #[error(
        "`{0}` is not a resource: write kind:id with kind model, tool, document, dataset, destination, agent, api or approval"
    )]
    Resource(String),
    #[error(
        "`{0}` is not an action: use invoke, list_model, call_tool, read_document, egress, delegate, approve, admin or reveal"
    )]
    Action(String),
    #[error("{0}")]
    Arguments(#[from] crate::ArgumentsError),
    #[error("{0}")]
    Policy(#[from] PolicyError),
}

fn principal_ref(s: &str) -> Result<PrincipalRef, QuestionError> {
    s.split_once(':')
        .and_then(|(k, id)| {
            let kind = PrincipalKind::parse(k)?;
            (!id.is_empty()).then(|| PrincipalRef {
                kind,
                id: id.to_string(),
            })
        })
        .ok_or_else(|| QuestionError::Principal(s.to_string()))
}

impl PolicyQuestion {
    /// The typed question: principal, action, resource, resource parents and context.
    pub fn parts(
        &self,
    ) -> Result<(Principal, Action, Resource, Vec<String>, RequestContext), QuestionError> {
        let who = principal_ref(&self.principal)?;
        let principal = Principal {
            kind: who.kind,
            id: who.id,
            groups: self.groups.clone(),
            on_behalf_of: self
                .on_behalf_of
                .iter()
                .map(|s| principal_ref(s))
                .collect::<Result<_, _>>()?,
            credential_id: "policy-test".into(),
            device_posture: Vec::new(),
        };
        let action = Action::parse(&self.action)
            .ok_or_else(|| QuestionError::Action(self.action.clone()))?;
        let resource = Resource::parse(&self.resource)
            .filter(|r| !r.id().is_empty())
            .ok_or_else(|| QuestionError::Resource(self.resource.clone()))?;
        let c = &self.context;
        let mut ctx = RequestContext::new(c.operation.as_deref().unwrap_or("chat"))
            .with_principal(&principal);
        if let Some(args) = &c.arguments {
            ctx = ctx.with_arguments(args)?;
        }
        ctx.stream = c.stream.unwrap_or(false);
        ctx.max_severity = c.max_severity.unwrap_or(0);
        ctx.finding_categories = c.finding_categories.clone();
        ctx.finding_types = c.finding_types.clone();
        ctx.high_severity_categories = c.high_severity_categories.clone();
        ctx.risk_score = c.risk_score.unwrap_or(0);
        ctx.estimated_tokens = c.estimated_tokens.unwrap_or(0);
        ctx.data_classification = c.data_classification.clone().unwrap_or_default();
        if let Some(ip) = c.client_ip {
            ctx.client_ip = ip;
        }
        if let Some(zone) = &c.network_zone {
            ctx.network_zone = zone.clone();
        }
        ctx.hour_utc = c.hour_utc.unwrap_or(12);
        ctx.weekday_utc = c.weekday_utc.unwrap_or(0);
        ctx.device_posture.extend(c.device_posture.iter().cloned());
        ctx.resource_owner = c.resource_owner.clone().unwrap_or_default();
        ctx.resource_readers = c.resource_readers.clone();
        ctx.resource_labels = c.resource_labels.clone();
        ctx.session_taint = c.session_taint.clone();
        ctx.destination_port = c.destination_port.unwrap_or(0);
        ctx.destination_method = c.destination_method.clone().unwrap_or_default();
        ctx.destination_path = c.destination_path.clone().unwrap_or_default();
        if let Some(ip) = c.destination_ip {
            ctx.destination_ip = ip;
        }
        Ok((
            principal,
            action,
            resource,
            self.resource_parents.clone(),
            ctx,
        ))
    }

    /// Explains this question's decision.
    pub fn explain(&self, engine: &PolicyEngine) -> Result<Explanation, QuestionError> {
        let (p, a, r, parents, ctx) = self.parts()?;
        Ok(engine.explain(&p, a, &r, &parents, &ctx)?)
    }
}

/// The result of one case.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyTestResult {
    pub name: String,
    pub passed: bool,
    /// What did not match, one line each; empty when passed.
    pub failures: Vec<String>,
    /// The explanation, when the question could be asked.
    pub explanation: Option<Explanation>,
}

/// Runs every case against `engine`.
pub fn run_tests(engine: &PolicyEngine, file: &PolicyTestFile) -> Vec<PolicyTestResult> {
    file.tests
        .iter()
        .map(|case| run_one(engine, case))
        .collect()
}

fn run_one(engine: &PolicyEngine, case: &PolicyTestCase) -> PolicyTestResult {
    let explanation = match case.question().explain(engine) {
        Ok(e) => e,
        Err(e) => {
            return PolicyTestResult {
                name: case.name.clone(),
                passed: false,
                failures: vec![format!("the question cannot be asked: {e}")],
                explanation: None,
            };
        }
    };
    let d = &explanation.decision;
    let mut failures = Vec::new();
    if d.decision != case.expect {
        failures.push(format!(
            "expected {}, got {} ({})",
            decision_name(case.expect),
            decision_name(d.decision),
            if d.is_allow() {
                format!("permitted by {}", d.policies.join(", "))
            } else {
                d.denial_message()
            }
        ));
    }
    if let Some(want) = &case.policies {
        let want: BTreeSet<&String> = want.iter().collect();
        let got: BTreeSet<&String> = d.policies.iter().collect();
        if want != got {
            failures.push(format!(
                "expected determining policies [{}], got [{}]",
                join(want),
                join(got)
            ));
        }
    }
    if let Some(want) = &case.obligations {
        let want: BTreeSet<String> = want.iter().cloned().collect();
        let got: BTreeSet<String> = d.obligations.iter().map(|o| o.label()).collect();
        if want != got {
            failures.push(format!(
                "expected obligations [{}], got [{}]",
                join(want.iter()),
                join(got.iter())
            ));
        }
    }
    // The reasons of the determining policies, or for a default deny the message callers see.
    if let Some(fragment) = &case.reason_contains
        && !d.reasons.iter().any(|r| r.contains(fragment.as_str()))
        && !(d.reasons.is_empty() && d.denial_message().contains(fragment.as_str()))
    {
        failures.push(format!(
            "no reason contains `{fragment}` (reasons: {})",
            if d.reasons.is_empty() {
                "none".to_string()
            } else {
                d.reasons.join(" | ")
            }
        ));
    }
    PolicyTestResult {
        name: case.name.clone(),
        passed: failures.is_empty(),
        failures,
        explanation: Some(explanation),
    }
}

fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Allow => "allow",
        Decision::Deny => "deny",
    }
}

fn join<'a>(items: impl IntoIterator<Item = &'a String>) -> String {
    items
        .into_iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> PolicyEngine {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies");
        PolicyEngine::load_dir(std::path::Path::new(dir)).unwrap()
    }

    fn case(json: serde_json::Value) -> PolicyTestCase {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_passing_and_a_failing_case_are_told_apart() {
        let e = engine();
        let file = PolicyTestFile {
            tests: vec![
                case(serde_json::json!({
                    "name": "staff", "principal": "user:alice", "groups": ["staff"],
                    "action": "invoke", "resource": "model:echo-small",
                    "resource_parents": ["standard"], "expect": "allow",
                    "policies": ["staff-standard-models"], "obligations": ["redact:secret"],
                    "reason_contains": "staff may use"
                })),
                case(serde_json::json!({
                    "name": "wrong", "principal": "user:bob", "groups": ["staff"],
                    "action": "invoke", "resource": "model:echo-small",
                    "resource_parents": ["standard"], "expect": "allow",
                    "context": {"high_severity_categories": ["prompt_injection"]},
                    "policies": ["staff-standard-models"], "obligations": []
                })),
            ],
        };
        let results = run_tests(&e, &file);
        assert!(results[0].passed, "{:?}", results[0].failures);
        assert!(!results[1].passed);
        let f = results[1].failures.join("\n");
        assert!(f.contains("expected allow, got deny"), "{f}");
        assert!(f.contains("deny-prompt-injection"), "{f}");
        // The explanation shows the permit that applied but was overridden.
        let x = results[1].explanation.as_ref().unwrap();
        let permit = x
            .policies
            .iter()
            .find(|p| p.id == "staff-standard-models")
            .unwrap();
        assert_eq!(permit.outcome, crate::PolicyOutcome::Overridden);
    }

    #[test]
    fn explanations_say_why_each_policy_did_not_apply() {
        let e = engine();
        let q: PolicyQuestion = serde_json::from_value(serde_json::json!({
            "principal": "user:carol", "groups": ["research"], "action": "invoke",
            "resource": "model:echo-small", "resource_parents": ["standard"]
        }))
        .unwrap();
        let x = q.explain(&e).unwrap();
        assert!(!x.decision.is_allow());
        let outcome = |id: &str| {
            x.policies
                .iter()
                .find(|p| p.id == id)
                .map(|p| p.outcome.clone())
                .unwrap()
        };
        use crate::{PolicyOutcome as O, ScopeMismatch as S};
        assert_eq!(
            outcome("staff-standard-models"),
            O::OutOfScope(S::Principal)
        );
        assert_eq!(
            outcome("research-restricted-models"),
            O::OutOfScope(S::Resource)
        );
        assert_eq!(
            outcome("admins-manage-everything"),
            O::OutOfScope(S::Action)
        );
        assert_eq!(outcome("deny-prompt-injection"), O::ConditionsFalse);
        assert_eq!(x.policies.len(), e.policy_count());
    }

    #[test]
    fn bad_questions_and_unknown_keys_get_clear_errors() {
        let e = engine();
        for (field, value, expect) in [
            ("principal", "alice", "not a principal"),
            ("principal", "robot:x", "not a principal"),
            ("resource", "model:", "not a resource"),
            ("action", "fly", "not an action"),
        ] {
            let mut q = serde_json::json!({
                "principal": "user:a", "action": "invoke", "resource": "model:m"
            });
            q[field] = serde_json::json!(value);
            let q: PolicyQuestion = serde_json::from_value(q).unwrap();
            let err = q.explain(&e).unwrap_err().to_string();
            assert!(err.contains(expect), "{field}={value}: {err}");
        }
        let typo = serde_json::from_value::<PolicyTestCase>(serde_json::json!({
            "name": "t", "principal": "user:a", "action": "invoke", "resource": "model:m",
            "expect": "allow", "context": {"risk": 3}
        }));
        assert!(
            typo.unwrap_err()
                .to_string()
                .contains("unknown field `risk`")
        );
    }
}
