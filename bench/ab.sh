#!/usr/bin/env bash
# A/B of two DAO configurations on the same bench: closed-loop req/s and
# proxy CPU per request, interleaved rounds, medians and the B/A ratio.
# Each side is DAO (1 worker, CPU 0) in front of dao-bench-backend, driven
# by `wrk -t1 -cCONNS` (backend and wrk on CPU 1); A_EXTRA and B_EXTRA are
# TOML appended to each side's config. The default measures Sense's cost:
# A = Sense on (telemetry with a Prometheus listener, request ids),
# B = Sense off.
#
#   bash bench/ab.sh                                  # RUNS=7 DURATION=5s
#   A_EXTRA='' B_EXTRA=$'[telemetry]\naccess_log = true\naccess_log_path = "/dev/null"' bash bench/ab.sh
#   A_EXTRA='' B_EXTRA=$'[routes.rule.filters]\nmax_body_bytes = 1024' bash bench/ab.sh   # a filter's cost
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-7}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-64}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BIN=${CARGO_TARGET_DIR:-target}/release
DAO_BIN=${DAO_BIN:-$BIN/dao}
BUILD=${BUILD:-1}
A_NAME=${A_NAME:-sense on}
B_NAME=${B_NAME:-sense off}
# The Prometheus port is filled in below (a free one).
A_EXTRA=${A_EXTRA-$'[telemetry]\nenabled = true\nrequest_id = true\nprometheus_bind = "127.0.0.1:@PORT@"'}
B_EXTRA=${B_EXTRA-$'[telemetry]\nenabled = false\nrequest_id = false'}
# Extra wrk arguments for both sides, e.g. WRK_ARGS='-H "Authorization: Bearer …"'.
WRK_ARGS=${WRK_ARGS:-}
eval "wrk_args=($WRK_ARGS)"

command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
[ "$BUILD" = 1 ] && cargo build --release -q -p dao -p dao-bench

source bench/lib.sh

start_backend backend "$LOAD_CPU"

declare -A port pid
for side in A B; do
  port[$side]=$(free_port)
  extra_var=${side}_EXTRA
  extra=${!extra_var//@PORT@/$(free_port)}
  printf '[server]\nbind = "127.0.0.1:%s"\nworkers = 1\n[proxy]\npool_max_idle = 128\n[[routes.rule]]\nname = "bench"\n[[routes.rule.upstreams]]\nname = "backend"\nurl = "http://%s"\n%s\n' \
    "${port[$side]}" "$backend" "$extra" > "$work/$side.toml"
  taskset -c "$PROXY_CPU" "$DAO_BIN" --config "$work/$side.toml" > /dev/null 2> "$work/$side.log" &
  pids+=($!)
  pid[$side]=$!
  wait_port "${port[$side]}"
done

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
hz=$(getconf CLK_TCK)
declare -A rps cpu
for round in $(seq "$RUNS"); do
  # Alternate which side goes first, so a drift favours neither.
  order="A B"; [ $((round % 2)) = 0 ] && order="B A"
  for side in $order; do
    before=$(cpu_ticks "${pid[$side]}")
    out=$(taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "${wrk_args[@]}" "http://127.0.0.1:${port[$side]}/" 2>/dev/null)
    after=$(cpu_ticks "${pid[$side]}")
    r=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    c=$(awk -v t=$((after - before)) -v hz="$hz" '/requests in/ {printf "%.2f", t / hz * 1e6 / $1}' <<<"$out")
    rps[$side]="${rps[$side]:-} $r"; cpu[$side]="${cpu[$side]:-} $c"
    echo "round $round $side: $r req/s, $c µs CPU/req" >&2
  done
done

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {printf "%.2f", (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }
spread() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk 'NR==1{lo=$1} {hi=$1} END {printf "%.0f–%.0f", lo, hi}'; }
ra=$(median "${rps[A]}"); rb=$(median "${rps[B]}"); ca=$(median "${cpu[A]}"); cb=$(median "${cpu[B]}")
echo "DAO A/B, 1 worker on CPU $PROXY_CPU, backend + wrk -t1 -c$CONNS -d$DURATION on CPU $LOAD_CPU, $RUNS interleaved rounds"
echo
echo "| side | median req/s | spread | µs CPU / req |"
echo "|---|---:|---|---:|"
echo "| A: $A_NAME | ${ra%.*} | $(spread "${rps[A]}") | $ca |"
echo "| B: $B_NAME | ${rb%.*} | $(spread "${rps[B]}") | $cb |"
awk -v a="$ra" -v b="$rb" -v ca="$ca" -v cb="$cb" 'BEGIN {printf "\nA / B: req/s %.3f (A costs %.1f %% of throughput), CPU per request %.3f\n", a/b, (1 - a/b) * 100, ca/cb}'
