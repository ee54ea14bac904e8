#!/usr/bin/env bash
# Align on the real proxy: p50/p99/p99.9 per balancing policy at a fixed
# rate, with one of the upstreams slowed. BACKENDS dao-bench-backend
# processes (the first one holds every response SLOW_MS ms), DAO with 1
# worker on CPU 0 in front of them, dao-loadgen (open loop, corrected for
# coordinated omission) and the backends on CPU 1. Each policy gets its own
# DAO; rounds are interleaved; medians over RUNS.
#
#   bash bench/policies.sh                      # RUNS=3 RATE=4000 DURATION=10s
#   POLICIES="round_robin resonant" SLOW_MS=50 bash bench/policies.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
RATE=${RATE:-4000}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
CONNS=${CONNS:-64}
BACKENDS=${BACKENDS:-4}
SLOW_MS=${SLOW_MS:-20}
POLICIES=${POLICIES:-round_robin random least_request peak_ewma resonant}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BIN=${CARGO_TARGET_DIR:-target}/release
BUILD=${BUILD:-1}
[ "$BUILD" = 1 ] && cargo build --release -q -p dao -p dao-bench -p dao-loadgen

source bench/lib.sh

upstreams=""
for i in $(seq 0 $((BACKENDS - 1))); do
  delay=0; [ "$i" = 0 ] && delay=$SLOW_MS
  start_backend addr "$LOAD_CPU" --delay-ms "$delay"
  upstreams+=$(printf '[[routes.rule.upstreams]]\nname = "b%s"\nurl = "http://%s"\n' "$i" "$addr")$'\n'
done

declare -A port
for p in $POLICIES; do
  port[$p]=$(free_port)
  printf '[server]\nbind = "127.0.0.1:%s"\nworkers = 1\n[proxy]\npool_max_idle = 128\n[[routes.rule]]\nname = "bench"\npolicy = "%s"\n%s' \
    "${port[$p]}" "$p" "$upstreams" > "$work/$p.toml"
  taskset -c "$PROXY_CPU" "$BIN/dao" --config "$work/$p.toml" > /dev/null 2> "$work/$p.log" &
  pids+=($!)
  wait_port "${port[$p]}"
done

declare -A res
for round in $(seq "$RUNS"); do
  for p in $POLICIES; do
    taskset -c "$LOAD_CPU" "$BIN/dao-loadgen" -t1 -c"$CONNS" --pin "$LOAD_CPU" -d"$DURATION" --warmup "$WARMUP" \
      -R "$RATE" --progress never --json "$work/lg.json" "http://127.0.0.1:${port[$p]}/" > /dev/null
    line=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1])); c = r["latency_ms"]["corrected"]
bad = sum(r["errors"].values()) + r["requests"] - r["status"]["2xx"]
print(r["throughput_rps"], c["p50"], c["p99"], c["p99.9"], bad)' "$work/lg.json")
    res[$p]="${res[$p]:-}|$line"
    echo "round $round $p: $line" >&2
  done
done

echo "DAO 1 worker (CPU $PROXY_CPU), $BACKENDS backends (b0 holds each response $SLOW_MS ms), dao-loadgen -R $RATE -c$CONNS -d$DURATION (CPU $LOAD_CPU); medians of $RUNS interleaved rounds; ms, corrected for coordinated omission"
echo
echo "| policy | req/s | p50 | p99 | p99.9 | errors |"
echo "|---|---:|---:|---:|---:|---:|"
for p in $POLICIES; do
  python3 - "$p" "${res[$p]}" <<'PY'
import statistics, sys
rows = [list(map(float, r.split())) for r in sys.argv[2].split("|") if r.strip()]
m = lambda k: statistics.median(r[k] for r in rows)
print(f"| {sys.argv[1]} | {m(0):.0f} | {m(1):.3f} | {m(2):.2f} | {m(3):.2f} | {sum(r[4] for r in rows):.0f} |")
PY
done
