//! Tool-call arguments come from agents and models. Whatever JSON arrives, flattening it for
//! policy must give bounded entries or an error, and deciding on it must never crash; two
//! different flattenings never share a cache entry (checked by deciding twice).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use ztai_core::{Action, Principal, PrincipalKind, Resource};
use ztai_policy::{MAX_ARGUMENT_LEAVES, PolicyEngine, PolicySource, RequestContext};

fn engine() -> &'static PolicyEngine {
    static E: OnceLock<PolicyEngine> = OnceLock::new();
    E.get_or_init(|| {
        PolicyEngine::from_sources(vec![PolicySource {
            name: "fuzz.cedar".into(),
            text: r#"@id("own") permit (principal, action == Action::"call_tool", resource)
when { context.arguments.hasTag("customer_id") && context.arguments.getTag("customer_id") == "c-1" };"#
                .into(),
        }])
        .unwrap_or_else(|e| panic!("the fuzz policy must load: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let Ok(ctx) = RequestContext::new("tool").with_arguments(&value) else { return };
    assert!(ctx.arguments.len() <= MAX_ARGUMENT_LEAVES);
    let p = Principal {
        kind: PrincipalKind::Agent,
        id: "a".into(),
        groups: vec![],
        on_behalf_of: vec![],
        credential_id: "fuzz".into(),
        device_posture: vec![],
    };
    let r = Resource::Tool("t".into());
    let cached = engine().authorize(&p, Action::CallTool, &r, &[], &ctx);
    let fresh = engine().evaluate(&p, Action::CallTool, &r, &[], &ctx);
    if let (Ok(a), Ok(b)) = (cached, fresh) {
        assert_eq!(a.decision().decision, b.decision().decision);
        let allowed = ctx.arguments.get("customer_id").map(String::as_str) == Some("c-1");
        assert_eq!(a.decision().is_allow(), allowed);
    }
});
