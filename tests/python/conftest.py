"""Starts `ztai up` once for the Python SDK tests and hands out its quickstart.env values."""
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def _read_env(path: Path) -> dict:
    values = {}
    for line in path.read_text().splitlines():
        line = line.removeprefix("export ")
        if "=" in line:
            k, v = line.split("=", 1)
            values[k] = v.strip("'")
    return values


@pytest.fixture(scope="session")
def ztai():
    binary = os.environ.get("ZTAI_BIN", str(Path(__file__).resolve().parents[2] / "target/release/ztai"))
    data = Path(tempfile.mkdtemp(prefix="ztai-py-"))
    proc = subprocess.Popen(
        [binary, "up", "--data-dir", str(data), "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "ZTAI_LOG": "warn"},
    )
    deadline = time.time() + 30
    assert proc.stdout is not None
    for line in proc.stdout:
        if "ZTAI is up." in line:
            break
        if time.time() > deadline:
            raise RuntimeError("ztai up did not start")
    env = _read_env(data / "quickstart.env")
    yield env
    proc.terminate()
    proc.wait(timeout=10)
