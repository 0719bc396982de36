#!/usr/bin/env python3
"""Malicious model file scanning, side by side: ztai, picklescan, modelscan and fickling.

Quality: every file of a labelled corpus (labels.csv: path,label,...; label malicious, benign or
benign_edge) goes through each tool's command line, one file per invocation; a file counts as
flagged when the tool's exit code says "unsafe" (1 for all four tools). Errors (any other non-zero
exit) are counted apart: an error on a malicious file is a miss, on a benign file not a false
alarm. Speed: wall time for the whole corpus one file at a time (dominated by start-up), one
directory invocation where the tool takes directories, and one large benign pickle (generated
here with Python's pickle module: plain data, so every tool can finish it).

Nothing is ever unpickled: the script only runs scanners.

    .venv/bin/pip install "picklescan[7z]" modelscan fickling typing_extensions
    .venv/bin/python bench/compare_pickles.py crates/ztai-supply/tests/data/pickles \
        crates/ztai-supply/tests/data/joblib [--ztai target/release/ztai]
"""

import argparse
import csv
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import time

VENV_BIN = os.path.dirname(sys.executable)


def tools(ztai):
    return {
        "ztai": lambda p: [ztai, "model", "scan", p],
        "picklescan": lambda p: [os.path.join(VENV_BIN, "picklescan"), "-p", p],
        "modelscan": lambda p: [os.path.join(VENV_BIN, "modelscan"), "-p", p],
        "fickling": lambda p: [os.path.join(VENV_BIN, "fickling"), "--check-safety", p],
    }


def run(cmd):
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc.returncode, time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("corpus", nargs="+", help="directories holding labels.csv")
    ap.add_argument("--ztai", default="target/release/ztai")
    a = ap.parse_args()
    rows = []
    for corpus in a.corpus:
        with open(os.path.join(corpus, "labels.csv")) as f:
            for r in csv.DictReader(f):
                r["file"] = os.path.join(corpus, r["path"])
                rows.append(r)
    table = tools(os.path.abspath(a.ztai))
    print(f"{len(rows)} files: " + ", ".join(
        f"{sum(r['label'] == l for r in rows)} {l}" for l in ("malicious", "benign", "benign_edge")))
    print()
    print(f"{'tool':<11} {'caught':>8} {'missed':>7} {'false+':>7} {'errors':>7} {'time/file':>10}  missed files")
    for name, cmd in table.items():
        caught = missed = false_pos = errors = 0
        missed_files = []
        total = 0.0
        for r in rows:
            code, secs = run(cmd(r["file"]))
            total += secs
            flagged = code == 1
            if code not in (0, 1):
                errors += 1
            if r["label"] == "malicious":
                if flagged:
                    caught += 1
                else:
                    missed += 1
                    missed_files.append(os.path.basename(r["path"]) + ("" if code == 0 else f"(exit {code})"))
            elif flagged:
                false_pos += 1
        n_mal = sum(r["label"] == "malicious" for r in rows)
        print(f"{name:<11} {caught:>4}/{n_mal:<3} {missed:>7} {false_pos:>7} {errors:>7} {total / len(rows) * 1000:>8.0f}ms  {' '.join(missed_files)}")

    print()
    data_dir = os.path.dirname(rows[0]["file"])
    print(f"one invocation over {data_dir}:")
    for name in ("ztai", "picklescan", "modelscan"):
        _, secs = run(table[name](data_dir))
        print(f"  {name:<11} {secs * 1000:8.0f} ms")

    with tempfile.TemporaryDirectory() as tmp:
        big = os.path.join(tmp, "large.pkl")
        data = {f"key{i}": [i, float(i) / 3, str(i), (i, i + 1)] for i in range(1_000_000)}
        with open(big, "wb") as f:
            pickle.dump(data, f, protocol=4)
        size = os.path.getsize(big)
        print(f"one large benign pickle ({size / 1e6:.1f} MB, protocol 4):")
        for name, cmd in table.items():
            code, secs = run(cmd(big))
            verdict = {0: "clean", 1: "FLAGGED"}.get(code, f"exit {code}")
            print(f"  {name:<11} {secs * 1000:8.0f} ms  {size / secs / 1e6:7.1f} MB/s  {verdict}")


if __name__ == "__main__":
    if not shutil.which(os.path.join(VENV_BIN, "picklescan")):
        sys.exit("install the peers first: pip install 'picklescan[7z]' modelscan fickling typing_extensions")
    main()
