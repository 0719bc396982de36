use super::*;
use ztai_core::{Channel, Finding, FindingCategory, PrincipalKind, Severity, Span};

fn pack() -> Vec<PolicySource> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies");
    ["models.cedar", "inspection.cedar", "admin.cedar"]
        .iter()
        .map(|n| PolicySource {
            name: n.to_string(),
            text: std::fs::read_to_string(format!("{dir}/{n}")).unwrap(),
        })
        .collect()
}

fn user(id: &str, groups: &[&str]) -> Principal {
    Principal {
        kind: PrincipalKind::User,
        id: id.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        on_behalf_of: vec![],
        credential_id: "test".into(),
    }
}

fn finding(kind: &str, category: FindingCategory, severity: Severity) -> Finding {
    Finding {
        kind: kind.into(),
        category,
        severity,
        confidence: 1.0,
        detector: "test",
        span: Span::new(0, 1),
        channel: Channel::Input,
    }
}

fn invoke(
    engine: &PolicyEngine,
    p: &Principal,
    model: &str,
    groups: &[&str],
    findings: &[Finding],
) -> Verdict {
    let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    engine
        .authorize(
            p,
            Action::Invoke,
            &Resource::Model(model.into()),
            &groups,
            &RequestContext::new("chat").with_findings(findings),
        )
        .unwrap()
}

#[test]
fn the_sample_pack_loads_and_validates() {
    let e = PolicyEngine::from_sources(pack()).unwrap();
    assert_eq!(e.policy_count(), 6);
    assert_eq!(e.digest().len(), 64);
}

#[test]
fn staff_may_invoke_standard_models_with_a_redact_obligation() {
    let e = PolicyEngine::from_sources(pack()).unwrap();
    let v = invoke(&e, &user("alice", &["staff"]), "small", &["standard"], &[]);
    let Verdict::Permit(permit) = v else {
        panic!("expected permit")
    };
    assert_eq!(permit.decision().policies, vec!["staff-standard-models"]);
    assert_eq!(
        permit.decision().obligations,
        vec![Obligation::Redact {
            categories: vec!["secret".into()]
        }]
    );
}

#[test]
fn default_deny_for_models_outside_the_callers_groups() {
    let e = PolicyEngine::from_sources(pack()).unwrap();
    let v = invoke(&e, &user("alice", &["staff"]), "big", &["restricted"], &[]);
    let Verdict::Deny(d) = v else {
        panic!("expected deny")
    };
    assert!(d.policies.is_empty());
    assert!(d.denial_message().contains("default deny"));
    // No groups at all: denied too.
    assert!(matches!(
        invoke(&e, &user("eve", &[]), "small", &["standard"], &[]),
        Verdict::Deny(_)
    ));
}

#[test]
fn high_severity_injection_is_forbidden_even_for_permitted_callers() {
    let e = PolicyEngine::from_sources(pack()).unwrap();
    let f = [finding(
        "instruction_override",
        FindingCategory::PromptInjection,
        Severity::High,
    )];
    let v = invoke(&e, &user("alice", &["staff"]), "small", &["standard"], &f);
    let Verdict::Deny(d) = v else {
        panic!("expected deny")
    };
    assert_eq!(d.policies, vec!["deny-prompt-injection"]);
    assert!(d.denial_message().contains("prompt-injection"));
    // A low-severity injection hint alone does not trip the forbid.
    let low = [finding(
        "instruction_override",
        FindingCategory::PromptInjection,
        Severity::Low,
    )];
    assert!(matches!(
        invoke(&e, &user("alice", &["staff"]), "small", &["standard"], &low),
        Verdict::Permit(_)
    ));
}

#[test]
fn admin_action_needs_the_admins_group() {
    let e = PolicyEngine::from_sources(pack()).unwrap();
    let ctx = RequestContext::new("admin");
    let api = Resource::Api("keys".into());
    assert!(matches!(
        e.authorize(&user("root", &["admins"]), Action::Admin, &api, &[], &ctx)
            .unwrap(),
        Verdict::Permit(_)
    ));
    assert!(matches!(
        e.authorize(&user("alice", &["staff"]), Action::Admin, &api, &[], &ctx)
            .unwrap(),
        Verdict::Deny(_)
    ));
}

#[test]
fn syntax_errors_name_file_and_line() {
    let bad = PolicySource {
        name: "broken.cedar".into(),
        text: "// ok\n\npermit (principal, action, resource) when { context.x ==  };\n".into(),
    };
    let err = PolicyEngine::from_sources(vec![bad]).unwrap_err();
    match err {
        PolicyError::Parse { file, line, .. } => {
            assert_eq!(file, "broken.cedar");
            assert_eq!(line, 3);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn schema_violations_are_refused_with_the_policy_named() {
    let bad = PolicySource {
        name: "typo.cedar".into(),
        text: "@id(\"typo\")\npermit (principal, action == Action::\"invoke\", resource)\nwhen { context.max_severty > 2 };\n".into(),
    };
    let err = PolicyEngine::from_sources(vec![bad]).unwrap_err();
    match &err {
        PolicyError::Validation {
            file, policy, line, ..
        } => {
            assert_eq!(file, "typo.cedar");
            assert_eq!(policy, "typo");
            assert_eq!(*line, 3);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("typo.cedar:3"));
}

#[test]
fn duplicate_ids_across_files_are_refused() {
    let a = PolicySource {
        name: "a.cedar".into(),
        text: "@id(\"x\") permit (principal, action, resource);".into(),
    };
    let b = PolicySource {
        name: "b.cedar".into(),
        text: "@id(\"x\") forbid (principal, action, resource);".into(),
    };
    assert!(matches!(
        PolicyEngine::from_sources(vec![a, b]),
        Err(PolicyError::DuplicateId { .. })
    ));
}

#[test]
fn unknown_obligations_are_not_dropped() {
    let src = PolicySource {
        name: "o.cedar".into(),
        text: "@obligation(\"notify_ceo\") permit (principal, action == Action::\"invoke\", resource);".into(),
    };
    let e = PolicyEngine::from_sources(vec![src]).unwrap();
    let Verdict::Permit(p) = invoke(&e, &user("a", &[]), "m", &[], &[]) else {
        panic!()
    };
    assert!(
        matches!(&p.decision().obligations[..], [Obligation::Approval { group, .. }] if group.contains("notify_ceo"))
    );
}

#[test]
fn hostile_ids_do_not_break_evaluation() {
    let e = PolicyEngine::from_sources(pack()).unwrap();
    let p = user(
        "\"; permit (principal, action, resource); //\u{0}\u{202e}",
        &["staff\"\n"],
    );
    assert!(matches!(
        invoke(&e, &p, "small\u{0}", &["standard"], &[]),
        Verdict::Deny(_)
    ));
}

#[test]
fn cached_decisions_follow_the_fields_policies_read() {
    let e = PolicyEngine::from_sources(pack()).unwrap();
    let alice = user("alice", &["staff"]);
    let clean = invoke(&e, &alice, "small", &["standard"], &[]);
    assert!(matches!(clean, Verdict::Permit(_)));
    // Same principal and model, now with a high-severity injection: must not hit the clean entry.
    let f = [finding(
        "instruction_override",
        FindingCategory::PromptInjection,
        Severity::High,
    )];
    assert!(matches!(
        invoke(&e, &alice, "small", &["standard"], &f),
        Verdict::Deny(_)
    ));
    // Another principal with other groups: not the cached permit either.
    assert!(matches!(
        invoke(&e, &user("alice", &[]), "small", &["standard"], &[]),
        Verdict::Deny(_)
    ));
    assert!(matches!(
        invoke(&e, &alice, "small", &["standard"], &[]),
        Verdict::Permit(_)
    ));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        // Whatever the context holds, the engine answers (no panic), and an Allow always names
        // the permit that determined it.
        #[test]
        fn arbitrary_contexts_never_panic_and_allow_needs_a_permit(
            op in ".{0,20}",
            stream in any::<bool>(),
            sev in any::<i64>(),
            risk in any::<i64>(),
            tokens in any::<i64>(),
            cats in proptest::collection::btree_set(".{0,12}", 0..5),
            groups in proptest::collection::vec("[a-z]{1,8}", 0..3),
        ) {
            let e = PolicyEngine::from_sources(pack()).unwrap();
            let ctx = RequestContext {
                operation: op, stream, max_severity: sev, finding_categories: cats.clone(),
                finding_types: cats.clone(), high_severity_categories: cats, risk_score: risk,
                estimated_tokens: tokens, on_behalf_of: String::new(),
                delegation_chain: Default::default(), delegation_depth: 0,
            };
            let g: Vec<&str> = groups.iter().map(String::as_str).collect();
            let v = e.authorize(&user("p", &g), Action::Invoke, &Resource::Model("m".into()), &["standard".into()], &ctx).unwrap();
            if let Verdict::Permit(p) = &v {
                prop_assert!(!p.decision().policies.is_empty());
            }
            // The cache answers exactly what evaluation answers.
            let fresh = e.evaluate(&user("p", &g), Action::Invoke, &Resource::Model("m".into()), &["standard".into()], &ctx).unwrap();
            prop_assert_eq!(v.decision(), fresh.decision());
        }
    }
}

#[test]
fn a_forbid_that_fails_to_evaluate_denies_even_when_a_permit_applies() {
    let permit = PolicySource {
        name: "p.cedar".into(),
        text: "@id(\"all\") permit (principal, action == Action::\"invoke\", resource);".into(),
    };
    // Overflows for any positive severity: Cedar reports an error and skips the policy.
    let broken_forbid = PolicySource {
        name: "f.cedar".into(),
        text: "@id(\"overflowing\") forbid (principal, action == Action::\"invoke\", resource) when { context.max_severity + 9223372036854775807 > 0 };".into(),
    };
    let e = PolicyEngine::from_sources(vec![permit, broken_forbid]).unwrap();
    let f = [finding("email", FindingCategory::Pii, Severity::Low)];
    let v = invoke(&e, &user("a", &[]), "m", &[], &f);
    let Verdict::Deny(d) = v else {
        panic!("an erroring forbid must not let the permit through")
    };
    assert!(
        d.denial_message().contains("fail closed"),
        "{}",
        d.denial_message()
    );
    assert!(!d.errors.is_empty());
    // Without findings the forbid evaluates cleanly (0 + max > 0 is true): denied by it.
    let Verdict::Deny(d) = invoke(&e, &user("a", &[]), "m", &[], &[]) else {
        panic!()
    };
    assert_eq!(d.policies, vec!["overflowing"]);
}

#[test]
fn a_delegated_request_gets_the_intersection_of_the_chain() {
    let pack = vec![PolicySource {
        name: "d.cedar".into(),
        text: r#"
@id("staff-models") @obligation("redact") @redact("secret")
permit (principal in Group::"staff", action == Action::"invoke", resource in ModelGroup::"standard");
@id("agents-models") @obligation("log_full")
permit (principal in Group::"agents", action == Action::"invoke", resource in ModelGroup::"standard")
when { context.delegation_depth >= 1 && context.on_behalf_of != "" };
@id("no-bob-delegation")
forbid (principal, action, resource) when { context.delegation_chain.contains("user:bob") };
"#
        .into(),
    }];
    let e = PolicyEngine::from_sources(pack).unwrap();
    let agent_for = |user_id: &str| Principal {
        kind: ztai_core::PrincipalKind::Agent,
        id: "bot".into(),
        groups: vec!["agents".into()],
        on_behalf_of: vec![ztai_core::PrincipalRef {
            kind: ztai_core::PrincipalKind::User,
            id: user_id.into(),
        }],
        credential_id: "t".into(),
    };
    let model = Resource::Model("m".into());
    let parents = ["standard".to_string()];
    let ask = |user: Principal, agent: Principal| {
        let ctx = RequestContext::new("chat").with_delegation(&agent);
        e.authorize_chain(&[user, agent], Action::Invoke, &model, &parents, &ctx)
            .unwrap()
    };
    // Both links permitted: allowed, carrying both links' obligations.
    let Verdict::Permit(p) = ask(user("alice", &["staff"]), agent_for("alice")) else {
        panic!("alice's agent should be allowed")
    };
    assert_eq!(p.decision().policies, vec!["staff-models", "agents-models"]);
    assert_eq!(p.decision().obligations.len(), 2);
    // The agent may, the user may not: denied, and the reason says whose rights refused.
    let Verdict::Deny(d) = ask(user("carol", &["contractors"]), agent_for("carol")) else {
        panic!("an agent must not exceed its user's rights")
    };
    assert!(
        d.denial_message().starts_with("as user:carol:"),
        "{}",
        d.denial_message()
    );
    // The user may, the agent may not (not in the agents group): denied.
    let mut outsider = agent_for("alice");
    outsider.groups.clear();
    let Verdict::Deny(d) = ask(user("alice", &["staff"]), outsider) else {
        panic!("a user's rights must not flow to an agent policy does not allow")
    };
    assert!(
        d.denial_message().starts_with("as agent:bot:"),
        "{}",
        d.denial_message()
    );
    // Policy sees the chain.
    assert!(matches!(
        ask(user("bob", &["staff"]), agent_for("bob")),
        Verdict::Deny(_)
    ));
}
