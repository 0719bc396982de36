//! Sigstore bundles verified offline, from a trust configuration file.
//!
//! A Sigstore signature is made with a throw-away key whose certificate Fulcio issued for an
//! OIDC identity and which Rekor logged. Verifying one without the network means checking, from
//! the trusted root alone: the log's signed promise (SET) and, when present, the Merkle inclusion
//! proof and its signed checkpoint; that the logged entry is this envelope, signature and
//! certificate; that the certificate chains to a Fulcio CA and was valid when the log saw it;
//! that its embedded certificate-transparency timestamps come from a known CT log; and that the
//! identity and its issuer are the ones the caller expects. Then the DSSE signature itself.
//!
//! `sigstore-rs` cannot do this for model-signing bundles offline, hence this module.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature as sig;
use serde_json::Value;
use x509_parser::prelude::*;

use super::{
    Bundle, PAYLOAD_TYPE, PublicKey, Signer, SigningError, build_chain, check_code_signing, pae,
};

/// Fulcio's certificate extensions naming the OIDC issuer (v2 is DER, v1 raw bytes).
const OID_ISSUER_V2: &str = "1.3.6.1.4.1.57264.1.8";
const OID_ISSUER_V1: &str = "1.3.6.1.4.1.57264.1.1";
/// Embedded SCT list (RFC 6962).
const OID_SCT_LIST: &str = "1.3.6.1.4.1.11129.2.4.2";

fn err(what: impl Into<String>) -> SigningError {
    SigningError::Sigstore(what.into())
}

/// A transparency log or CT log key with its validity window.
#[derive(Debug, Clone)]
struct LogKey {
    key_id: Vec<u8>,
    spki_der: Vec<u8>,
    start: Option<i64>,
    end: Option<i64>,
}

impl LogKey {
    fn valid_at(&self, t: i64) -> bool {
        self.start.is_none_or(|s| s <= t) && self.end.is_none_or(|e| t <= e)
    }

    /// Verifies with whatever kind of key this is (ECDSA P-256/P-384 with SHA-256/384, Ed25519).
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok((_, spki)) = SubjectPublicKeyInfo::from_der(&self.spki_der) else {
            return false;
        };
        let point = spki.subject_public_key.data.as_ref();
        let alg: &dyn sig::VerificationAlgorithm =
            match spki.algorithm.algorithm.to_id_string().as_str() {
                "1.3.101.112" => &sig::ED25519,
                "1.2.840.10045.2.1" => match spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                {
                    Some(ref o) if o == "1.2.840.10045.3.1.7" => &sig::ECDSA_P256_SHA256_ASN1,
                    Some(ref o) if o == "1.3.132.0.34" => &sig::ECDSA_P384_SHA384_ASN1,
                    _ => return false,
                },
                _ => return false,
            };
        sig::UnparsedPublicKey::new(alg, point)
            .verify(message, signature)
            .is_ok()
    }
}

#[derive(Debug, Clone)]
struct CertificateAuthority {
    /// DER, issuing certificate first, root last.
    chain: Vec<Vec<u8>>,
    start: Option<i64>,
    end: Option<i64>,
}

/// What a Sigstore signature must chain to, and whose it must be.
#[derive(Debug, Clone)]
pub struct SigstoreVerifier {
    tlogs: Vec<LogKey>,
    ctlogs: Vec<LogKey>,
    authorities: Vec<CertificateAuthority>,
    identity: String,
    issuer: String,
}

/// Unix seconds of an RFC 3339 time (`validFor` bounds in the trusted root).
fn timestamp(v: Option<&Value>) -> Option<i64> {
    let t = humantime::parse_rfc3339(v?.as_str()?).ok()?;
    i64::try_from(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs()).ok()
}

fn b64(v: Option<&Value>) -> Option<Vec<u8>> {
    B64.decode(v?.as_str()?).ok()
}

fn log_keys(list: Option<&Value>) -> Vec<LogKey> {
    list.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|l| {
                    let pk = l.get("publicKey")?;
                    Some(LogKey {
                        key_id: b64(l.get("logId").and_then(|i| i.get("keyId")))?,
                        spki_der: b64(pk.get("rawBytes"))?,
                        start: timestamp(pk.get("validFor").and_then(|v| v.get("start"))),
                        end: timestamp(pk.get("validFor").and_then(|v| v.get("end"))),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

impl SigstoreVerifier {
    /// From a trust configuration (`ClientTrustConfig` with a `trustedRoot`, or a bare trusted
    /// root), the expected identity (e.g. an e-mail address) and its OIDC issuer URL.
    pub fn new(trust_config: &[u8], identity: &str, issuer: &str) -> Result<Self, String> {
        let json: Value = serde_json::from_slice(trust_config)
            .map_err(|e| format!("trust configuration is not JSON: {e}"))?;
        let root = json.get("trustedRoot").unwrap_or(&json);
        let tlogs = log_keys(root.get("tlogs"));
        let ctlogs = log_keys(root.get("ctlogs"));
        let authorities: Vec<CertificateAuthority> = root
            .get("certificateAuthorities")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|ca| {
                        let chain = ca
                            .get("certChain")?
                            .get("certificates")?
                            .as_array()?
                            .iter()
                            .filter_map(|c| b64(c.get("rawBytes")))
                            .collect::<Vec<_>>();
                        Some(CertificateAuthority {
                            chain,
                            start: timestamp(ca.get("validFor").and_then(|v| v.get("start"))),
                            end: timestamp(ca.get("validFor").and_then(|v| v.get("end"))),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        if tlogs.is_empty() || authorities.is_empty() {
            return Err(
                "the trust configuration has no transparency logs or no certificate authorities"
                    .into(),
            );
        }
        Ok(Self {
            tlogs,
            ctlogs,
            authorities,
            identity: identity.to_string(),
            issuer: issuer.to_string(),
        })
    }

    pub(super) fn verify(
        &self,
        bundle: &Bundle,
        payload: &[u8],
        signature: &[u8],
    ) -> Result<Signer, SigningError> {
        let material = &bundle.verification_material;
        let leaf_der = match (&material.certificate, &material.x509_certificate_chain) {
            (Some(c), _) => B64
                .decode(&c.raw_bytes)
                .map_err(|_| err("the certificate is not base64"))?,
            (None, Some(chain)) => chain
                .certificates
                .first()
                .and_then(|c| B64.decode(&c.raw_bytes).ok())
                .ok_or_else(|| err("the certificate chain is empty"))?,
            (None, None) => {
                return Err(err(
                    "the bundle has no certificate; was it signed with a key instead?",
                ));
            }
        };
        let (_, leaf) = X509Certificate::from_der(&leaf_der)
            .map_err(|e| err(format!("the certificate does not parse: {e}")))?;

        // 1. The transparency log saw this signature, at a time its signature vouches for.
        let entry = material
            .tlog_entries
            .first()
            .ok_or_else(|| err("the bundle has no transparency log entry"))?;
        let logged = self.verify_tlog_entry(entry)?;
        check_entry_matches(&logged.body, payload, signature, &leaf_der)?;
        let at = logged.integrated_time;

        // 2. The certificate chains to a Fulcio CA, valid when it was logged.
        let when = ASN1Time::from_timestamp(at).map_err(|_| err("the log time is out of range"))?;
        let mut chained = None;
        let mut last_error = String::new();
        for ca in self
            .authorities
            .iter()
            .filter(|ca| ca.start.is_none_or(|s| s <= at) && ca.end.is_none_or(|e| at <= e))
        {
            let Some((root, intermediates)) = ca.chain.split_last() else {
                continue;
            };
            match build_chain(&leaf_der, intermediates, std::slice::from_ref(root), when) {
                Ok(path) => {
                    chained = Some(path);
                    break;
                }
                Err(e) => last_error = e.to_string(),
            }
        }
        if chained.is_none() {
            return Err(err(format!(
                "the certificate does not chain to a Fulcio CA of the trust configuration: {last_error}"
            )));
        }
        check_code_signing(&leaf)?;

        // 3. Certificate transparency: an SCT from a known CT log.
        self.verify_sct(&leaf, &leaf_der, chained.as_deref().unwrap_or_default())?;

        // 4. The identity and its issuer are the expected ones.
        let identities = san_values(&leaf);
        if !identities.contains(&self.identity) {
            return Err(err(format!(
                "the certificate was issued to {identities:?}, not to `{}`",
                self.identity
            )));
        }
        let issuer =
            oidc_issuer(&leaf).ok_or_else(|| err("the certificate names no OIDC issuer"))?;
        if issuer != self.issuer {
            return Err(err(format!(
                "the identity was verified by `{issuer}`, not by `{}`",
                self.issuer
            )));
        }

        // 5. The DSSE signature, by the certificate's key.
        let key = PublicKey::from_spki(leaf.public_key(), leaf.public_key().raw).map_err(err)?;
        if !key.verify(&pae(PAYLOAD_TYPE, payload), signature, false) {
            return Err(SigningError::BadSignature);
        }
        Ok(Signer::Sigstore {
            identity: self.identity.clone(),
            issuer,
            certificate_sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, &leaf_der)),
            integrated_time: at,
            log_index: logged.log_index,
        })
    }

    fn verify_tlog_entry(&self, entry: &Value) -> Result<LoggedEntry, SigningError> {
        let text_int = |v: Option<&Value>| -> Option<i64> {
            match v? {
                Value::String(s) => s.parse().ok(),
                Value::Number(n) => n.as_i64(),
                _ => None,
            }
        };
        let key_id = b64(entry.get("logId").and_then(|l| l.get("keyId")))
            .ok_or_else(|| err("the log entry has no log id"))?;
        let body_b64 = entry
            .get("canonicalizedBody")
            .and_then(Value::as_str)
            .ok_or_else(|| err("the log entry has no body"))?;
        let body = B64
            .decode(body_b64)
            .map_err(|_| err("the log entry body is not base64"))?;
        let integrated_time = text_int(entry.get("integratedTime"))
            .ok_or_else(|| err("the log entry has no integrated time"))?;
        let log_index =
            text_int(entry.get("logIndex")).ok_or_else(|| err("the log entry has no index"))?;
        let log = self
            .tlogs
            .iter()
            .find(|l| l.key_id == key_id)
            .ok_or_else(|| {
                err("the entry is from a transparency log the trust configuration does not know")
            })?;
        if !log.valid_at(integrated_time) {
            return Err(err(
                "the transparency log key was not valid when the entry was logged",
            ));
        }
        let promise = b64(entry
            .get("inclusionPromise")
            .and_then(|p| p.get("signedEntryTimestamp")));
        let proof = entry.get("inclusionProof");
        if promise.is_none() && proof.is_none() {
            return Err(err(
                "the log entry has neither a signed promise nor an inclusion proof",
            ));
        }
        if let Some(set) = promise {
            // The SET signs the canonical JSON of body, time, log id (hex) and index.
            let canonical = format!(
                "{{\"body\":\"{body_b64}\",\"integratedTime\":{integrated_time},\"logID\":\"{}\",\"logIndex\":{log_index}}}",
                hex::encode(&key_id)
            );
            if !log.verify(canonical.as_bytes(), &set) {
                return Err(err(
                    "the log's signed entry timestamp does not verify: the entry or its time was altered",
                ));
            }
        }
        if let Some(proof) = proof {
            verify_inclusion_proof(proof, &body, log, &text_int)?;
        }
        Ok(LoggedEntry {
            body,
            integrated_time,
            log_index,
        })
    }

    /// At least one embedded SCT must verify against a CT log of the trust configuration.
    fn verify_sct(
        &self,
        leaf: &X509Certificate<'_>,
        leaf_der: &[u8],
        path: &[Vec<u8>],
    ) -> Result<(), SigningError> {
        let issuer_der = path
            .get(1)
            .ok_or_else(|| err("the certificate has no issuer in its chain"))?;
        let (_, issuer) =
            X509Certificate::from_der(issuer_der).map_err(|_| err("the issuer does not parse"))?;
        let issuer_key_hash = ring::digest::digest(&ring::digest::SHA256, issuer.public_key().raw);
        let sct_ext = leaf
            .extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == OID_SCT_LIST)
            .ok_or_else(|| {
                err("the certificate has no embedded certificate-transparency timestamp")
            })?;
        let tbs = precert_tbs(leaf_der).ok_or_else(|| {
            err("the certificate's signed part could not be re-encoded for SCT verification")
        })?;
        for sct in
            parse_sct_list(sct_ext.value).ok_or_else(|| err("the SCT list does not parse"))?
        {
            let Some(log) = self.ctlogs.iter().find(|l| l.key_id == sct.log_id) else {
                continue;
            };
            let mut signed = vec![0u8, 0u8];
            signed.extend_from_slice(&sct.timestamp.to_be_bytes());
            signed.extend_from_slice(&1u16.to_be_bytes());
            signed.extend_from_slice(issuer_key_hash.as_ref());
            let len = tbs.len();
            signed.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8]);
            signed.extend_from_slice(&tbs);
            signed.extend_from_slice(&(sct.extensions.len() as u16).to_be_bytes());
            signed.extend_from_slice(&sct.extensions);
            if log.valid_at(i64::try_from(sct.timestamp / 1000).unwrap_or(i64::MAX))
                && log.verify(&signed, &sct.signature)
            {
                return Ok(());
            }
        }
        Err(err(
            "no certificate-transparency timestamp verifies against a CT log of the trust configuration",
        ))
    }
}

struct LoggedEntry {
    body: Vec<u8>,
    integrated_time: i64,
    log_index: i64,
}

/// The logged entry must describe exactly this payload, signature and certificate.
fn check_entry_matches(
    body: &[u8],
    payload: &[u8],
    signature: &[u8],
    leaf_der: &[u8],
) -> Result<(), SigningError> {
    let entry: Value =
        serde_json::from_slice(body).map_err(|_| err("the log entry body is not JSON"))?;
    if entry.get("kind").and_then(Value::as_str) != Some("dsse") {
        return Err(err("the log entry is not a DSSE entry"));
    }
    let spec = entry
        .get("spec")
        .ok_or_else(|| err("the log entry has no spec"))?;
    let payload_hash = spec
        .get("payloadHash")
        .and_then(|h| h.get("value"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !payload_hash.eq_ignore_ascii_case(&hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        payload,
    ))) {
        return Err(err(
            "the log entry is for another payload: the statement was altered after logging",
        ));
    }
    let signatures = spec
        .get("signatures")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let matches = signatures.iter().any(|s| {
        let sig_ok = b64(s.get("signature")).is_some_and(|b| b == signature);
        let cert_ok = b64(s.get("verifier"))
            .map(|pem| super::pem_block(&pem, &["CERTIFICATE"]).unwrap_or(pem))
            .is_some_and(|der| der == leaf_der);
        sig_ok && cert_ok
    });
    if !matches {
        return Err(err(
            "the log entry records another signature or certificate",
        ));
    }
    Ok(())
}

fn verify_inclusion_proof(
    proof: &Value,
    body: &[u8],
    log: &LogKey,
    int: &dyn Fn(Option<&Value>) -> Option<i64>,
) -> Result<(), SigningError> {
    let index = int(proof.get("logIndex"))
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| err("inclusion proof has no index"))?;
    let size = int(proof.get("treeSize"))
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| err("inclusion proof has no tree size"))?;
    let root = b64(proof.get("rootHash")).ok_or_else(|| err("inclusion proof has no root hash"))?;
    let hashes: Vec<Vec<u8>> = proof
        .get("hashes")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|h| B64.decode(h.as_str().unwrap_or_default()).ok())
                .collect()
        })
        .unwrap_or_default();
    let mut leaf_input = vec![0u8];
    leaf_input.extend_from_slice(body);
    let leaf = ring::digest::digest(&ring::digest::SHA256, &leaf_input)
        .as_ref()
        .to_vec();
    if !merkle_inclusion(index, size, &leaf, &hashes, &root) {
        return Err(err("the inclusion proof does not lead to the logged root"));
    }
    // The checkpoint (a signed note) must commit to the same tree.
    let note = proof
        .get("checkpoint")
        .and_then(|c| c.get("envelope"))
        .and_then(Value::as_str)
        .ok_or_else(|| err("the inclusion proof has no checkpoint"))?;
    let (text, signatures) = note
        .split_once("\n\n")
        .ok_or_else(|| err("the checkpoint is not a signed note"))?;
    let text = format!("{text}\n");
    let mut lines = text.lines();
    let (_origin, tree_size, tree_root) = (lines.next(), lines.next(), lines.next());
    if tree_size.and_then(|s| s.parse::<u64>().ok()) != Some(size)
        || tree_root.and_then(|r| B64.decode(r).ok()) != Some(root)
    {
        return Err(err(
            "the checkpoint is for another tree than the inclusion proof",
        ));
    }
    let signed = signatures
        .lines()
        .filter_map(|l| l.strip_prefix("\u{2014} "))
        .any(|l| {
            let sig = l
                .rsplit(' ')
                .next()
                .and_then(|s| B64.decode(s).ok())
                .unwrap_or_default();
            sig.len() > 4
                && sig.get(..4) == log.key_id.get(..4)
                && log.verify(text.as_bytes(), sig.get(4..).unwrap_or_default())
        });
    if !signed {
        return Err(err("the checkpoint is not signed by the transparency log"));
    }
    Ok(())
}

/// RFC 9162 section 2.1.3.2: verifies that `leaf` is at `index` of the tree of `size` with `root`.
pub(crate) fn merkle_inclusion(
    index: u64,
    size: u64,
    leaf: &[u8],
    proof: &[Vec<u8>],
    root: &[u8],
) -> bool {
    if index >= size {
        return false;
    }
    let node = |l: &[u8], r: &[u8]| {
        let mut c = ring::digest::Context::new(&ring::digest::SHA256);
        c.update(&[1]);
        c.update(l);
        c.update(r);
        c.finish().as_ref().to_vec()
    };
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = leaf.to_vec();
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == root
}

/// Subject alternative names as strings (e-mail, URI, DNS).
fn san_values(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::RFC822Name(s) | GeneralName::URI(s) | GeneralName::DNSName(s) => {
                Some((*s).to_string())
            }
            _ => None,
        })
        .collect()
}

fn oidc_issuer(cert: &X509Certificate<'_>) -> Option<String> {
    let ext = |oid: &str| {
        cert.extensions()
            .iter()
            .find(|e| e.oid.to_id_string() == oid)
            .map(|e| e.value)
    };
    if let Some(v2) = ext(OID_ISSUER_V2) {
        // DER UTF8String: tag 0x0c, length, bytes.
        let (_, any) = x509_parser::der_parser::der::parse_der(v2).ok()?;
        return any.as_str().ok().map(str::to_string);
    }
    ext(OID_ISSUER_V1).map(|v| String::from_utf8_lossy(v).into_owned())
}

struct Sct {
    log_id: Vec<u8>,
    timestamp: u64,
    extensions: Vec<u8>,
    signature: Vec<u8>,
}

/// The SCT list extension: an OCTET STRING holding a TLS-encoded list of SCTs.
fn parse_sct_list(ext_value: &[u8]) -> Option<Vec<Sct>> {
    let (_, octets) = x509_parser::der_parser::der::parse_der_octetstring(ext_value).ok()?;
    let list = octets.as_slice().ok()?;
    let total = usize::from(u16::from_be_bytes(list.get(..2)?.try_into().ok()?));
    let mut rest = list.get(2..2 + total)?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
        let sct = rest.get(2..2 + len)?;
        rest = rest.get(2 + len..)?;
        if *sct.first()? != 0 {
            continue;
        }
        let log_id = sct.get(1..33)?.to_vec();
        let timestamp = u64::from_be_bytes(sct.get(33..41)?.try_into().ok()?);
        let ext_len = usize::from(u16::from_be_bytes(sct.get(41..43)?.try_into().ok()?));
        let extensions = sct.get(43..43 + ext_len)?.to_vec();
        let at = 43 + ext_len;
        // hash and signature algorithm (2 bytes), then the signature with a 2-byte length.
        let sig_len = usize::from(u16::from_be_bytes(
            sct.get(at + 2..at + 4)?.try_into().ok()?,
        ));
        let signature = sct.get(at + 4..at + 4 + sig_len)?.to_vec();
        out.push(Sct {
            log_id,
            timestamp,
            extensions,
            signature,
        });
    }
    Some(out)
}

/// The precertificate TBS the CT log signed: the certificate's TBS without the SCT extension,
/// re-encoded in DER.
fn precert_tbs(cert_der: &[u8]) -> Option<Vec<u8>> {
    let (cert_body, _) = der_content(cert_der, 0x30)?;
    let (tbs_body, _) = der_content(cert_body, 0x30)?;
    let mut out_fields = Vec::new();
    let mut rest = tbs_body;
    while !rest.is_empty() {
        let (tag, content, whole_len) = der_element(rest)?;
        let whole = rest.get(..whole_len)?;
        if tag == 0xa3 {
            // [3] EXPLICIT Extensions ::= SEQUENCE OF Extension
            let (exts, _) = der_content(content, 0x30)?;
            let mut kept = Vec::new();
            let mut e = exts;
            while !e.is_empty() {
                let (_, ext_content, ext_len) = der_element(e)?;
                let (_, oid_content, _) = der_element(ext_content)?;
                let is_sct =
                    oid_content == [0x2b, 0x06, 0x01, 0x04, 0x01, 0xd6, 0x79, 0x02, 0x04, 0x02];
                if !is_sct {
                    kept.extend_from_slice(e.get(..ext_len)?);
                }
                e = e.get(ext_len..)?;
            }
            out_fields.extend(der_wrap(0xa3, &der_wrap(0x30, &kept)));
        } else {
            out_fields.extend_from_slice(whole);
        }
        rest = rest.get(whole_len..)?;
    }
    Some(der_wrap(0x30, &out_fields))
}

/// (tag, content, total length) of the DER element at the start of `b`.
fn der_element(b: &[u8]) -> Option<(u8, &[u8], usize)> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | usize::from(*b.get(2 + i)?);
        }
        (len, 2 + n)
    };
    let content = b.get(header..header.checked_add(len)?)?;
    Some((tag, content, header + len))
}

fn der_content(b: &[u8], expected_tag: u8) -> Option<(&[u8], usize)> {
    let (tag, content, len) = der_element(b)?;
    (tag == expected_tag).then_some((content, len))
}

fn der_wrap(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_convert_to_unix_seconds() {
        assert_eq!(
            timestamp(Some(&Value::from("1970-01-01T00:00:00Z"))),
            Some(0)
        );
        assert_eq!(
            timestamp(Some(&Value::from("2021-01-12T11:53:27Z"))),
            Some(1_610_452_407)
        );
        assert_eq!(
            timestamp(Some(&Value::from("2022-12-31T23:59:59.999Z"))),
            Some(1_672_531_199)
        );
        assert_eq!(timestamp(Some(&Value::from("garbage"))), None);
    }

    #[test]
    fn a_log_entry_must_name_this_payload_signature_and_certificate() {
        let payload = b"{}";
        let hash = hex::encode(ring::digest::digest(&ring::digest::SHA256, payload));
        let cert = b"certificate-der".to_vec();
        let pem = super::super::pem_encode("CERTIFICATE", &cert);
        let body = |hash: &str, sig: &[u8], pem: &str| {
            serde_json::to_vec(
                &serde_json::json!({"kind": "dsse", "apiVersion": "0.0.1", "spec": {
                "payloadHash": {"algorithm": "sha256", "value": hash},
                "signatures": [{"signature": B64.encode(sig), "verifier": B64.encode(pem)}]}}),
            )
            .unwrap_or_default()
        };
        assert!(check_entry_matches(&body(&hash, b"sig", &pem), payload, b"sig", &cert).is_ok());
        assert!(check_entry_matches(&body(&hash, b"sig", &pem), b"{ }", b"sig", &cert).is_err());
        assert!(check_entry_matches(&body(&hash, b"other", &pem), payload, b"sig", &cert).is_err());
        let other_pem = super::super::pem_encode("CERTIFICATE", b"another");
        assert!(
            check_entry_matches(&body(&hash, b"sig", &other_pem), payload, b"sig", &cert).is_err()
        );
    }

    #[test]
    fn merkle_inclusion_matches_rfc_9162() {
        let h = |b: &[u8]| {
            ring::digest::digest(&ring::digest::SHA256, b)
                .as_ref()
                .to_vec()
        };
        let leaf = |d: &[u8]| h(&[&[0u8][..], d].concat());
        let node = |l: &[u8], r: &[u8]| h(&[&[1u8][..], l, r].concat());
        let (a, b, c) = (leaf(b"a"), leaf(b"b"), leaf(b"c"));
        let root = node(&node(&a, &b), &c);
        assert!(merkle_inclusion(0, 3, &a, &[b.clone(), c.clone()], &root));
        assert!(merkle_inclusion(2, 3, &c, &[node(&a, &b)], &root));
        assert!(!merkle_inclusion(1, 3, &a, &[b.clone(), c.clone()], &root));
        assert!(!merkle_inclusion(0, 3, &a, &[c, b], &root));
        assert!(!merkle_inclusion(3, 3, &a, &[], &root));
    }
}
