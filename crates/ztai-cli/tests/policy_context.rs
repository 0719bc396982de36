//! The gateway fills the request context policy reads: the client's network zone from
//! `[[network_zones]]` and the model's `classification`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::{BIN, chat, serve, standin};

#[test]
fn zones_and_classification_reach_policy() {
    let dir = tempfile::tempdir().unwrap();
    let (_standin, standin_url) = standin();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("context.cedar"),
        r#"@id("lab-confidential")
permit (principal in Group::"staff", action == Action::"invoke", resource == Model::"conf")
when { context.network_zone == "lab" && context.data_classification == "confidential" };

@id("lab-public")
permit (principal in Group::"staff", action == Action::"invoke", resource == Model::"pub")
when { context.data_classification == "confidential" };

@id("office-only")
permit (principal in Group::"staff", action == Action::"invoke", resource == Model::"office")
when { context.network_zone == "office" };
"#,
    )
    .unwrap();
    let data = dir.path().join("data");
    let out = std::process::Command::new(BIN)
        .args([
            "keys",
            "create",
            "--principal",
            "ann",
            "--groups",
            "staff",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let config = format!(
        r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[storage]
data_dir = "data"

[[network_zones]]
name = "office"
cidrs = ["10.0.0.0/8"]

[[network_zones]]
name = "lab"
cidrs = ["127.0.0.0/8", "::1"]

[[upstreams]]
name = "standin"
base_url = "{standin_url}"

[[models]]
name = "conf"
upstream = "standin"
classification = "confidential"

[[models]]
name = "pub"
upstream = "standin"
classification = "public"

[[models]]
name = "office"
upstream = "standin"
classification = "confidential"
"#
    );
    let (_gw, gw, _admin) = serve(dir.path(), &config);
    assert_eq!(chat(gw, &key, "conf", "hi", false).status, 200);
    // The classification of this model is public: the rule does not hold.
    assert_eq!(chat(gw, &key, "pub", "hi", false).status, 403);
    // The test's client is in the lab zone, not the office.
    assert_eq!(chat(gw, &key, "office", "hi", false).status, 403);
}
