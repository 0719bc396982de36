//! `ztai model sign|verify|hash` through the binary, on the reference tool's vectors, with the
//! reference tool's command lines (underscore spellings included).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::BIN;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ztai-supply/tests/data/model_signing")
}

fn ztai_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn reference_vectors_verify_with_the_reference_command_lines() {
    let dir = vectors();
    for v in ["v1.0.1", "v1.1.0"] {
        let key = format!("{v}-elliptic-key");
        let out = ztai_in(
            &dir,
            &[
                "model",
                "verify",
                "key",
                "--signature",
                &format!("{key}/model.sig"),
                "--public_key",
                "keys/certificate/signing-key-pub.pem",
                "--ignore-paths",
                &format!("{key}/ignore-me"),
                &key,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{key}: {out:?}");
        let cert = format!("{v}-certificate");
        let out = ztai_in(
            &dir,
            &[
                "model",
                "verify",
                "certificate",
                "--signature",
                &format!("{cert}/model.sig"),
                "--certificate_chain",
                "keys/certificate/ca-cert.pem",
                "--ignore-paths",
                &format!("{cert}/ignore-me"),
                &cert,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{cert}: {out:?}");
        let store = format!("{v}-sigstore");
        let out = ztai_in(
            &dir,
            &[
                "model",
                "verify",
                "sigstore",
                "--trust_config",
                "sigstore_prod_client_trust_config.json",
                "--identity",
                "stefanb@us.ibm.com",
                "--identity_provider",
                "https://sigstore.verify.ibm.com/oauth2",
                "--ignore-paths",
                &format!("{store}/ignore-me"),
                "--signature",
                &format!("{store}/model.sig"),
                "--json",
                &store,
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{store}: {out:?}");
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["signer"]["identity"], "stefanb@us.ibm.com");
        assert_eq!(doc["files"], 2);
    }
    // Someone else's identity: exit 1 with the reason.
    let out = ztai_in(
        &dir,
        &[
            "model",
            "verify",
            "sigstore",
            "--trust-config",
            "sigstore_prod_client_trust_config.json",
            "--identity",
            "mallory@example.com",
            "--identity-provider",
            "https://sigstore.verify.ibm.com/oauth2",
            "--signature",
            "v1.1.0-sigstore/model.sig",
            "v1.1.0-sigstore",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mallory@example.com"));
}

#[test]
fn sign_then_tamper_then_verify_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    std::fs::create_dir_all(model.join("layers")).unwrap();
    std::fs::write(model.join("layers/0.bin"), vec![3u8; 300_000]).unwrap();
    std::fs::write(model.join("config.json"), b"{}").unwrap();
    let keys = vectors().join("keys/certificate");
    let key = keys.join("signing-key.pem");
    let signed = ztai_in(
        tmp.path(),
        &[
            "model",
            "sign",
            "key",
            "--private-key",
            key.to_str().unwrap(),
            "m",
        ],
    );
    assert_eq!(signed.status.code(), Some(0), "{signed:?}");
    // Default signature location is model.sig in the current directory.
    assert!(tmp.path().join("model.sig").exists());
    let public = keys.join("signing-key-pub.pem");
    let verify = |dir: &Path| {
        ztai_in(
            dir,
            &[
                "model",
                "verify",
                "key",
                "--signature",
                "model.sig",
                "--public-key",
                public.to_str().unwrap(),
                "m",
            ],
        )
    };
    assert_eq!(verify(tmp.path()).status.code(), Some(0));
    std::fs::write(model.join("layers/0.bin"), vec![4u8; 300_000]).unwrap();
    let out = verify(tmp.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("changed: layers/0.bin"),
        "{out:?}"
    );
    // A signature that is not a bundle fails verification (1); a signature that cannot be read
    // is an error (2).
    std::fs::write(tmp.path().join("bad.sig"), b"not json").unwrap();
    let out = ztai_in(
        tmp.path(),
        &[
            "model",
            "verify",
            "key",
            "--signature",
            "bad.sig",
            "--public-key",
            public.to_str().unwrap(),
            "m",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a Sigstore bundle"));
    let out = ztai_in(
        tmp.path(),
        &[
            "model",
            "verify",
            "key",
            "--signature",
            "gone.sig",
            "--public-key",
            public.to_str().unwrap(),
            "m",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");

    // `hash` prints the manifest a signature would cover.
    let out = ztai_in(
        tmp.path(),
        &["model", "hash", "--shard-size", "100000", "m"],
    );
    assert_eq!(out.status.code(), Some(0));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = doc["predicate"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "config.json:0:2",
            "layers/0.bin:0:100000",
            "layers/0.bin:100000:200000",
            "layers/0.bin:200000:300000"
        ]
    );
}
