"""Interoperability with the reference OpenSSF model-signing tool (`model_signing` on PyPI).

Both directions, with the elliptic-key and certificate methods: what `model_signing` signs,
`ztai model verify` accepts; what `ztai model sign` writes, `model_signing verify` accepts. Then
the tampering cases, where both tools must refuse. Uses the reference tool's own test keys.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ZTAI = os.environ.get("ZTAI_BIN", str(ROOT / "target/release/ztai"))
REF = shutil.which("model_signing") or str(Path(sys.executable).parent / "model_signing")
KEYS = ROOT / "crates/ztai-supply/tests/data/model_signing/keys/certificate"


def run(*args, cwd=None):
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture
def model(tmp_path):
    m = tmp_path / "model"
    (m / "sub").mkdir(parents=True)
    (m / "weights.bin").write_bytes(os.urandom(1 << 20))
    (m / "sub" / "config.json").write_text('{"layers": 2}')
    (m / "tokenizer.json").write_text("{}")
    return m


def ref_sign(method, model, sig):
    if method == "key":
        return run(REF, "sign", "key", "--private_key", KEYS / "signing-key.pem", "--signature", sig, model)
    return run(REF, "sign", "certificate", "--private_key", KEYS / "signing-key.pem",
               "--signing_certificate", KEYS / "signing-key-cert.pem",
               "--certificate_chain", KEYS / "int-ca-cert.pem", "--signature", sig, model)


def ztai_sign(method, model, sig):
    if method == "key":
        return run(ZTAI, "model", "sign", "key", "--private-key", KEYS / "signing-key.pem", "--signature", sig, model)
    return run(ZTAI, "model", "sign", "certificate", "--private-key", KEYS / "signing-key.pem",
               "--signing-certificate", KEYS / "signing-key-cert.pem",
               "--certificate-chain", KEYS / "int-ca-cert.pem", "--signature", sig, model)


def ref_verify(method, model, sig):
    if method == "key":
        return run(REF, "verify", "key", "--signature", sig, "--public_key", KEYS / "signing-key-pub.pem", model)
    return run(REF, "verify", "certificate", "--signature", sig, "--certificate_chain", KEYS / "ca-cert.pem", model)


def ztai_verify(method, model, sig):
    if method == "key":
        return run(ZTAI, "model", "verify", "key", "--signature", sig, "--public-key", KEYS / "signing-key-pub.pem", model)
    return run(ZTAI, "model", "verify", "certificate", "--signature", sig,
               "--certificate-chain", KEYS / "ca-cert.pem", model)


@pytest.mark.parametrize("method", ["key", "certificate"])
def test_reference_signs_ztai_verifies(method, model, tmp_path):
    sig = tmp_path / "ref.sig"
    signed = ref_sign(method, model, sig)
    assert signed.returncode == 0, signed.stderr
    out = ztai_verify(method, model, sig)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "verified: 3 files" in out.stdout


@pytest.mark.parametrize("method", ["key", "certificate"])
def test_ztai_signs_reference_verifies(method, model, tmp_path):
    sig = tmp_path / "ztai.sig"
    signed = ztai_sign(method, model, sig)
    assert signed.returncode == 0, signed.stderr
    out = ref_verify(method, model, sig)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Verification succeeded" in out.stdout


@pytest.mark.parametrize("method", ["key", "certificate"])
@pytest.mark.parametrize("signer", ["ref", "ztai"])
def test_both_tools_refuse_every_tampering(method, signer, model, tmp_path):
    sig = tmp_path / "model.sig"
    assert (ref_sign if signer == "ref" else ztai_sign)(method, model, sig).returncode == 0

    def both_refuse(expect_in_ztai):
        ours = ztai_verify(method, model, sig)
        theirs = ref_verify(method, model, sig)
        assert ours.returncode == 1, ours.stdout + ours.stderr
        assert theirs.returncode != 0, theirs.stdout + theirs.stderr
        assert expect_in_ztai in ours.stderr, ours.stderr

    # One changed byte.
    weights = model / "weights.bin"
    original = weights.read_bytes()
    weights.write_bytes(bytes([original[0] ^ 1]) + original[1:])
    both_refuse("changed: weights.bin")
    weights.write_bytes(original)
    # An extra file.
    (model / "sub" / "evil.py").write_text("import os")
    both_refuse("extra file not covered by the signature: sub/evil.py")
    (model / "sub" / "evil.py").unlink()
    # A missing file.
    saved = (model / "tokenizer.json").read_text()
    (model / "tokenizer.json").unlink()
    both_refuse("missing file the signature covers: tokenizer.json")
    (model / "tokenizer.json").write_text(saved)
    # Back to the original: both accept again.
    assert ztai_verify(method, model, sig).returncode == 0
    assert ref_verify(method, model, sig).returncode == 0


def test_single_file_models_interoperate(tmp_path):
    model = tmp_path / "model.safetensors"
    model.write_bytes(os.urandom(100_000))
    for signer, verifier in [(ztai_sign, ref_verify), (ref_sign, ztai_verify)]:
        sig = tmp_path / f"{signer.__name__}.sig"
        assert signer("key", model, sig).returncode == 0
        out = verifier("key", model, sig)
        assert out.returncode == 0, out.stdout + out.stderr
    with model.open("ab") as f:
        f.write(b"x")
    ours = ztai_verify("key", model, tmp_path / "ref_sign.sig")
    assert ours.returncode == 1 and "changed: the model file" in ours.stderr, ours.stderr
    assert ref_verify("key", model, tmp_path / "ztai_sign.sig").returncode != 0
