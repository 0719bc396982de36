#!/usr/bin/env bash
# Load harness: requests/s and latency for (1) the stand-in upstream directly, (2) an nginx
# reverse-proxy hop to it, (3) the ZTAI gateway with every stage on, at 1 and 64 connections with a
# ~1 KiB chat body. Installs nginx and wrk from Debian packages when missing. Loopback only;
# every run is bounded in time. EXPORT=ocsf|cef|json adds a SIEM export sink (rotated JSONL files)
# to the gateway under test and reports how far it kept up. BIN=path runs another build of ztai
# (an older commit's, for a before/after on the same machine). SEMANTIC=on|auto|off sets the
# semantic tier (default auto: on when its weights have been fetched). MIX=1 sends, instead of one
# prompt, the 298 ordinary requests of crates/ztai-inspect/tests/data (everyday requests and the
# kinds of issue 29) in turn: the share of them reaching the encoder is what the tier costs.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
BIN=${BIN:-target/release/ztai}
[ -x "$BIN" ] || cargo build --release -p ztai-cli
command -v nginx >/dev/null && command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx wrk >/dev/null; }

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; nginx -s stop -c "$work/nginx.conf" 2>/dev/null || true; rm -rf "$work"' EXIT

# `ztai up` seeds a data directory (policies, a demo key in group staff); the gateway under test
# then serves from it with limits high enough not to throttle the run, in front of a keyless
# stand-in that nginx and the direct run share.
"$BIN" up --data-dir "$work/data" --listen 127.0.0.1:18080 --admin-listen 127.0.0.1:18081 >/dev/null 2>&1 &
ZTAI_LOG=warn "$BIN" standin --listen 127.0.0.1:19000 >/dev/null 2>&1 &
for _ in $(seq 50); do [ -f "$work/data/quickstart.env" ] && break; sleep 0.2; done
source "$work/data/quickstart.env"
cat > "$work/ztai.toml" <<TOML
[server]
listen = "127.0.0.1:18090"
admin_listen = "127.0.0.1:18091"
[storage]
data_dir = "data"
[policy]
dir = "data/policies"
[limits]
requests_per_minute = 100000000
request_burst = 100000000
tokens_per_minute = 2000000000
[[upstreams]]
name = "standin"
base_url = "http://127.0.0.1:19000/v1"
[[models]]
name = "echo-small"
upstream = "standin"
upstream_model = "standin-echo"
groups = ["standard"]
[inspect.semantic]
mode = "${SEMANTIC:-auto}"
TOML
if [ -n "${EXPORT:-}" ]; then
  cat >> "$work/ztai.toml" <<TOML
[[audit.export]]
name = "bench-files"
kind = "file"
format = "$EXPORT"
path = "export/audit.jsonl"
rotate_bytes = 268435456
keep = 2
batch = 1000
TOML
fi
kill %1 2>/dev/null || true
sleep 0.5
ZTAI_LOG=warn "$BIN" serve --config "$work/ztai.toml" >/dev/null 2>&1 &
gw_pid=$!
sleep 1

cat > "$work/nginx.conf" <<NGINX
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  upstream standin { server 127.0.0.1:19000; keepalive 128; }
  server {
    listen 127.0.0.1:18088;
    location / { proxy_pass http://standin; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGINX
nginx -c "$work/nginx.conf"

body=$(python3 -c 'import json; print(json.dumps({"model":"echo-small","messages":[{"role":"user","content":"Summarise the attached meeting notes for the team. " * 18}]}))')
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = [[$body]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $ZTAI_API_KEY"
LUA
if [ -n "${MIX:-}" ]; then
  python3 - "$work/post.lua" "$ZTAI_API_KEY" <<'PY'
import json, sys
rows = []
for name in ["everyday-requests.txt", "ordinary-kinds.txt"]:
    for line in open(f"crates/ztai-inspect/tests/data/{name}", encoding="utf-8"):
        line = line.rstrip("\n")
        if line.strip() and not line.startswith("#"):
            rows.append(line.replace("\\n", "\n"))
bodies = [json.dumps({"model": "echo-small", "messages": [{"role": "user", "content": r}]}) for r in rows]
# JSON string escapes (\", \\, \n, \uXXXX for control characters) are valid Lua escapes once
# \u is avoided; ensure_ascii=False keeps non-ASCII as UTF-8 bytes.
literals = [json.dumps(b, ensure_ascii=False) for b in bodies]
literals = [x for x in literals if "\\u" not in x]
lua = ",\n".join(literals)
with open(sys.argv[1], "w", encoding="utf-8") as fh:
    fh.write(f"""bodies = {{
{lua}
}}
i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", nil, {{["Content-Type"] = "application/json", ["Authorization"] = "Bearer {sys.argv[2]}"}}, bodies[i])
end
""")
print(f"mix: {len(literals)} ordinary requests in turn")
PY
fi
echo "body bytes: ${#body}"
run() { # name url connections
  local out
  out=$(wrk -t "$([ "$3" -eq 1 ] && echo 1 || echo 2)" -c "$3" -d "$DURATION" --latency -s "$work/post.lua" "$2")
  local rps p50 p99
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $4}')
  printf '| %-22s | %3s | %10s | %8s | %8s | %s |\n' "$1" "$3" "$rps" "$p50" "$p99" "${non2xx:-0}"
}
echo "| target | conns | req/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|---|"
for c in 1 64; do
  run "stand-in direct" http://127.0.0.1:19000/v1/chat/completions $c
  run "nginx hop" http://127.0.0.1:18088/v1/chat/completions $c
  run "ztai gateway (all on)" http://127.0.0.1:18090/v1/chat/completions $c
done
# The gateway's own CPU per request at 64 connections (utime+stime from /proc): steadier than
# req/s on a noisy VM, and what a before/after with BIN=… should compare.
hz=$(getconf CLK_TCK)
t0=$(awk '{print $14+$15}' "/proc/$gw_pid/stat")
out=$(wrk -t2 -c64 -d "$DURATION" -s "$work/post.lua" http://127.0.0.1:18090/v1/chat/completions)
t1=$(awk '{print $14+$15}' "/proc/$gw_pid/stat")
n=$(echo "$out" | awk '/requests in/ {print $1}')
python3 -c "print(f'gateway CPU per request at 64 connections: {($t1-$t0)/$hz*1e6/$n:.1f} µs ($n requests)')"
if [ -n "${EXPORT:-}" ]; then
  echo "export sink ($EXPORT), right after the last run:"
  "$BIN" audit cursors --data-dir "$work/data"
  sleep 5
  echo "five seconds later:"
  "$BIN" audit cursors --data-dir "$work/data"
fi
