//! Model signing against the reference tool's own vectors: what `model_signing` signed with a
//! key, a certificate chain and Sigstore verifies here; every tampering case is refused and
//! names what changed; what ztai signs verifies again.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use ztai_supply::manifest::{HashAlgorithm, HashOptions, Method, Serialization, hash_model};
use ztai_supply::signing::sigstore::SigstoreVerifier;
use ztai_supply::signing::{
    Bundle, PublicKey, Signer, SigningError, SigningKey, Verifier, sign_with_certificate,
    sign_with_key, verify_model,
};

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/model_signing")
}

fn read(p: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(vectors().join(p)).unwrap()
}

fn key_verifier() -> Verifier {
    Verifier::Key(PublicKey::from_pem(&read("keys/certificate/signing-key-pub.pem")).unwrap())
}

fn cert_verifier() -> Verifier {
    Verifier::certificates(&[read("keys/certificate/ca-cert.pem")]).unwrap()
}

fn sigstore_verifier(identity: &str, issuer: &str) -> Verifier {
    Verifier::Sigstore(Box::new(
        SigstoreVerifier::new(
            &read("sigstore_prod_client_trust_config.json"),
            identity,
            issuer,
        )
        .unwrap(),
    ))
}

const IDENTITY: &str = "stefanb@us.ibm.com";
const ISSUER: &str = "https://sigstore.verify.ibm.com/oauth2";

fn verify(dir: &Path, sig: &Path, verifier: &Verifier) -> Result<Signer, SigningError> {
    let bundle = Bundle::parse(&std::fs::read(sig).unwrap())?;
    verify_model(
        dir,
        &bundle,
        verifier,
        &["ignore-me".to_string()],
        true,
        &|_| {},
    )
    .map(|v| v.signer)
}

/// A writable copy of a vector's model, with its signature beside (not inside) it.
fn copy(name: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join(name);
    std::fs::create_dir(&model).unwrap();
    for f in ["signme-1", "signme-2", "ignore-me"] {
        std::fs::copy(vectors().join(name).join(f), model.join(f)).unwrap();
    }
    let sig = tmp.path().join("model.sig");
    std::fs::copy(vectors().join(name).join("model.sig"), &sig).unwrap();
    (tmp, model, sig)
}

#[test]
fn reference_signatures_verify_with_every_method_and_format_version() {
    for version in ["v1.0.1", "v1.1.0"] {
        let key = format!("{version}-elliptic-key");
        let (_t, model, sig) = copy(&key);
        let signer = verify(&model, &sig, &key_verifier()).unwrap_or_else(|e| panic!("{key}: {e}"));
        assert!(matches!(signer, Signer::Key { .. }));

        let cert = format!("{version}-certificate");
        let (_t, model, sig) = copy(&cert);
        match verify(&model, &sig, &cert_verifier()).unwrap_or_else(|e| panic!("{cert}: {e}")) {
            Signer::Certificate { chain_sha256, .. } => assert_eq!(chain_sha256.len(), 3),
            other => panic!("{other:?}"),
        }

        let store = format!("{version}-sigstore");
        let (_t, model, sig) = copy(&store);
        match verify(&model, &sig, &sigstore_verifier(IDENTITY, ISSUER))
            .unwrap_or_else(|e| panic!("{store}: {e}"))
        {
            Signer::Sigstore {
                identity,
                issuer,
                integrated_time,
                ..
            } => {
                assert_eq!((identity.as_str(), issuer.as_str()), (IDENTITY, ISSUER));
                assert!(integrated_time > 1_700_000_000);
            }
            other => panic!("{other:?}"),
        }
    }
}

fn expect_mismatch(result: Result<Signer, SigningError>, needle: &str) {
    match result {
        Err(SigningError::Mismatch(lines)) => {
            assert!(
                lines.iter().any(|l| l.contains(needle)),
                "{lines:?} lacks {needle}"
            )
        }
        other => panic!("expected a mismatch naming {needle}, got {other:?}"),
    }
}

#[test]
fn changed_extra_and_missing_files_are_refused_by_name() {
    let (_t, model, sig) = copy("v1.1.0-elliptic-key");
    let mut bytes = std::fs::read(model.join("signme-1")).unwrap();
    bytes[0] ^= 1;
    std::fs::write(model.join("signme-1"), &bytes).unwrap();
    expect_mismatch(verify(&model, &sig, &key_verifier()), "changed: signme-1");

    let (_t, model, sig) = copy("v1.1.0-certificate");
    std::fs::write(model.join("payload.py"), b"import os").unwrap();
    expect_mismatch(
        verify(&model, &sig, &cert_verifier()),
        "extra file not covered by the signature: payload.py",
    );

    let (_t, model, sig) = copy("v1.1.0-sigstore");
    std::fs::remove_file(model.join("signme-2")).unwrap();
    expect_mismatch(
        verify(&model, &sig, &sigstore_verifier(IDENTITY, ISSUER)),
        "missing file the signature covers: signme-2",
    );

    // Without the ignore, a file the signer left out counts as extra.
    let (_t, model, sig) = copy("v1.1.0-elliptic-key");
    std::fs::write(model.join("ignore-me"), b"x").unwrap();
    let bundle = Bundle::parse(&std::fs::read(&sig).unwrap()).unwrap();
    assert!(
        verify_model(&model, &bundle, &key_verifier(), &[], true, &|_| {}).is_ok(),
        "the signature itself lists ignore-me"
    );
    std::fs::write(model.join("new-file"), b"x").unwrap();
    assert!(verify_model(&model, &bundle, &key_verifier(), &[], true, &|_| {}).is_err());
}

#[test]
fn wrong_keys_roots_identities_and_altered_bundles_are_refused() {
    let (_t, model, sig) = copy("v1.1.0-elliptic-key");
    // Another P-384 key.
    let rng = ring::rand::SystemRandom::new();
    let other = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        &rng,
    )
    .unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, other.as_ref())
    );
    let other_key = SigningKey::from_pem(pem.as_bytes()).unwrap();
    let result = verify(&model, &sig, &Verifier::Key(other_key.public_key().clone()));
    assert!(
        matches!(result, Err(SigningError::KeyMismatch { .. })),
        "{result:?}"
    );

    // A flipped bit in the signature.
    let mut bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sig).unwrap()).unwrap();
    let sig_b64 = bundle["dsseEnvelope"]["signatures"][0]["sig"]
        .as_str()
        .unwrap()
        .to_string();
    let mut raw =
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &sig_b64).unwrap();
    raw[20] ^= 0x01;
    bundle["dsseEnvelope"]["signatures"][0]["sig"] =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &raw).into();
    std::fs::write(&sig, serde_json::to_vec(&bundle).unwrap()).unwrap();
    assert!(matches!(
        verify(&model, &sig, &key_verifier()),
        Err(SigningError::BadSignature)
    ));

    // An edited digest in the payload (made to match the changed file): the signature no longer holds.
    let (_t, model, sig) = copy("v1.1.0-elliptic-key");
    let mut bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sig).unwrap()).unwrap();
    let payload = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        bundle["dsseEnvelope"]["payload"].as_str().unwrap(),
    )
    .unwrap();
    let text = String::from_utf8(payload).unwrap().replace(
        "bc9a717db6064a32cbe9eae6fc40651dd6d36ef1757183f590eff2b1765d7ebc",
        "0000000000000000000000000000000000000000000000000000000000000000",
    );
    bundle["dsseEnvelope"]["payload"] =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, text.as_bytes()).into();
    std::fs::write(&sig, serde_json::to_vec(&bundle).unwrap()).unwrap();
    assert!(matches!(
        verify(&model, &sig, &key_verifier()),
        Err(SigningError::BadSignature)
    ));

    // A certificate chain verified against another root.
    let (_t, model, sig) = copy("v1.1.0-certificate");
    let other_root =
        Verifier::certificates(&[read("keys/certificate/signing-key-cert.pem")]).unwrap();
    assert!(matches!(
        verify(&model, &sig, &other_root),
        Err(SigningError::Chain(_))
    ));
    // A key verifier on a certificate bundle, and a certificate verifier on a key bundle.
    let (_t, model, sig) = copy("v1.1.0-elliptic-key");
    assert!(verify(&model, &sig, &cert_verifier()).is_err());

    // Sigstore: someone else's identity, another issuer, an altered log entry.
    let (_t, model, sig) = copy("v1.1.0-sigstore");
    for (identity, issuer) in [
        ("mallory@example.com", ISSUER),
        (IDENTITY, "https://accounts.google.com"),
    ] {
        let r = verify(&model, &sig, &sigstore_verifier(identity, issuer));
        assert!(
            matches!(r, Err(SigningError::Sigstore(_))),
            "{identity} {issuer}: {r:?}"
        );
    }
    let mut bundle: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sig).unwrap()).unwrap();
    let t = bundle["verificationMaterial"]["tlogEntries"][0]["integratedTime"]
        .as_str()
        .unwrap()
        .parse::<i64>()
        .unwrap();
    bundle["verificationMaterial"]["tlogEntries"][0]["integratedTime"] =
        (t + 60).to_string().into();
    std::fs::write(&sig, serde_json::to_vec(&bundle).unwrap()).unwrap();
    let r = verify(&model, &sig, &sigstore_verifier(IDENTITY, ISSUER));
    assert!(
        matches!(r, Err(SigningError::Sigstore(ref m)) if m.contains("signed entry timestamp")),
        "{r:?}"
    );
}

fn options() -> HashOptions {
    HashOptions {
        serialization: Serialization {
            method: Method::Files,
            algorithm: HashAlgorithm::Sha256,
            allow_symlinks: false,
            ignore_paths: vec!["model.sig".into()],
        },
        ignore_git_paths: true,
        threads: 0,
    }
}

#[test]
fn what_ztai_signs_verifies_and_tampering_is_caught() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny");
    std::fs::create_dir_all(model.join("sub")).unwrap();
    std::fs::write(model.join("weights.bin"), vec![7u8; 100_000]).unwrap();
    std::fs::write(model.join("sub/config.json"), b"{}").unwrap();
    std::fs::create_dir_all(model.join(".git")).unwrap();
    std::fs::write(model.join(".git/HEAD"), b"ref").unwrap();
    let manifest = hash_model(&model, &options(), &|_| {}).unwrap();
    let names: Vec<String> = manifest.items.keys().map(|k| k.name()).collect();
    assert_eq!(names, vec!["sub/config.json", "weights.bin"]);

    let key = SigningKey::from_pem(&read("keys/certificate/signing-key.pem")).unwrap();
    let by_key = sign_with_key(&manifest, &key).unwrap();
    let verified = verify_model(&model, &by_key, &key_verifier(), &[], true, &|_| {}).unwrap();
    assert_eq!(verified.manifest.items, manifest.items);

    let by_cert = sign_with_certificate(
        &manifest,
        &key,
        &read("keys/certificate/signing-key-cert.pem"),
        &[read("keys/certificate/int-ca-cert.pem")],
    )
    .unwrap();
    verify_model(&model, &by_cert, &cert_verifier(), &[], true, &|_| {}).unwrap();

    std::fs::write(model.join("weights.bin"), vec![8u8; 100_000]).unwrap();
    let r = verify_model(&model, &by_key, &key_verifier(), &[], true, &|_| {});
    assert!(
        matches!(r, Err(SigningError::Mismatch(ref l)) if l[0].contains("weights.bin")),
        "{r:?}"
    );
}

#[test]
fn shards_and_single_files_hash_like_the_reference_names_them() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("model.safetensors");
    std::fs::write(&file, vec![1u8; 2500]).unwrap();
    let mut opts = options();
    opts.serialization.method = Method::Shards { shard_size: 1000 };
    let manifest = hash_model(&file, &opts, &|_| {}).unwrap();
    let names: Vec<String> = manifest.items.keys().map(|k| k.name()).collect();
    assert_eq!(names, vec![".:0:1000", ".:1000:2000", ".:2000:2500"]);
    opts.serialization.method = Method::Files;
    let single = hash_model(&file, &opts, &|_| {}).unwrap();
    assert_eq!(
        single.items.keys().map(|k| k.name()).collect::<Vec<_>>(),
        vec!["."]
    );
    let expected = ring::digest::digest(&ring::digest::SHA256, &[1u8; 2500]);
    assert_eq!(
        single.items.values().next().unwrap().value,
        expected.as_ref()
    );
}

#[test]
fn sigstore_checks_every_link_of_the_offline_proof() {
    let trust: serde_json::Value =
        serde_json::from_slice(&read("sigstore_prod_client_trust_config.json")).unwrap();
    let with = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut t = trust.clone();
        edit(&mut t);
        Verifier::Sigstore(Box::new(
            SigstoreVerifier::new(&serde_json::to_vec(&t).unwrap(), IDENTITY, ISSUER).unwrap(),
        ))
    };
    let expect = |v: &Verifier, needle: &str, edit_bundle: &dyn Fn(&mut serde_json::Value)| {
        let (_t, model, sig) = copy("v1.1.0-sigstore");
        let mut b: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&sig).unwrap()).unwrap();
        edit_bundle(&mut b);
        std::fs::write(&sig, serde_json::to_vec(&b).unwrap()).unwrap();
        match verify(&model, &sig, v) {
            Err(SigningError::Sigstore(m)) => assert!(m.contains(needle), "{m} lacks {needle}"),
            other => panic!("expected a Sigstore error with {needle}, got {other:?}"),
        }
    };
    let none = |_: &mut serde_json::Value| {};
    // No CT log: the certificate's SCT cannot be checked.
    expect(
        &with(&|t| t["trustedRoot"]["ctlogs"] = serde_json::json!([])),
        "certificate-transparency",
        &none,
    );
    // Another Fulcio root.
    expect(
        &with(&|t| {
            let cas = t["trustedRoot"]["certificateAuthorities"]
                .as_array_mut()
                .unwrap();
            cas.retain(|ca| ca["certChain"]["certificates"].as_array().unwrap().len() == 1);
        }),
        "Fulcio CA",
        &none,
    );
    let genuine = with(&|_| {});
    // A proof hash altered, and a checkpoint for another tree.
    expect(&genuine, "inclusion proof", &|b| {
        b["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["hashes"][0] =
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
    });
    expect(&genuine, "checkpoint", &|b| {
        let env =
            b["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]["envelope"]
                .as_str()
                .unwrap()
                .replacen("476246825", "476246826", 1);
        b["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]["envelope"] =
            env.into();
    });
    // The log entry's body edited: its leaf no longer hashes to the logged root.
    expect(&genuine, "inclusion proof", &|b| {
        let body = b["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"]
            .as_str()
            .unwrap()
            .to_string();
        let text = String::from_utf8(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &body).unwrap(),
        )
        .unwrap();
        let edited = text.replace("1dc62239", "1dc62230");
        b["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"] = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            edited.as_bytes(),
        )
        .into();
        b["verificationMaterial"]["tlogEntries"][0]
            .as_object_mut()
            .unwrap()
            .remove("inclusionPromise");
    });
}
