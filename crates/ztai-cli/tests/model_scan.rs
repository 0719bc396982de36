//! `ztai model scan` as a pipeline step: directories in, verdicts and exit codes out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use common::BIN;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn ztai(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn corpus(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../ztai-supply/tests/data/pickles/picklescan_data")
        .join(name)
}

#[test]
fn exit_codes_say_clean_unsafe_or_not_examined() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir_all(model.join("sub")).unwrap();
    std::fs::copy(
        corpus("new_pytorch_model.bin"),
        model.join("pytorch_model.bin"),
    )
    .unwrap();
    std::fs::write(
        model.join("config.json"),
        b"{\"architectures\": [\"Tiny\"]}",
    )
    .unwrap();
    let m = model.to_str().unwrap();

    let clean = ztai(&["model", "scan", m]);
    assert_eq!(clean.status.code(), Some(0), "{clean:?}");
    let text = String::from_utf8_lossy(&clean.stdout);
    assert!(text.contains("2 files: 2 clean"), "{text}");

    // A pickle dropped into a subdirectory under an innocent name.
    std::fs::copy(corpus("malicious2_v4.pkl"), model.join("sub/tokenizer.bin")).unwrap();
    let unsafe_ = ztai(&["model", "scan", m]);
    assert_eq!(unsafe_.status.code(), Some(1), "{unsafe_:?}");
    let text = String::from_utf8_lossy(&unsafe_.stdout);
    assert!(
        text.contains("UNSAFE") && text.contains("posix.system") && text.contains("tokenizer.bin"),
        "{text}"
    );

    // Something that cannot be examined (an encrypted archive) is not clean.
    let locked = ztai(&[
        "model",
        "scan",
        corpus("benign_password_protected.zip").to_str().unwrap(),
    ]);
    assert_eq!(locked.status.code(), Some(2), "{locked:?}");
    assert!(String::from_utf8_lossy(&locked.stdout).contains("encrypted"));

    // A path that does not exist is an error, never a silent pass.
    let missing = ztai(&["model", "scan", dir.path().join("nope").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn json_report_names_file_member_offset_and_import() {
    let out = ztai(&[
        "model",
        "scan",
        "--json",
        corpus("malicious1_0x1.zip").to_str().unwrap(),
        corpus("pytorch_model.bin").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["summary"]["unsafe"], 1);
    assert_eq!(doc["summary"]["clean"], 1);
    let finding = &doc["files"][0]["findings"][0];
    assert!(
        finding["location"]
            .as_str()
            .unwrap()
            .ends_with("malicious1_0x1.zip!model/config.pkl")
    );
    assert_eq!(finding["offset"], 29);
    assert_eq!(finding["kind"], "dangerous_import");
    assert_eq!(finding["severity"], "critical");
    assert_eq!(finding["detail"], "builtins.eval");
    let imports: Vec<&str> = doc["files"][1]["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        imports.contains(&"torch._utils._rebuild_tensor_v2"),
        "{imports:?}"
    );
}

#[test]
fn allowlist_extends_but_never_to_code_execution() {
    let dir = tempfile::tempdir().unwrap();
    let pkl = dir.path().join("sk.pkl");
    std::fs::write(
        &pkl,
        b"\x80\x02csklearn.linear_model._logistic\nLogisticRegression\n)\x81}b.",
    )
    .unwrap();
    let p = pkl.to_str().unwrap();
    assert_eq!(ztai(&["model", "scan", p]).status.code(), Some(1));
    let allowed = ztai(&[
        "model",
        "scan",
        "--allow",
        "sklearn.linear_model._logistic.LogisticRegression",
        p,
    ]);
    assert_eq!(allowed.status.code(), Some(0), "{allowed:?}");
    let list = dir.path().join("allow.txt");
    std::fs::write(
        &list,
        "# our estimators\nsklearn.linear_model._logistic.*\n",
    )
    .unwrap();
    assert_eq!(
        ztai(&["model", "scan", "--allowlist", list.to_str().unwrap(), p])
            .status
            .code(),
        Some(0)
    );
    let refused = ztai(&["model", "scan", "--allow", "builtins.eval", p]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("code-execution primitive"));
}
