//! The deployment gate end to end: a registry-gated model takes traffic only from a version the
//! gateway itself verified (signature and scan), that was approved and deployed; quarantining it
//! moves the very next request to the last known-good version; revoking the signer takes away
//! what it signed; with nothing left the model is refused with the reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{Served, chat, request};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn keys() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ztai-supply/tests/data/model_signing/keys/certificate")
}

fn ztai(args: &[&str], served: &Served) -> Output {
    Command::new(common::BIN)
        .args(args)
        .env("ZTAI_ADMIN_URL", format!("http://{}", served.admin))
        .env("ZTAI_ADMIN_TOKEN", &served.admin_token)
        .output()
        .unwrap()
}

fn ok(out: Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A model directory, signed with the reference test key; returns (dir, signature).
fn signed_model(root: &Path, name: &str, weights: &[u8], served: &Served) -> (String, String) {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    std::fs::write(dir.join("config.json"), b"{\"layers\": 2}").unwrap();
    let sig = root.join(format!("{name}.sig"));
    let key = keys().join("signing-key.pem");
    let out = ztai(
        &[
            "model",
            "sign",
            "key",
            "--private-key",
            key.to_str().unwrap(),
            "--signature",
            sig.to_str().unwrap(),
            dir.to_str().unwrap(),
        ],
        served,
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    (dir.display().to_string(), sig.display().to_string())
}

fn safetensors(fill: u8) -> Vec<u8> {
    let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend_from_slice(&[fill; 8]);
    out
}

fn served_model(served: &Served) -> (u16, Value) {
    let r = chat(served.gw, &served.key, "llama", "hello", false);
    (r.status, r.json())
}

fn register(served: &Served, version: &str, path: &str, sig: &str) -> Value {
    ok(ztai(
        &[
            "model",
            "registry",
            "register",
            "llama",
            version,
            "--path",
            path,
            "--signature",
            sig,
            "--upstream-model",
            &format!("llama-{version}"),
            "--owner",
            "user:alice",
            "--use",
            "support chat",
            "--risk-tier",
            "limited",
            "--lineage",
            r#"{"datasets": ["sha256:4f2a"], "base_model": "llama-3", "seed": 7, "commit": "9e1c"}"#,
        ],
        served,
    ))
}

fn verify(served: &Served, version: &str) -> Output {
    let public = keys().join("signing-key-pub.pem");
    ztai(
        &[
            "model",
            "registry",
            "verify",
            "llama",
            version,
            "key",
            "--public-key",
            public.to_str().unwrap(),
        ],
        served,
    )
}

#[test]
fn only_verified_approved_deployed_versions_take_traffic() {
    let tmp = tempfile::tempdir().unwrap();
    let served = Served::start(
        tmp.path(),
        "[[models]]\nname = \"llama\"\nupstream = \"standin\"\ngroups = [\"standard\"]\nregistry = true\n",
    );
    // Not in the registry yet: refused, saying so.
    let (status, body) = served_model(&served);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "model_unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not registered")
    );

    let models = tmp.path().join("models");
    let (v1, s1) = signed_model(&models, "v1", &safetensors(1), &served);
    let (v2, s2) = signed_model(&models, "v2", &safetensors(2), &served);
    let registered = register(&served, "v1", &v1, &s1);
    assert_eq!(registered["state"], "registered");
    assert_eq!(registered["lineage"]["base_model"], "llama-3");
    let (status, body) = served_model(&served);
    assert_eq!(status, 503);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no version has been deployed"),
        "{body}"
    );

    // The lifecycle's order is enforced: no approval before verification.
    let early = ztai(&["model", "registry", "approve", "llama", "v1"], &served);
    assert_ne!(early.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("verify its signature"),
        "{early:?}"
    );

    let verified = ok(verify(&served, "v1"));
    assert_eq!(verified["state"], "verified");
    assert_eq!(verified["signer"]["method"], "key");
    assert_eq!(verified["scan"]["verdict"], "clean");
    ok(ztai(
        &[
            "model",
            "registry",
            "approve",
            "llama",
            "v1",
            "--reason",
            "eval passed",
        ],
        &served,
    ));
    ok(ztai(
        &["model", "registry", "deploy", "llama", "v1"],
        &served,
    ));
    let (status, body) = served_model(&served);
    assert_eq!(
        (status, body["model"].as_str()),
        (200, Some("llama-v1")),
        "{body}"
    );

    register(&served, "v2", &v2, &s2);
    ok(verify(&served, "v2"));
    ok(ztai(
        &["model", "registry", "approve", "llama", "v2"],
        &served,
    ));
    let deployed = ok(ztai(
        &["model", "registry", "deploy", "llama", "v2"],
        &served,
    ));
    let states: Vec<(String, String)> = deployed["changed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap().to_string(),
                v["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ("v2".into(), "deployed".into()),
            ("v1".into(), "approved".into())
        ]
    );
    assert_eq!(served_model(&served).1["model"], "llama-v2");

    // Quarantine: the very next request goes to the last known-good version.
    ok(ztai(
        &[
            "model",
            "registry",
            "quarantine",
            "llama",
            "v2",
            "--reason",
            "incident 42: odd outputs",
        ],
        &served,
    ));
    let (status, body) = served_model(&served);
    assert_eq!(
        (status, body["model"].as_str()),
        (200, Some("llama-v1")),
        "{body}"
    );
    let show = ok(ztai(&["model", "registry", "show", "llama"], &served));
    assert_eq!(show["route"]["version"], "v1");
    assert_eq!(show["route"]["fallback"], true);

    // A version whose files changed after signing is refused and stays registered.
    let (v3, s3) = signed_model(&models, "v3", &safetensors(3), &served);
    std::fs::write(Path::new(&v3).join("config.json"), b"{\"layers\": 3}").unwrap();
    register(&served, "v3", &v3, &s3);
    let refused = verify(&served, "v3");
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("changed: config.json"),
        "{refused:?}"
    );
    // A properly signed version carrying a malicious pickle is quarantined by the scan.
    let (v4, s4) = {
        let dir = models.join("v4");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("pytorch_model.bin"),
            b"\x80\x04\x8c\x05posix\x8c\x06system\x93\x8c\x02id\x85R.",
        )
        .unwrap();
        let sig = models.join("v4.sig");
        let key = keys().join("signing-key.pem");
        assert_eq!(
            ztai(
                &[
                    "model",
                    "sign",
                    "key",
                    "--private-key",
                    key.to_str().unwrap(),
                    "--signature",
                    sig.to_str().unwrap(),
                    dir.to_str().unwrap()
                ],
                &served
            )
            .status
            .code(),
            Some(0)
        );
        (dir.display().to_string(), sig.display().to_string())
    };
    register(&served, "v4", &v4, &s4);
    let scanned = ok(verify(&served, "v4"));
    assert_eq!(scanned["state"], "quarantined");
    assert!(
        scanned["scan"].to_string().contains("posix.system"),
        "{scanned}"
    );

    // Revoking the signing key revokes every version it signed; nothing is left to serve.
    let hint = verified["signer"]["key_hint"].as_str().unwrap().to_string();
    let revoked = ok(ztai(
        &[
            "model",
            "registry",
            "revoke-signer",
            &hint,
            "--reason",
            "key leaked",
        ],
        &served,
    ));
    let mut names: Vec<&str> = revoked["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["v1", "v2", "v4"]);
    let (status, body) = served_model(&served);
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{body}"
    );
    // And a new version signed by the revoked key does not verify.
    let (v5, s5) = signed_model(&models, "v5", &safetensors(5), &served);
    register(&served, "v5", &v5, &s5);
    let again = verify(&served, "v5");
    assert_ne!(again.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("revoked signer"),
        "{again:?}"
    );

    // The registry is an administrative API: a user's key cannot touch it.
    let r = request(
        served.admin,
        "GET",
        "/api/v1/registry/models",
        Some(&served.key),
        "",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    // Every move was recorded.
    let audit = request(
        served.admin,
        "GET",
        "/api/v1/audit?limit=200",
        Some(&served.admin_token),
        "",
    );
    let text = audit.text();
    for action in [
        "admin::verify_model_version",
        "admin::approve_model_version",
        "admin::deploy_model_version",
        "admin::quarantine_model_version",
        "admin::revoke_model_signer",
    ] {
        assert!(text.contains(action), "audit lacks {action}");
    }
}
