//! OCSF output checked against the schema: every required attribute present, every `at_least_one`
//! constraint met, enums and types right, class/category/type ids consistent, and no attribute the
//! schema does not define (a typo would otherwise pass unnoticed). The schema subset is transcribed
//! from the OCSF sources in `tests/data/ocsf-1.3-subset.json`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{Value, json};
use ztai_audit::export::{ExportFormat, OCSF_VERSION, render};
use ztai_core::{
    AuditRecord, Channel, CredentialEvent, CredentialOperation, Decision, FindingCategory,
    FindingSummary, Severity, Span, StageTimings,
};

fn schema() -> Value {
    serde_json::from_str(include_str!("data/ocsf-1.3-subset.json")).unwrap()
}

fn check_type(schema: &Value, path: &str, ty: &str, v: &Value, errs: &mut Vec<String>) {
    let ok = match ty {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "json" => true,
        "ip" => v
            .as_str()
            .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok()),
        t if t.starts_with("array:") => {
            let inner = &t["array:".len()..];
            match v.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        check_type(schema, &format!("{path}[{i}]"), inner, item, errs);
                    }
                    true
                }
                None => false,
            }
        }
        t if t.starts_with("object:") => {
            let name = &t["object:".len()..];
            match schema["objects"].get(name) {
                Some(def) => {
                    check_object(schema, path, def, v, errs);
                    v.is_object()
                }
                None => {
                    errs.push(format!("{path}: schema subset lacks object `{name}`"));
                    true
                }
            }
        }
        other => {
            errs.push(format!("{path}: unknown type `{other}`"));
            true
        }
    };
    if !ok {
        errs.push(format!("{path}: expected {ty}, found {v}"));
    }
}

fn check_attrs(
    schema: &Value,
    path: &str,
    attrs: &serde_json::Map<String, Value>,
    at_least_one: Option<&Value>,
    v: &Value,
    errs: &mut Vec<String>,
) {
    let Some(obj) = v.as_object() else {
        errs.push(format!("{path}: expected an object"));
        return;
    };
    for (name, def) in attrs {
        if def["requirement"] == "required" && !obj.contains_key(name) {
            errs.push(format!("{path}.{name}: required attribute missing"));
        }
    }
    for (name, value) in obj {
        let Some(def) = attrs.get(name) else {
            errs.push(format!("{path}.{name}: not defined by the schema"));
            continue;
        };
        check_type(
            schema,
            &format!("{path}.{name}"),
            def["type"].as_str().unwrap(),
            value,
            errs,
        );
        if let Some(allowed) = def.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            errs.push(format!("{path}.{name}: {value} is not one of {allowed:?}"));
        }
    }
    if let Some(group) = at_least_one.and_then(Value::as_array)
        && !group.iter().any(|k| obj.contains_key(k.as_str().unwrap()))
    {
        errs.push(format!("{path}: needs at least one of {group:?}"));
    }
}

fn check_object(schema: &Value, path: &str, def: &Value, v: &Value, errs: &mut Vec<String>) {
    check_attrs(
        schema,
        path,
        def["attributes"].as_object().unwrap(),
        def.get("at_least_one"),
        v,
        errs,
    );
}

/// Every problem the schema finds in `event`; empty means valid.
fn validate(event: &Value) -> Vec<String> {
    let schema = schema();
    let mut errs = Vec::new();
    let Some(class) = schema["classes"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, c)| c["uid"] == event["class_uid"])
        .map(|(_, c)| c.clone())
    else {
        return vec![format!(
            "class_uid {} is not a class ZTAI emits",
            event["class_uid"]
        )];
    };
    // Class attributes refine (override) the base event's.
    let mut attrs = schema["base"]["attributes"].as_object().unwrap().clone();
    for (k, v) in class["attributes"].as_object().unwrap() {
        attrs.insert(k.clone(), v.clone());
    }
    check_attrs(
        &schema,
        "$",
        &attrs,
        class.get("at_least_one"),
        event,
        &mut errs,
    );
    if event["category_uid"] != class["category_uid"] {
        errs.push(format!(
            "category_uid {} does not match class",
            event["category_uid"]
        ));
    }
    let expect =
        event["class_uid"].as_u64().unwrap_or(0) * 100 + event["activity_id"].as_u64().unwrap_or(0);
    if event["type_uid"].as_u64() != Some(expect) {
        errs.push(format!("type_uid {} should be {expect}", event["type_uid"]));
    }
    if event["metadata"]["version"] != schema["version"] {
        errs.push("metadata.version differs from the schema version".into());
    }
    errs
}

fn base() -> AuditRecord {
    AuditRecord {
        id: "req-1".into(),
        time: "2026-11-22T05:00:00.123456Z".into(),
        instance: "gw-1".into(),
        principal: "user:alice".into(),
        chain: vec!["user:alice".into()],
        action: "invoke".into(),
        resource: "Model::\"gpt-4o\"".into(),
        decision: Decision::Allow,
        policies: vec!["allow-team".into()],
        reason: String::new(),
        obligations: vec!["redact:pii".into()],
        findings: vec![],
        status: 200,
        request_digest: "ab".repeat(32),
        response_digest: "cd".repeat(32),
        timings: StageTimings {
            total_us: 4200,
            ..StageTimings::default()
        },
        content: None,
        client: "127.0.0.1:50432".into(),
        credential: None,
    }
}

fn records() -> Vec<(&'static str, AuditRecord)> {
    let mut with_findings = base();
    with_findings.findings = vec![FindingSummary {
        kind: "email".into(),
        category: FindingCategory::Pii,
        severity: Severity::High,
        span: Span::new(3, 20),
        channel: Channel::Output,
        detector: "rules".into(),
    }];
    let mut denied = base();
    denied.decision = Decision::Deny;
    denied.status = 403;
    denied.reason = "prompt injection".into();
    denied.policies = vec!["forbid-injection".into(), "forbid-secrets".into()];
    let mut anonymous = base();
    anonymous.principal = "anonymous".into();
    anonymous.chain = vec![];
    anonymous.decision = Decision::Deny;
    anonymous.policies = vec![];
    anonymous.status = 401;
    anonymous.client = "[::1]:4000".into();
    let mut issue = base();
    issue.action = "admin::create_key".into();
    issue.resource = "Api::\"keys\"".into();
    issue.status = 201;
    issue.credential = Some(CredentialEvent {
        operation: CredentialOperation::Issue,
        credential_id: "k_123".into(),
        subject: "agent:summariser".into(),
        groups: vec!["agents".into()],
    });
    let mut issue_no_groups = issue.clone();
    if let Some(c) = issue_no_groups.credential.as_mut() {
        c.groups.clear();
    }
    let mut revoke = base();
    revoke.action = "admin::revoke_key".into();
    revoke.credential = Some(CredentialEvent {
        operation: CredentialOperation::Revoke,
        credential_id: "k_123".into(),
        subject: String::new(),
        groups: vec![],
    });
    let mut reload = base();
    reload.action = "policy_reload".into();
    reload.principal = "service:ztai".into();
    reload.client = String::new();
    reload.status = 0;
    let mut full = base();
    full.content = Some(json!({"request": {"messages": []}}));
    full.principal = "user:~3f2a9c0b11aa22bb33cc44dd".into();
    vec![
        ("allowed", base()),
        ("findings", with_findings),
        ("denied", denied),
        ("anonymous", anonymous),
        ("credential issued", issue),
        ("credential issued without groups", issue_no_groups),
        ("credential revoked", revoke),
        ("policy reload", reload),
        ("full content, pseudonymised", full),
    ]
}

fn ocsf_of(r: &AuditRecord, seq: i64) -> Value {
    let json = serde_json::to_string(r).unwrap();
    let e = render(ExportFormat::Ocsf, seq, &json).unwrap();
    assert!(!e.text.contains('\n'), "an event must be one line");
    serde_json::from_str(&e.text).unwrap()
}

#[test]
fn every_kind_of_record_is_a_valid_ocsf_event() {
    for (seq, (what, r)) in records().into_iter().enumerate() {
        let event = ocsf_of(&r, seq as i64 + 1);
        let errs = validate(&event);
        assert!(errs.is_empty(), "{what}: {errs:#?}\n{event:#}");
        assert_eq!(event["metadata"]["version"], OCSF_VERSION);
        assert_eq!(event["metadata"]["sequence"], seq as i64 + 1);
        assert_eq!(event["metadata"]["uid"], "req-1");
        assert_eq!(
            event["time"], 1_795_323_600_123_i64,
            "{what}: ms since the epoch"
        );
    }
}

#[test]
fn classes_carry_the_decision_and_what_it_was_about() {
    let all = records();
    let get = |name: &str| ocsf_of(&all.iter().find(|(n, _)| *n == name).unwrap().1, 7);

    let denied = get("denied");
    assert_eq!(denied["class_uid"], 6003);
    assert_eq!(denied["activity_id"], 1);
    assert_eq!(denied["status_id"], 2);
    assert_eq!(denied["status_code"], "403");
    assert_eq!(denied["status_detail"], "prompt injection");
    let auths = denied["actor"]["authorizations"].as_array().unwrap();
    assert_eq!(auths.len(), 2);
    assert_eq!(auths[0]["decision"], "Deny");
    assert_eq!(auths[1]["policy"]["uid"], "forbid-secrets");
    assert_eq!(
        denied["resources"][0],
        json!({"uid": "gpt-4o", "type": "Model"})
    );
    assert_eq!(
        denied["src_endpoint"],
        json!({"ip": "127.0.0.1", "port": 50432})
    );

    let findings = get("findings");
    assert_eq!(findings["severity_id"], 4);
    assert_eq!(findings["unmapped"]["ztai"]["findings"][0]["kind"], "email");
    assert_eq!(findings["status_id"], 1);

    let issued = get("credential issued");
    assert_eq!(issued["class_uid"], 3003);
    assert_eq!(issued["type_uid"], 300301);
    assert_eq!(issued["user"]["uid"], "agent:summariser");
    assert_eq!(issued["user"]["type_id"], 99);
    assert_eq!(issued["actor"]["user"]["uid"], "user:alice");
    assert_eq!(
        issued["privileges"],
        json!(["credential:k_123", "group:agents"])
    );

    let revoked = get("credential revoked");
    assert_eq!(revoked["class_uid"], 6003);
    assert_eq!(revoked["activity_id"], 4, "revocation is a Delete");
    assert_eq!(
        revoked["resources"][1],
        json!({"uid": "k_123", "type": "ApiKey"})
    );

    let reload = get("policy reload");
    assert_eq!(reload["activity_id"], 3);
    assert_eq!(reload["src_endpoint"], json!({"svc_name": "ztai-gateway"}));
    assert!(reload.get("status_code").is_none());

    let anonymous = get("anonymous");
    assert_eq!(anonymous["actor"]["user"]["type_id"], 0);
    assert_eq!(anonymous["src_endpoint"]["ip"], "::1");

    let full = get("full content, pseudonymised");
    assert_eq!(
        full["unmapped"]["ztai"]["content"]["request"]["messages"],
        json!([])
    );
    assert_eq!(
        full["actor"]["user"]["uid"],
        "user:~3f2a9c0b11aa22bb33cc44dd"
    );
}

#[test]
fn checkpoint_events_are_valid_ocsf_too() {
    let row = ztai_store::CheckpointRow {
        tree_size: 42,
        root: vec![7; 32],
        time: "2026-11-22T05:00:00Z".into(),
        note: "ztai-audit/gw-1\n42\nroot=\n\n\u{2014} sig\n".into(),
        frontier: vec![],
    };
    let e = ztai_audit::export::render_checkpoint(ExportFormat::Ocsf, &row).unwrap();
    let v: Value = serde_json::from_str(&e.text).unwrap();
    let errs = validate(&v);
    assert!(errs.is_empty(), "{errs:#?}\n{v:#}");
    assert_eq!(v["api"]["operation"], "audit_checkpoint");
    assert_eq!(v["unmapped"]["ztai"]["checkpoint"]["tree_size"], 42);
}

#[test]
fn the_validator_refuses_what_the_schema_refuses() {
    let good = ocsf_of(&base(), 1);
    assert!(validate(&good).is_empty());
    let broken = |f: &dyn Fn(&mut Value)| {
        let mut e = good.clone();
        f(&mut e);
        validate(&e)
    };
    assert!(
        !broken(&|e| {
            e.as_object_mut().unwrap().remove("src_endpoint");
        })
        .is_empty()
    );
    assert!(
        !broken(&|e| {
            e["metadata"].as_object_mut().unwrap().remove("product");
        })
        .is_empty()
    );
    assert!(
        !broken(&|e| {
            e["api"].as_object_mut().unwrap().remove("operation");
        })
        .is_empty()
    );
    assert!(
        !broken(&|e| e["actorr"] = json!({})).is_empty(),
        "unknown attribute"
    );
    assert!(!broken(&|e| e["severity_id"] = json!(7)).is_empty(), "enum");
    assert!(
        !broken(&|e| e["time"] = json!("yesterday")).is_empty(),
        "type"
    );
    assert!(
        !broken(&|e| e["type_uid"] = json!(600399)).is_empty(),
        "type_uid"
    );
    assert!(
        !broken(&|e| e["src_endpoint"] = json!({"port": 1})).is_empty(),
        "at_least_one"
    );
    assert!(
        !broken(&|e| e["src_endpoint"]["ip"] = json!("not-an-ip")).is_empty(),
        "ip"
    );
    let issued = ocsf_of(&records()[4].1, 1);
    assert!(validate(&issued).is_empty());
    let mut no_privileges = issued.clone();
    no_privileges.as_object_mut().unwrap().remove("privileges");
    assert!(
        !validate(&no_privileges).is_empty(),
        "authorize session needs privileges"
    );
}
