#!/usr/bin/env python3
"""Side-by-side secrets quality: ztai vs detect-secrets on the same labelled rows.

Both tools see each row's `text`; a row counts as flagged when the tool reports any secret in it.
detect-secrets runs with its default plugins and filters (what `detect-secrets scan` uses), one
line at a time as its scanner does. ztai runs `ztai scan --jsonl --detectors secret` (flagged at
the default `--fail-on medium`). Prints precision, recall, F1 and false-positive rate per tool,
overall and per `source`, plus each tool's time per row.

    .venv/bin/pip install detect-secrets
    .venv/bin/python bench/compare_secrets.py ../shared/corpora/secrets.dev.jsonl [--ztai target/release/ztai]
"""
import argparse
import collections
import json
import subprocess
import sys
import time


def detect_secrets_flags(texts):
    from detect_secrets.core.scan import scan_line
    from detect_secrets.settings import default_settings

    flags = []
    with default_settings():
        start = time.perf_counter()
        for text in texts:
            hit = False
            for line in text.splitlines() or [""]:
                if any(True for _ in scan_line(line)):
                    hit = True
                    break
            flags.append(hit)
        elapsed = time.perf_counter() - start
    return flags, elapsed


def ztai_flags(texts, binary):
    payload = "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()
    start = time.perf_counter()
    out = subprocess.run(
        [binary, "scan", "--jsonl", "--detectors", "secret"],
        input=payload, capture_output=True, check=False,
    )
    elapsed = time.perf_counter() - start
    if out.returncode not in (0, 1):
        sys.exit(f"ztai scan failed ({out.returncode}): {out.stderr.decode(errors='replace')}")
    lines = out.stdout.decode().splitlines()
    if len(lines) != len(texts):
        sys.exit(f"ztai wrote {len(lines)} results for {len(texts)} rows")
    return [json.loads(l)["verdict"] == "flagged" for l in lines], elapsed


def scores(pairs):
    tp = sum(1 for t, p in pairs if t and p)
    fp = sum(1 for t, p in pairs if not t and p)
    fn = sum(1 for t, p in pairs if t and not p)
    tn = sum(1 for t, p in pairs if not t and not p)
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    fpr = fp / (fp + tn) if fp + tn else 0.0
    return dict(p=prec, r=rec, f1=f1, fpr=fpr, tp=tp, fp=fp, fn=fn, tn=tn)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--ztai", default="target/release/ztai")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args()
    rows = [json.loads(l) for l in open(args.file, encoding="utf-8") if l.strip()]
    texts = [r["text"] for r in rows]
    truth = [r["label"] == "secret" for r in rows]
    tools = {
        "ztai": ztai_flags(texts, args.ztai),
        "detect-secrets": detect_secrets_flags(texts),
    }
    report = {}
    for name, (flags, elapsed) in tools.items():
        by_source = collections.defaultdict(list)
        for r, t, f in zip(rows, truth, flags):
            by_source[r.get("source", "(none)")].append((t, f))
        report[name] = {
            "overall": scores(list(zip(truth, flags))),
            "by_source": {s: scores(p) for s, p in sorted(by_source.items())},
            "us_per_row": elapsed / max(len(rows), 1) * 1e6,
        }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.file}: {len(rows)} rows")
    for name, rep in report.items():
        for scope, s in [("overall", rep["overall"])] + list(rep["by_source"].items()):
            print(f"  {name:<15} {scope:<16} P {s['p']:.3f}  R {s['r']:.3f}  F1 {s['f1']:.3f}  "
                  f"FPR {s['fpr']:.3f}  (tp {s['tp']} fp {s['fp']} fn {s['fn']} tn {s['tn']})")
        print(f"  {name:<15} time per row {rep['us_per_row']:.1f} µs (wall, whole run incl. start-up)")


if __name__ == "__main__":
    main()
