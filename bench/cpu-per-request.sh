#!/usr/bin/env bash
# CPU per request of a gateway build under wrk (64 connections, 8 s after a 3 s warm-up), read from
# the gateway process's utime+stime in /proc: steadier than req/s on a noisy VM. Usage:
#   bash bench/cpu-per-request.sh target/release/ztai   (run two builds alternately for a before/after)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/ztai}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
"$BIN" up --data-dir "$work/data" --listen 127.0.0.1:28080 --admin-listen 127.0.0.1:28081 >/dev/null 2>&1 &
ZTAI_LOG=warn "$BIN" standin --listen 127.0.0.1:29000 >/dev/null 2>&1 &
for _ in $(seq 50); do [ -f "$work/data/quickstart.env" ] && break; sleep 0.2; done
source "$work/data/quickstart.env"
cat > "$work/ztai.toml" <<TOML
[server]
listen = "127.0.0.1:28090"
admin_listen = "127.0.0.1:28091"
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
base_url = "http://127.0.0.1:29000/v1"
[[models]]
name = "echo-small"
upstream = "standin"
upstream_model = "standin-echo"
groups = ["standard"]
TOML
kill %1; sleep 0.5
ZTAI_LOG=warn "$BIN" serve --config "$work/ztai.toml" >/dev/null 2>&1 &
pid=$!; sleep 1
body=$(python3 -c 'import json; print(json.dumps({"model":"echo-small","messages":[{"role":"user","content":"Summarise the attached meeting notes for the team. " * 18}]}))')
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = [[$body]]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $ZTAI_API_KEY"
LUA
wrk -t2 -c64 -d3s -s "$work/post.lua" http://127.0.0.1:28090/v1/chat/completions >/dev/null
t0=$(awk '{print $14+$15}' /proc/$pid/stat)
out=$(wrk -t2 -c64 -d8s -s "$work/post.lua" http://127.0.0.1:28090/v1/chat/completions)
t1=$(awk '{print $14+$15}' /proc/$pid/stat)
n=$(echo "$out" | awk '/requests in/ {print $1}')
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
hz=$(getconf CLK_TCK)
python3 -c "print(f'$BIN: {$n} requests, {$rps} req/s, gateway CPU {($t1-$t0)/$hz*1e6/$n:.1f} µs/request')"
