"""Latency of one MCP tools/call through the gateway, against the same call made directly to
the stand-in stdio server the gateway fronts.

Usage (after `ztai up` and `source .ztai/quickstart.env`):
    python3 bench/mcp_call.py [--calls 2000] [--ztai target/release/ztai]

One client, one keep-alive connection, calls one after another (latency, not throughput). The
gateway path includes authentication, the session and pin reads, argument inspection, the policy
decision, the stdio round trip, result screening and the audit append.
"""
import argparse
import http.client
import json
import os
import statistics
import subprocess
import time
import urllib.parse


def percentiles(samples):
    s = sorted(samples)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]
    return {"p50_us": round(pick(0.50) * 1e6), "p99_us": round(pick(0.99) * 1e6), "mean_us": round(statistics.mean(s) * 1e6)}


def through_gateway(calls: int) -> dict:
    url = urllib.parse.urlparse(os.environ["ZTAI_MCP_URL"])
    conn = http.client.HTTPConnection(url.hostname, url.port)
    headers = {"Authorization": f"Bearer {os.environ['ZTAI_API_KEY']}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}
    path = f"{url.path}/office"

    def post(msg, session=None):
        h = dict(headers)
        if session:
            h["Mcp-Session-Id"] = session
        conn.request("POST", path, json.dumps(msg), h)
        r = conn.getresponse()
        body = r.read()
        return r, body

    r, _ = post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}})
    session = r.getheader("mcp-session-id")
    samples = []
    for i in range(calls):
        msg = {"jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
               "params": {"name": "search_docs", "arguments": {"query": f"expenses {i % 7}"}}}
        t = time.perf_counter()
        r, body = post(msg, session)
        samples.append(time.perf_counter() - t)
        assert r.status == 200 and b'"result"' in body, body[:200]
    return percentiles(samples)


def direct(calls: int, ztai: str) -> dict:
    p = subprocess.Popen([ztai, "standin-mcp"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    def rpc(msg):
        p.stdin.write(json.dumps(msg) + "\n")
        p.stdin.flush()
        return p.stdout.readline()
    rpc({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {}})
    samples = []
    for i in range(calls):
        t = time.perf_counter()
        line = rpc({"jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
                    "params": {"name": "search_docs", "arguments": {"query": f"expenses {i % 7}"}}})
        samples.append(time.perf_counter() - t)
        assert '"result"' in line
    p.stdin.close()
    p.wait()
    return percentiles(samples)


if __name__ == "__main__":
    a = argparse.ArgumentParser()
    a.add_argument("--calls", type=int, default=2000)
    a.add_argument("--ztai", default="target/release/ztai")
    args = a.parse_args()
    print(json.dumps({"direct_stdio": direct(args.calls, args.ztai), "through_gateway": through_gateway(args.calls)}))
