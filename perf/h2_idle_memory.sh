#!/usr/bin/env bash
# Memory per idle HTTP/2 client connection: DAO (1 worker, a child
# process) in front of the bench backend; N h2c connections (and the same
# over TLS), each set up in full and then idle, with no request and with
# one GET answered (a SIZE-byte body); prints DAO's RSS growth per
# connection (VmRSS) for each. Not a timed benchmark.
#
#   bash perf/h2_idle_memory.sh                     # N=5000 SIZE=20000
#   DAO=/tmp/dao-old bash perf/h2_idle_memory.sh    # another build, to compare
#   MODES="h2c" N=2000 BUILD=0 bash perf/h2_idle_memory.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5000}
SIZE=${SIZE:-20000}
MODES=${MODES:-"h2c tls"}
BIN=${CARGO_TARGET_DIR:-target}/release
DAO=${DAO:-$BIN/dao}
BUILD=${BUILD:-1}
[ "$BUILD" = 1 ] && cargo build --release -q -p dao -p dao-bench
# N client sockets here, N accepted there (and the backend's few).
ulimit -n $(( 2 * N + 1024 )) 2>/dev/null || ulimit -n "$(ulimit -Hn)"

source bench/lib.sh
start_backend backend 1 --size "$SIZE"
bash scripts/dev-certs.sh "$work/certs" >/dev/null

# run MODE REQUEST: one DAO, warmed and measured by h2_idle_memory.py.
run() {
  local mode=$1 request=$2 port flags=(); port=$(free_port)
  {
    printf '[server]\nworkers = 1\nkeepalive_timeout = "600s"\n'
    if [ "$mode" = tls ]; then
      printf '[[listeners]]\nbind = "127.0.0.1:%s"\n[listeners.tls]\n' "$port"
      printf 'certificates = [{ cert = "%s", key = "%s" }]\n' "$work/certs/server.pem" "$work/certs/server.key"
      printf 'alpn = ["h2", "http/1.1"]\n'
    else
      printf 'bind = "127.0.0.1:%s"\n' "$port"
    fi
    printf '[[routes.rule]]\nname = "b"\n[[routes.rule.upstreams]]\nname = "b"\nurl = "http://%s"\n' "$backend"
  } > "$work/dao.toml"
  [ "$mode" = tls ] && flags+=(--tls)
  [ -n "$request" ] && flags+=(--request "$request")
  taskset -c 0 "$DAO" --config "$work/dao.toml" > /dev/null 2> "$work/dao.log" &
  local pid=$!
  wait_port "$port" 10
  taskset -c 1 python3 perf/h2_idle_memory.py "127.0.0.1:$port" "$N" "$pid" "${flags[@]}"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "DAO: $DAO"
for mode in $MODES; do
  run "$mode" ""
  run "$mode" "/"
done
