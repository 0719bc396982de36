//! Unit tests of the MCP proxy's pure parts: result screening, taint, answers.
use super::*;
use crate::config::mcp::McpTransport;

fn cfg() -> McpServerConfig {
    upstream::settings_for_test(
        "files",
        McpTransport::Stdio {
            command: "/bin/false".into(),
            args: vec![],
            env: Default::default(),
        },
    )
}

#[test]
fn strings_skip_binary_and_meta_and_escape_pointers() {
    let v = json!({"content": [{"type": "text", "text": "hi"}, {"type": "image", "data": "AAAA"}],
                   "structuredContent": {"a/b": "x"}, "_meta": {"note": "skip"}});
    let mut out = Vec::new();
    strings(&v, "", &mut out);
    let pointers: Vec<&str> = out.iter().map(|(p, _)| p.as_str()).collect();
    assert!(pointers.contains(&"/content/0/text"));
    assert!(pointers.contains(&"/structuredContent/a~1b"));
    assert!(!out.iter().any(|(_, s)| s == "AAAA" || s == "skip"));
    // Every pointer leads back to its string.
    for (p, s) in &out {
        assert_eq!(v.pointer(p).and_then(Value::as_str), Some(s.as_str()));
    }
}

#[test]
fn taint_follows_trust_findings_and_classification() {
    let mut c = cfg();
    c.untrusted = false;
    let none = BTreeSet::new();
    assert!(taint_of(&c, &none, "", &[]).is_empty());
    assert_eq!(
        taint_of(&c, &none, "restricted", &[]),
        [TAINT_CONFIDENTIAL.to_string()].into()
    );
    let f = Finding {
        kind: "ignore_previous".into(),
        category: FindingCategory::PromptInjection,
        severity: ztai_core::Severity::High,
        confidence: 1.0,
        detector: "test",
        span: ztai_core::Span::new(0, 1),
        channel: Channel::Untrusted,
    };
    assert!(taint_of(&c, &none, "", &[f]).contains(TAINT_UNTRUSTED));
    c.untrusted = true;
    let extra: BTreeSet<String> = ["web".to_string()].into();
    let t = taint_of(&c, &extra, "public", &[]);
    assert!(t.contains(TAINT_UNTRUSTED) && t.contains("web") && !t.contains(TAINT_CONFIDENTIAL));
}

#[test]
fn errors_keep_the_id_and_carry_data() {
    let e = RpcError::from(GatewayError::RateLimited {
        message: "slow down".into(),
        retry_after_secs: 7,
    });
    assert_eq!((e.code, e.status), (RATE_LIMITED, 429));
    let msg = rpc_error(&json!(5), &e);
    assert_eq!(msg["id"], json!(5));
    assert_eq!(msg["error"]["data"]["retry_after_secs"], json!(7));
    assert_eq!(
        rpc_error(&json!("a"), &RpcError::new(POLICY_DENIED, 403, "no"))["error"]["code"],
        json!(POLICY_DENIED)
    );
}

#[test]
fn accept_must_allow_json() {
    let mut h = http::HeaderMap::new();
    assert!(check_accept(&h).is_ok());
    h.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    assert!(check_accept(&h).is_ok());
    h.insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    assert!(check_accept(&h).is_err());
    h.insert(header::ACCEPT, HeaderValue::from_static("*/*;q=0.1"));
    assert!(check_accept(&h).is_ok());
}

#[test]
fn http_refusals_carry_json_rpc_errors_and_retry_hints() {
    let r = http_refusal(
        &GatewayError::RateLimited {
            message: "slow down".into(),
            retry_after_secs: 3,
        },
        &Value::Null,
    );
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers().get(header::RETRY_AFTER).unwrap(), "3");
    let r = http_refusal(&GatewayError::Unauthenticated("who?".into()), &json!(4));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().get(header::WWW_AUTHENTICATE).is_some());
}
