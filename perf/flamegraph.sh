#!/usr/bin/env bash
# CPU flamegraph of DAO under load. DAO (1 worker) runs on CPU 0 behind the
# bench backend; dao-loadgen drives it from CPU 1; `perf record -e
# cpu-clock` (a software clock: this VM has no hardware counters) samples
# every thread of the DAO process, kernel stacks included, and inferno
# renders the SVG. Writes perf/results/flamegraph-DATE-COMMIT.svg, the
# folded stacks beside it, and a kernel / user split (.txt).
#
#   bash perf/flamegraph.sh                  # closed loop, 10 s recorded
#   RATE=30000 bash perf/flamegraph.sh       # at a fixed rate (open loop)
#   CALL_GRAPH=fp bash perf/flamegraph.sh    # frame pointers: `perf record -g`
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}      # seconds recorded, after 2 s of load
CONNS=${CONNS:-64}
RATE=${RATE:-}                # dao-loadgen -R; empty: closed loop
FREQ=${FREQ:-999}             # samples per second
# dwarf: unwinds user stacks from debug info (release builds keep it and
# omit frame pointers, so `fp` truncates most Rust stacks after a frame or
# two); fp is cheaper to record.
CALL_GRAPH=${CALL_GRAPH:-dwarf}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BIN=${CARGO_TARGET_DIR:-target}/release
DAO_BIN=${DAO_BIN:-$BIN/dao}
BUILD=${BUILD:-1}             # 0: use the binaries already in $BIN

need() { command -v "$1" >/dev/null 2>&1; }
if ! need perf; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
fi
# inferno goes to cargo's bin directory (~/.cargo/bin), outside the repo.
if ! need inferno-flamegraph; then
  cargo install --locked -q inferno
  export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
fi
[ "$BUILD" = 1 ] && cargo build --release -q -p dao -p dao-bench -p dao-loadgen

source bench/lib.sh

start_backend backend "$LOAD_CPU"

port=$(free_port)
printf '[server]\nbind = "127.0.0.1:%s"\nworkers = 1\n[[routes.rule]]\nname = "b"\n[[routes.rule.upstreams]]\nname = "b"\nurl = "http://%s"\n' \
  "$port" "$backend" > "$work/dao.toml"
taskset -c "$PROXY_CPU" "$DAO_BIN" --config "$work/dao.toml" > /dev/null 2> "$work/dao.log" &
pids+=($!)
dao_pid=$!
wait_port "$port"

# Load for the whole recording, with 2 s before and 1 s after it.
rate=(); [ -n "$RATE" ] && rate=(-R "$RATE")
taskset -c "$LOAD_CPU" "$BIN/dao-loadgen" -t1 -c"$CONNS" --pin "$LOAD_CPU" -d"$((DURATION + 3))s" "${rate[@]}" \
  --progress never "http://127.0.0.1:$port/" > "$work/loadgen.out" &
pids+=($!)
loadgen=$!
sleep 2
perf record -q -e cpu-clock -F "$FREQ" --call-graph "$CALL_GRAPH" -p "$dao_pid" -o "$work/perf.data" -- sleep "$DURATION"
wait "$loadgen"
grep -E 'Requests/sec|Latency|corrected|requests in' "$work/loadgen.out" >&2 || true

mkdir -p perf/results
name="perf/results/flamegraph-$(date -u +%Y-%m-%d)-$(git rev-parse --short HEAD 2>/dev/null || echo nogit)"
load=$([ -n "$RATE" ] && echo "$RATE req/s" || echo "closed loop")
perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf > "$name.folded"
inferno-flamegraph --title "DAO, 1 worker, HTTP/1.1 keep-alive, $CONNS conns, $load ($CALL_GRAPH stacks)" \
  < "$name.folded" > "$name.svg"
# Where the samples fall: kernel vs DAO's binary vs libc, then the hottest symbols.
{
  echo "# perf record -e cpu-clock -F $FREQ --call-graph $CALL_GRAPH -p DAO, ${DURATION}s, $load"
  perf report -i "$work/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | awk '!/^#/ && NF && n++ < 8'
  echo
  perf report -i "$work/perf.data" --no-children --sort sym --stdio -g none 2>/dev/null | awk '!/^#/ && NF && n++ < 25'
} > "$name.txt"
cat "$name.txt"
echo "written $name.svg, $name.folded and $name.txt" >&2
