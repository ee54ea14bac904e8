#!/usr/bin/env bash
# Hot reload under load: DAO (WORKERS workers on PROXY_CPUS) in front of two
# dao-bench-backend instances takes a constant open-loop load from
# dao-loadgen (-R RATE, keep-alive connections) while, in the "reloading"
# rounds, `daoctl reload --file` applies a different config every PERIOD
# seconds (upstreams swapped, weights and routes changed). "steady" rounds
# run the same load with no reload. Rounds are interleaved; the script
# prints medians of p50/p99/p99.9 (coordinated-omission corrected), the
# failed requests (errors plus non-2xx, which includes reset connections)
# and the reloads applied, and writes bench/results/DATE-COMMIT-reload.md.
#
#   bash bench/reload.sh                      # RUNS=3 DURATION=10s RATE=20000 PERIOD=0.1
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
RATE=${RATE:-20000}
CONNS=${CONNS:-32}
PERIOD=${PERIOD:-0.1}
WORKERS=${WORKERS:-1}
PROXY_CPUS=${PROXY_CPUS:-0}
LOAD_CPU=${LOAD_CPU:-1}
BIN=${CARGO_TARGET_DIR:-target}/release
BUILD=${BUILD:-1}
[ "$BUILD" = 1 ] && cargo build --release -q -p dao -p dao-bench -p dao-loadgen

source bench/lib.sh

start_backend one "$LOAD_CPU"
start_backend two "$LOAD_CPU"
port=$(free_port)
token=bench-reload-token-0123456789
admin_port=$(free_port)
# Config N of the cycle the reloading rounds go through.
config() {
  local head
  head=$(printf '[server]\nbind = "127.0.0.1:%s"\nworkers = %s\n[admin]\nbind = "127.0.0.1:%s"\ntoken = "%s"\n[proxy]\npool_max_idle = 128\n' \
    "$port" "$WORKERS" "$admin_port" "$token")
  case $1 in
    0) printf '%s\n[[routes.rule]]\nname = "r"\n[[routes.rule.upstreams]]\nname = "one"\nurl = "http://%s"\n' "$head" "$one" ;;
    1) printf '%s\n[[routes.rule]]\nname = "r"\npolicy = "weighted"\n[[routes.rule.upstreams]]\nname = "one"\nurl = "http://%s"\nweight = 3\n[[routes.rule.upstreams]]\nname = "two"\nurl = "http://%s"\nweight = 1\n' "$head" "$one" "$two" ;;
    2) printf '%s\n[[routes.rule]]\nname = "r"\n[[routes.rule.upstreams]]\nname = "two"\nurl = "http://%s"\n' "$head" "$two" ;;
    3) printf '%s\n[[routes.rule]]\nname = "other"\n[routes.rule.match]\nhost = "other.test"\n[[routes.rule.upstreams]]\nname = "one"\nurl = "http://%s"\n[[routes.rule]]\nname = "r"\npolicy = "least_request"\n[[routes.rule.upstreams]]\nname = "one"\nurl = "http://%s"\n[[routes.rule.upstreams]]\nname = "two"\nurl = "http://%s"\n' "$head" "$one" "$one" "$two" ;;
  esac
}
for n in 0 1 2 3; do config "$n" > "$work/c$n.toml"; done
taskset -c "$PROXY_CPUS" "$BIN/dao" --config "$work/c0.toml" > /dev/null 2> "$work/dao.log" &
pids+=($!)
wait_port "$port"
wait_port "$admin_port"
daoctl=("$BIN/daoctl" --admin "http://127.0.0.1:$admin_port" --token "$token")

# Applies the configs in turn until the file $work/stop appears; counts.
reloader() {
  local n=0 i=1
  while [ ! -e "$work/stop" ]; do
    "${daoctl[@]}" reload --file "$work/c$i.toml" > /dev/null && n=$((n + 1))
    i=$(((i + 1) % 4))
    sleep "$PERIOD"
  done
  echo "$n" > "$work/reloads"
}

run() { # mode → "p50 p99 p99.9 failed reloads"
  rm -f "$work/stop" "$work/reloads"
  local rpid=
  if [ "$1" = reloading ]; then reloader & rpid=$!; fi
  taskset -c "$LOAD_CPU" "$BIN/dao-loadgen" -t1 -c"$CONNS" --pin "$LOAD_CPU" -d"$DURATION" --warmup 1s \
    -R "$RATE" --progress never --json "$work/lg.json" "http://127.0.0.1:$port/" > /dev/null
  touch "$work/stop"
  [ -n "$rpid" ] && wait "$rpid"
  local reloads=0
  [ -s "$work/reloads" ] && reloads=$(cat "$work/reloads")
  python3 - "$work/lg.json" "$reloads" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["latency_ms"]["corrected"]
bad = sum(r["errors"].values()) + r["requests"] - r["status"]["2xx"]
print(c["p50"], c["p99"], c["p99.9"], bad, sys.argv[2])
PY
}

declare -A val
add() { val[$1]="${val[$1]:-} $2"; }
median() { tr ' ' '\n' <<<"${val[$1]}" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m}'; }
total() { tr ' ' '\n' <<<"${val[$1]}" | awk '{s+=$1} END {print s+0}'; }
for round in $(seq "$RUNS"); do
  order="steady reloading"; [ $((round % 2)) = 0 ] && order="reloading steady"
  for mode in $order; do
    read -r p50 p99 p999 bad reloads <<<"$(run "$mode")"
    for m in p50 p99 p999 bad reloads; do add "$m/$mode" "${!m}"; done
    echo "round $round $mode: p50 $p50 p99 $p99 p99.9 $p999 ms, $bad failed, $reloads reloads" >&2
  done
done

out="bench/results/$(date +%F)-$(git rev-parse --short HEAD)-reload.md"
mkdir -p bench/results
{
  echo "# Hot reload under load ($(date +%F), commit $(git rev-parse --short HEAD))"
  echo
  echo "DAO $WORKERS worker(s) on CPU $PROXY_CPUS; two dao-bench-backend and dao-loadgen on CPU $LOAD_CPU;"
  echo "\`dao-loadgen -t1 -c$CONNS -R $RATE -d$DURATION\` (keep-alive, corrected latency), $RUNS interleaved rounds;"
  echo "reloading rounds apply one of four configs every ${PERIOD}s with \`daoctl reload --file\`."
  echo
  echo "| mode | p50 ms | p99 ms | p99.9 ms | failed requests (all rounds) | reloads (all rounds) |"
  echo "|---|---:|---:|---:|---:|---:|"
  for mode in steady reloading; do
    echo "| $mode | $(median "p50/$mode") | $(median "p99/$mode") | $(median "p999/$mode") | $(total "bad/$mode") | $(total "reloads/$mode") |"
  done
  echo
  echo "p99 reloading / steady: $(python3 -c "print(round($(median p99/reloading) / $(median p99/steady), 2))")"
} | tee "$out"
