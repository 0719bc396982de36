use super::*;
use crate::cache::ContextUse;
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
        device_posture: Vec::new(),
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
            args in proptest::collection::btree_map(".{0,12}", ".{0,12}", 0..5),
            ip in any::<std::net::IpAddr>(),
            unix in any::<i64>(),
            text in ".{0,16}",
        ) {
            let e = PolicyEngine::from_sources(pack()).unwrap();
            let ctx = RequestContext {
                operation: op, stream, max_severity: sev, finding_categories: cats.clone(),
                finding_types: cats.clone(), high_severity_categories: cats.clone(), risk_score: risk,
                estimated_tokens: tokens, on_behalf_of: text.clone(),
                delegation_chain: Default::default(), delegation_depth: 0,
                arguments: args, data_classification: text.clone(), client_ip: ip,
                network_zone: text, session_taint: cats.clone(), device_posture: cats, ..RequestContext::default()
            }.at_unix_time(unix);
            prop_assert!((0..24).contains(&ctx.hour_utc) && (0..7).contains(&ctx.weekday_utc));
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
fn session_taint_reaches_policy_and_keys_the_cache() {
    let src = PolicySource {
        name: "flow.cedar".into(),
        text: r#"
            permit(principal, action == Action::"call_tool", resource == Tool::"send_email");
            forbid(principal, action == Action::"call_tool", resource == Tool::"send_email")
              when { context.session_taint.contains("untrusted_content") };
        "#
        .into(),
    };
    let e = PolicyEngine::from_sources(vec![src]).unwrap();
    let tool = Resource::Tool("send_email".into());
    let clean = RequestContext::new("call_tool");
    let mut tainted = RequestContext::new("call_tool");
    tainted.session_taint.insert("untrusted_content".into());
    let mut other = RequestContext::new("call_tool");
    other.session_taint.insert("confidential_data".into());
    let bob = user("bob", &[]);
    // Clean first, so a cache keyed without the taint would answer the tainted call wrongly.
    assert!(matches!(
        e.authorize(&bob, Action::CallTool, &tool, &[], &clean)
            .unwrap(),
        Verdict::Permit(_)
    ));
    assert!(matches!(
        e.authorize(&bob, Action::CallTool, &tool, &[], &tainted)
            .unwrap(),
        Verdict::Deny(_)
    ));
    assert!(matches!(
        e.authorize(&bob, Action::CallTool, &tool, &[], &other)
            .unwrap(),
        Verdict::Permit(_)
    ));
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
        device_posture: Vec::new(),
    };
    let model = Resource::Model("m".into());
    let parents = ["standard".to_string()];
    let ask = |user: Principal, agent: Principal| {
        let ctx = RequestContext::new("chat").with_principal(&agent);
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

#[path = "../../tests/support/generated.rs"]
mod generated;

/// Slicing must never change an answer: on generated sets, every question gets the same
/// decision, determining policies, reasons and errors from the sliced and the whole set.
#[test]
fn slicing_gives_the_same_answers_as_the_whole_set() {
    for n in [30usize, 200, 1000] {
        let set = generated::policy_set(n);
        let engine = PolicyEngine::from_sources(vec![PolicySource {
            name: "generated.cedar".into(),
            text: set.text.clone(),
        }])
        .unwrap();
        let (mut allowed, mut denied_by_policy) = (0, 0);
        for q in set.questions(1500) {
            let run = |sliced| {
                engine
                    .evaluate_with(
                        &q.principal,
                        q.action,
                        &q.resource,
                        &q.parents,
                        &q.context,
                        sliced,
                    )
                    .unwrap()
            };
            let (a, b) = (run(true), run(false));
            assert_eq!(
                a.decision(),
                b.decision(),
                "n={n}: {:?} {} {}",
                q.principal,
                q.action,
                q.resource
            );
            match a {
                Verdict::Permit(_) => allowed += 1,
                Verdict::Deny(d) if !d.policies.is_empty() => denied_by_policy += 1,
                Verdict::Deny(_) => {}
            }
        }
        // The questions must exercise both outcomes, or the comparison proves little.
        assert!(allowed > 20, "n={n}: only {allowed} permits");
        assert!(
            denied_by_policy > 20,
            "n={n}: only {denied_by_policy} forbids"
        );
    }
}

/// The context the engine builds (without per-request schema checks) must always be one the
/// schema accepts, for every action, empty or full.
#[test]
fn the_built_context_matches_the_schema_for_every_action() {
    let (schema, _) = Schema::from_cedarschema_str(SCHEMA_TEXT).unwrap();
    let mut full = RequestContext::new("chat")
        .with_arguments(
            &serde_json::json!({"customer_id": "c-1", "n": 3, "f": {"x": [true, null]}}),
        )
        .unwrap()
        .at_unix_time(1_700_000_000);
    full.device_posture.insert("managed".into());
    full.client_ip = "2001:db8::1".parse().unwrap();
    for ctx in [RequestContext::new("chat"), full] {
        let arguments = uid("Arguments", "call").unwrap();
        let c = context(&ctx, ContextUse::all(), arguments).unwrap();
        for (action, principal, resource) in [
            ("invoke", "User", "Model"),
            ("list_model", "Agent", "Model"),
            ("call_tool", "Agent", "Tool"),
            ("read_document", "Service", "Document"),
            ("egress", "Model", "Destination"),
            ("delegate", "User", "Agent"),
            ("admin", "User", "Api"),
            ("approve", "User", "Approval"),
            ("reveal", "User", "Api"),
        ] {
            Request::new(
                uid(principal, "p").unwrap(),
                uid("Action", action).unwrap(),
                uid(resource, "r").unwrap(),
                c.clone(),
                Some(&schema),
            )
            .unwrap_or_else(|e| panic!("{action}: {e}"));
        }
    }
}

fn agent_for(user_id: &str) -> Principal {
    Principal {
        kind: PrincipalKind::Agent,
        id: "support-bot".into(),
        groups: vec!["agents".into()],
        on_behalf_of: vec![ztai_core::PrincipalRef {
            kind: PrincipalKind::User,
            id: user_id.into(),
        }],
        credential_id: "t".into(),
        device_posture: Vec::new(),
    }
}

/// The argument rule of the examples: the support agent may look up orders only for the user it
/// acts for.
#[test]
fn an_argument_rule_allows_only_the_users_own_customer_id() {
    let rule = PolicySource {
        name: "tools.cedar".into(),
        text: r#"@id("support-own-orders")
permit (principal == Agent::"support-bot", action == Action::"call_tool", resource == Tool::"orders.lookup")
when { context.arguments.hasTag("customer_id") && context.arguments.getTag("customer_id") == context.on_behalf_of };"#
            .into(),
    };
    let e = PolicyEngine::from_sources(vec![rule]).unwrap();
    let ask = |who: &Principal, args: serde_json::Value| {
        let ctx = RequestContext::new("tool")
            .with_principal(who)
            .with_arguments(&args)
            .unwrap();
        e.authorize(
            who,
            Action::CallTool,
            &Resource::Tool("orders.lookup".into()),
            &[],
            &ctx,
        )
        .unwrap()
    };
    let bot = agent_for("alice");
    assert!(matches!(
        ask(&bot, serde_json::json!({"customer_id": "alice"})),
        Verdict::Permit(_)
    ));
    // Another customer's orders, a missing argument, or a nested look-alike: refused.
    for args in [
        serde_json::json!({"customer_id": "bob"}),
        serde_json::json!({}),
        serde_json::json!({"filter": {"customer_id": "alice"}}),
        serde_json::json!({"customer_id": ["alice"]}),
    ] {
        assert!(
            matches!(ask(&bot, args.clone()), Verdict::Deny(_)),
            "{args}"
        );
    }
    // The cache keys on the arguments: a permitted call does not answer for another customer.
    assert!(matches!(
        ask(&bot, serde_json::json!({"customer_id": "alice"})),
        Verdict::Permit(_)
    ));
    assert!(matches!(
        ask(&bot, serde_json::json!({"customer_id": "bob"})),
        Verdict::Deny(_)
    ));
    // The same agent acting for bob may look up bob's orders.
    assert!(matches!(
        ask(&agent_for("bob"), serde_json::json!({"customer_id": "bob"})),
        Verdict::Permit(_)
    ));
}

#[test]
fn arguments_are_flattened_with_bounds_and_no_ambiguity() {
    let flat = crate::flatten_arguments(&serde_json::json!({
        "a": {"b": 1, "c": [true, "x"]}, "e": {}, "f": [], "g": null, "h": 1.5
    }))
    .unwrap();
    let got: Vec<(&str, &str)> = flat.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        got,
        [
            ("a.b", "1"),
            ("a.c.0", "true"),
            ("a.c.1", "x"),
            ("e", "{}"),
            ("f", "[]"),
            ("g", "null"),
            ("h", "1.5")
        ]
    );
    use crate::ArgumentsError as E;
    // A dotted key cannot shadow a nested one.
    assert!(matches!(
        crate::flatten_arguments(&serde_json::json!({"a.b": "mine", "a": {"b": "theirs"}})),
        Err(E::Ambiguous(p)) if p == "a.b"
    ));
    assert_eq!(
        crate::flatten_arguments(&serde_json::json!([1])),
        Err(E::NotAnObject("an array"))
    );
    let mut deep = serde_json::json!(1);
    for _ in 0..=crate::MAX_ARGUMENT_DEPTH {
        deep = serde_json::json!({ "d": deep });
    }
    assert_eq!(crate::flatten_arguments(&deep), Err(E::TooDeep));
    let many: serde_json::Map<String, serde_json::Value> = (0..=crate::MAX_ARGUMENT_LEAVES)
        .map(|i| (format!("k{i}"), serde_json::json!(i)))
        .collect();
    assert_eq!(
        crate::flatten_arguments(&serde_json::Value::Object(many)),
        Err(E::TooMany)
    );
    let big = serde_json::json!({"k": "x".repeat(crate::MAX_ARGUMENT_BYTES + 1)});
    assert_eq!(crate::flatten_arguments(&big), Err(E::TooLarge));
}

#[test]
fn network_and_clock_facts_reach_policy() {
    let rule = PolicySource {
        name: "office.cedar".into(),
        text: r#"@id("office-hours-from-the-office")
permit (principal, action == Action::"invoke", resource)
when { context.client_ip.isInRange(ip("10.0.0.0/8")) && context.network_zone == "office"
       && context.hour_utc >= 8 && context.hour_utc < 18 && context.weekday_utc < 5
       && context.device_posture.contains("managed") };"#
            .into(),
    };
    let e = PolicyEngine::from_sources(vec![rule]).unwrap();
    // 2023-11-14 (a Tuesday) 22:13:20 UTC and 10:13:20 the same day.
    let evening = RequestContext::new("chat").at_unix_time(1_700_000_000);
    assert_eq!((evening.hour_utc, evening.weekday_utc), (22, 1));
    let mut ok = RequestContext::new("chat").at_unix_time(1_700_000_000 - 12 * 3600);
    ok.client_ip = "10.1.2.3".parse().unwrap();
    ok.network_zone = "office".into();
    ok.device_posture.insert("managed".into());
    let ask = |ctx: &RequestContext| {
        e.authorize(
            &user("a", &[]),
            Action::Invoke,
            &Resource::Model("m".into()),
            &[],
            ctx,
        )
        .unwrap()
    };
    assert!(matches!(ask(&ok), Verdict::Permit(_)));
    // The same office client seen through a dual-stack socket.
    let mut mapped = ok.clone();
    mapped.client_ip = "::ffff:10.1.2.3".parse().unwrap();
    assert!(matches!(ask(&mapped), Verdict::Permit(_)));
    let mut outside = ok.clone();
    outside.client_ip = "192.0.2.1".parse().unwrap();
    let mut late = ok.clone();
    late.hour_utc = 22;
    let mut unmanaged = ok.clone();
    unmanaged.device_posture.clear();
    let mut zone = ok.clone();
    zone.network_zone = "unknown".into();
    for (name, ctx) in [
        ("outside", outside),
        ("late", late),
        ("unmanaged", unmanaged),
        ("zone", zone),
    ] {
        assert!(matches!(ask(&ctx), Verdict::Deny(_)), "{name}");
    }
}

/// Every action of the schema can be allowed and is denied by default.
#[test]
fn every_action_is_allowed_by_a_permit_and_denied_without_one() {
    let cases = [
        (
            Action::Invoke,
            PrincipalKind::User,
            Resource::Model("m".into()),
        ),
        (
            Action::ListModel,
            PrincipalKind::Service,
            Resource::Model("m".into()),
        ),
        (
            Action::CallTool,
            PrincipalKind::Agent,
            Resource::Tool("t".into()),
        ),
        (
            Action::ReadDocument,
            PrincipalKind::Agent,
            Resource::Document("d".into()),
        ),
        (
            Action::Egress,
            PrincipalKind::Model,
            Resource::Destination("x.example".into()),
        ),
        (
            Action::Delegate,
            PrincipalKind::User,
            Resource::Agent("a".into()),
        ),
        (
            Action::Approve,
            PrincipalKind::User,
            Resource::Approval("apr_1".into()),
        ),
        (
            Action::Admin,
            PrincipalKind::Service,
            Resource::Api("keys".into()),
        ),
        (
            Action::Reveal,
            PrincipalKind::User,
            Resource::Api("redaction".into()),
        ),
    ];
    let text: String = cases
        .iter()
        .map(|(a, _, _)| {
            format!(
                "@id(\"ok-{a}\") permit (principal in Group::\"ok\", action == Action::\"{a}\", resource);\n"
            )
        })
        .collect();
    let e = PolicyEngine::from_sources(vec![PolicySource {
        name: "all.cedar".into(),
        text,
    }])
    .unwrap();
    for (action, kind, resource) in cases {
        let who = |groups: &[&str]| Principal {
            kind,
            id: "p".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            on_behalf_of: vec![],
            credential_id: "t".into(),
            device_posture: Vec::new(),
        };
        let ctx = RequestContext::new("test");
        let allowed = e
            .authorize(&who(&["ok"]), action, &resource, &[], &ctx)
            .unwrap();
        let Verdict::Permit(p) = allowed else {
            panic!("{action} should be allowed")
        };
        assert_eq!(p.decision().policies, [format!("ok-{action}")]);
        let denied = e
            .authorize(&who(&["other"]), action, &resource, &[], &ctx)
            .unwrap();
        assert!(
            matches!(denied, Verdict::Deny(_)),
            "{action} without a permit"
        );
    }
}

/// The posture a credential asserted reaches policy through the principal.
#[test]
fn device_posture_comes_from_the_principal() {
    let rule = PolicySource {
        name: "posture.cedar".into(),
        text: r#"@id("managed-only") permit (principal, action == Action::"invoke", resource) when { context.device_posture.contains("managed") };"#.into(),
    };
    let e = PolicyEngine::from_sources(vec![rule]).unwrap();
    let mut p = user("a", &[]);
    let ask = |p: &Principal| {
        let ctx = RequestContext::new("chat").with_principal(p);
        e.authorize(p, Action::Invoke, &Resource::Model("m".into()), &[], &ctx)
            .unwrap()
    };
    assert!(matches!(ask(&p), Verdict::Deny(_)));
    p.device_posture = vec!["managed".into()];
    assert!(matches!(ask(&p), Verdict::Permit(_)));
}

#[test]
fn entities_named_by_a_literal_are_told_apart_and_others_are_not() {
    let text = r#"
        permit (principal, action == Action::"read_document", resource == Document::"in-scope");
        permit (principal, action == Action::"read_document", resource)
          when { resource == Document::"in-condition" || [Document::"in-set"].contains(resource) };
        permit (principal in Group::"staff", action == Action::"read_document", resource in Collection::"wiki");
    "#;
    let e = PolicyEngine::from_sources(vec![PolicySource {
        name: "docs.cedar".into(),
        text: text.into(),
    }])
    .unwrap();
    for id in ["in-scope", "in-condition", "in-set"] {
        assert!(e.names(&Resource::Document(id.into())), "{id}");
    }
    assert!(!e.names(&Resource::Document("other".into())));
    // A collection named in a scope is a parent, not a document: documents stay alike.
    assert!(!e.names(&Resource::Document("wiki".into())));
}
