#!/usr/bin/env python3
"""Pools `ztai eval --json` reports of several held-out folds into one table.

Each fold's report scores only the rows that fold's model never saw, so adding the confusion
counts of all folds gives figures over every row, each scored out-of-fold. Prints per file the
pooled precision, recall, F1 and false-positive rate, each fold's F1 and FPR, the benign kinds
with the most false alarms, and the pooled reliability table.

Usage: scripts/pool-eval.py FOLD.json ... [--json]
"""

import collections
import json
import sys


def ratio(a, b):
    return a / b if b else float("nan")


def figures(c):
    p = ratio(c["tp"], c["tp"] + c["fp"])
    r = ratio(c["tp"], c["tp"] + c["fn"])
    f1 = 2 * p * r / (p + r) if p + r > 0 else 0.0
    counts = {k: c[k] for k in ("tp", "fp", "fn", "tn")}
    return {**counts, "precision": p, "recall": r, "f1": f1, "fpr": ratio(c["fp"], c["fp"] + c["tn"])}


def add(into, c):
    for k in ("tp", "fp", "fn", "tn"):
        into[k] += c[k]


def main():
    paths = [a for a in sys.argv[1:] if not a.startswith("--")]
    files = collections.OrderedDict()
    for path in paths:
        for f in json.load(open(path, encoding="utf-8")):
            e = files.setdefault(f["file"], {"overall": collections.Counter(), "folds": [],
                                              "kinds": collections.defaultdict(collections.Counter),
                                              "sources": collections.defaultdict(collections.Counter),
                                              "reliability": collections.defaultdict(collections.Counter)})
            add(e["overall"], f["overall"])
            e["folds"].append(figures(f["overall"]))
            for k, c in f.get("by_kind", {}).items():
                add(e["kinds"][k], c)
            for k, c in f.get("by_source", {}).items():
                add(e["sources"][k], c)
            for row in f.get("reliability", []):
                e["reliability"][row["confidence"]]["injections"] += row["injections"]
                e["reliability"][row["confidence"]]["benign"] += row["benign"]
    report = {}
    for name, e in files.items():
        o = figures(e["overall"])
        report[name] = {"overall": o, "folds": e["folds"],
                        "kinds": {k: figures(c) for k, c in e["kinds"].items()},
                        "sources": {k: figures(c) for k, c in e["sources"].items()}}
        if "--json" in sys.argv:
            continue
        print(f"{name}")
        if not sum(e["overall"].values()):
            print("  no rows of this file in these folds")
            continue
        print(f"  pooled  P {o['precision']:.3f}  R {o['recall']:.3f}  F1 {o['f1']:.3f}  "
              f"FPR {o['fpr']:.3f}  (tp {o['tp']} fp {o['fp']} fn {o['fn']} tn {o['tn']})")
        print("  folds   F1 " + " ".join(f"{x['f1']:.3f}" for x in e["folds"]) +
              "   FPR " + " ".join(f"{x['fpr']:.3f}" for x in e["folds"]))
        kinds = sorted(report[name]["kinds"].items(), key=lambda kv: -kv[1]["fp"])
        noisy = [f"{k} {c['fp']}/{c['fp'] + c['tn']}" for k, c in kinds if c["fp"]]
        if noisy:
            print("  false alarms by kind: " + ", ".join(noisy[:12]))
        missed = sorted(report[name]["kinds"].items(), key=lambda kv: -kv[1]["fn"])
        missed = [f"{k} {c['fn']}/{c['fn'] + c['tp']}" for k, c in missed if c["fn"]]
        if missed:
            print("  missed by kind: " + ", ".join(missed[:12]))
        inj = sum(v["injections"] for v in e["reliability"].values())
        ben = sum(v["benign"] for v in e["reliability"].values())
        for conf in sorted(e["reliability"]):
            v = e["reliability"][conf]
            pi, pb = ratio(v["injections"], inj), ratio(v["benign"], ben)
            share = pi / (pi + pb) if pi + pb > 0 else float("nan")
            print(f"    confidence {conf:<12} injections {v['injections']:>5}  benign {v['benign']:>5}  "
                  f"balanced injection share {share:.3f}")
    if "--json" in sys.argv:
        json.dump(report, sys.stdout, indent=1, default=str)


if __name__ == "__main__":
    main()
