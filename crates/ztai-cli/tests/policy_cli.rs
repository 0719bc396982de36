//! `ztai policy validate|test|explain` through the real binary: exit codes, messages and JSON.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::BIN;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pack() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

fn ztai(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_sample_pack_passes_its_own_tests() {
    let tests = pack().join("policy-tests.toml");
    let o = ztai(&[
        "policy",
        "test",
        "--policies",
        pack().to_str().unwrap(),
        tests.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["failed"], 0);
    assert!(v["passed"].as_u64().unwrap() >= 8);
    // Allowed and denied cases both present, each with its explanation.
    let cases = v["cases"].as_array().unwrap();
    let decisions: Vec<&str> = cases
        .iter()
        .map(|c| {
            c["result"]["explanation"]["decision"]["decision"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(decisions.contains(&"allow") && decisions.contains(&"deny"));
}

#[test]
fn a_wrong_expectation_fails_with_the_reason_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.toml");
    std::fs::write(
        &file,
        r#"
[[test]]
name = "support bot reads someone else's orders"
principal = "agent:support-bot"
groups = ["agents"]
on_behalf_of = ["user:alice"]
action = "call_tool"
resource = "tool:orders.lookup"
context = { arguments = { customer_id = "bob" } }
expect = "allow"
"#,
    )
    .unwrap();
    let o = ztai(&[
        "policy",
        "test",
        "--policies",
        pack().to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("FAIL  support bot reads someone else's orders"),
        "{t}"
    );
    assert!(t.contains("expected allow, got deny"), "{t}");
    assert!(
        t.contains(
            "support-bot-own-orders (permit in tools.cedar): in scope; its conditions do not hold"
        ),
        "{t}"
    );
    assert!(t.contains("0 passed, 1 failed"), "{t}");
}

#[test]
fn malformed_test_files_and_questions_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[test]]\nname = \"x\"\nprincipal = \"user:a\"\naction = \"invoke\"\nresource = \"model:m\"\nexpect = \"allow\"\ncontext = { risk = 3 }\n",
            "unknown field `risk`",
        ),
        ("[[test]\n", "malformed"),
        ("", "no [[test]] cases"),
        ("\u{0}\u{ff}", "malformed"),
    ];
    for (i, (body, expect)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("{i}.toml"));
        std::fs::write(&file, body).unwrap();
        let o = ztai(&[
            "policy",
            "test",
            "--policies",
            pack().to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{body:?}: {}", text(&o));
        assert!(text(&o).contains(expect), "{body:?}: {}", text(&o));
    }
    // Non-UTF-8 bytes in a test file.
    let file = dir.path().join("bin.toml");
    std::fs::write(&file, [0xff, 0xfe, 0x00]).unwrap();
    let o = ztai(&[
        "policy",
        "test",
        "--policies",
        pack().to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // A question that cannot be asked.
    let o = ztai(&[
        "policy",
        "explain",
        "--policies",
        pack().to_str().unwrap(),
        "--principal",
        "alice",
        "--action",
        "invoke",
        "--resource",
        "model:m",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("not a principal"), "{}", text(&o));
}

#[test]
fn an_invalid_policy_set_is_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.cedar"),
        "@id(\"ok\")\npermit (principal, action == Action::\"invoke\", resource);\n\npermit (principal, action == Action::\"invoke\", resource) when { context.no_such_field };\n",
    )
    .unwrap();
    for args in [
        vec!["policy", "validate", dir.path().to_str().unwrap()],
        vec![
            "policy",
            "test",
            "--policies",
            dir.path().to_str().unwrap(),
            "x.toml",
        ],
    ] {
        let o = ztai(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", text(&o));
        let t = text(&o);
        assert!(t.contains("bad.cedar:4:"), "{args:?}: {t}");
    }
}

#[test]
fn explain_names_the_determining_policy_and_why_others_did_not_apply() {
    let o = ztai(&[
        "policy",
        "explain",
        "--policies",
        pack().to_str().unwrap(),
        "--principal",
        "user:alice",
        "--groups",
        "staff",
        "--action",
        "invoke",
        "--resource",
        "model:echo-small",
        "--resource-parents",
        "standard",
        "--context",
        r#"{"finding_types": ["private_key"]}"#,
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["decision"]["decision"], "deny");
    assert_eq!(
        v["decision"]["policies"],
        serde_json::json!(["deny-private-keys"])
    );
    let outcome = |id: &str| {
        v["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .unwrap()["outcome"]
            .clone()
    };
    assert_eq!(outcome("deny-private-keys")["outcome"], "determining");
    assert_eq!(outcome("staff-standard-models")["outcome"], "overridden");
    assert_eq!(
        outcome("deny-prompt-injection")["outcome"],
        "conditions_false"
    );
    assert_eq!(
        outcome("research-restricted-models"),
        serde_json::json!({"outcome": "out_of_scope", "detail": "principal"})
    );
}
