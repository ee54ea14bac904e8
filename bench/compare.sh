#!/usr/bin/env bash
# Side-by-side: DAO (1 worker), nginx (1 worker) and HAProxy (nbthread 1)
# in front of the same backend. Proxy pinned to CPU 0; backend and load
# generator on CPU 1. Measures, with targets interleaved in every round:
#   - closed loop (wrk): req/s, and CPU time of the proxy per request;
#   - open loop (dao-loadgen -R): p50/p99/p99.9 latency, corrected for
#     coordinated omission, at fixed rates of LOADS % of nginx's median
#     closed-loop req/s from the same run;
#   - RSS per idle keep-alive connection.
# Prints medians, spreads and ratios, and writes them to bench/results/.
#
#   bash bench/compare.sh            # RUNS=5 DURATION=10s CONNS=64 by default
#   RUNS=3 DURATION=5s TARGETS="dao nginx" bash bench/compare.sh
#   SIZE=16384 bash bench/compare.sh; SIZE=1048576 bash bench/compare.sh; NEWCONN=1 bash bench/compare.sh
#   SCENARIOS="keepalive 16k 1m newconn" RUNS=3 bash bench/compare.sh   # one full compare each
#   LOADS= bash bench/compare.sh     # closed loop and memory only
set -euo pipefail
cd "$(dirname "$0")/.."

# Several scenarios: run this script once per scenario, each with its own
# results file.
if [ -n "${SCENARIOS:-}" ]; then
  for s in $SCENARIOS; do
    case $s in
      keepalive) size=13 newconn=0;;
      16k) size=16384 newconn=0;;
      1m) size=1048576 newconn=0;;
      newconn) size=13 newconn=1;;
      *) echo "unknown scenario $s (keepalive, 16k, 1m, newconn)" >&2; exit 2;;
    esac
    echo "== scenario $s" >&2
    SCENARIOS='' SIZE=$size NEWCONN=$newconn bash "$0"
  done
  exit 0
fi

RUNS=${RUNS:-5}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
TARGETS=${TARGETS:-dao nginx haproxy direct}
BIN=${CARGO_TARGET_DIR:-target}/release
DAO_BIN=${DAO_BIN:-$BIN/dao}
IDLE_CONNS=${IDLE_CONNS:-3000}
SIZE=${SIZE:-13}          # response body bytes (13, 16384, 1048576, ...)
NEWCONN=${NEWCONN:-0}     # 1: a new client connection per request
LOADS=${LOADS-25 50 75 90}               # open-loop rates, % of nginx's closed-loop median; empty: none
BASE_RPS=${BASE_RPS:-}                   # the 100 % rate, when nginx is not among TARGETS
OPEN_DURATION=${OPEN_DURATION:-$DURATION}
WARMUP=${WARMUP:-1s}                     # dao-loadgen warm-up before each open-loop run
TIMER=${TIMER:-precise}                  # dao-loadgen --timer (precise or coarse)
BUILD=${BUILD:-1}                        # 0: use the binaries already in $BIN

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx || ! need haproxy; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light haproxy >/dev/null
fi
[ "$BUILD" = 1 ] && cargo build --release -q -p dao -p dao-bench -p dao-loadgen

source bench/lib.sh

# Backend.
start_backend backend "$LOAD_CPU" --size "$SIZE"
bport=${backend##*:}

# DAO.
dport=$(free_port)
cat > "$work/dao.toml" <<CONF
[server]
bind = "127.0.0.1:$dport"
workers = 1
[proxy]
pool_max_idle = 128
[[routes.rule]]
name = "bench"
  [[routes.rule.upstreams]]
  name = "backend"
  url = "http://$backend"
CONF
taskset -c "$PROXY_CPU" "$DAO_BIN" --config "$work/dao.toml" > /dev/null 2> "$work/dao.log" &
pids+=($!)
dao_pid=$!

# nginx: one worker, upstream keep-alive.
nport=$(free_port)
mkdir -p "$work/nginx"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
worker_cpu_affinity 1;
pid $work/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx; proxy_temp_path $work/nginx;
  fastcgi_temp_path $work/nginx; uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
  upstream backend { server $backend; keepalive 128; }
  server {
    listen 127.0.0.1:$nport;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
taskset -c "$PROXY_CPU" nginx -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)
nginx_pid=$!

# HAProxy: one thread, connection reuse.
hport=$(free_port)
cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 3s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend fe
  bind 127.0.0.1:$hport
  default_backend be
backend be
  server s1 $backend
CONF
taskset -c "$PROXY_CPU" haproxy -f "$work/haproxy.cfg" -q &
pids+=($!)
haproxy_pid=$!

wait_port "$dport"; wait_port "$nport"; wait_port "$hport"
# nginx: master and worker (the master does no request work).
nginx_pids="$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')"

port_of() { case $1 in dao) echo "$dport";; nginx) echo "$nport";; haproxy) echo "$hport";; direct) echo "$bport";; esac; }
pids_of() { case $1 in dao) echo "$dao_pid";; nginx) echo "$nginx_pids";; haproxy) echo "$haproxy_pid";; direct) echo "$backend_pid";; esac; }

# CPU time (user + system, all threads) of the given processes, in clock
# ticks; the fields after the "(comm)" of /proc/PID/stat start at state.
cpu_ticks() { for p in "$@"; do sed 's/.*) //' "/proc/$p/stat"; done | awk '{t += $12 + $13} END {print t}'; }
clk_tck=$(getconf CLK_TCK)
# "busy total" jiffies of the load generator's CPU, from /proc/stat.
load_cpu_jiffies() { awk -v c="cpu$LOAD_CPU" '$1 == c {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }

wrk_extra=()
lg_extra=()
[ "$NEWCONN" = 1 ] && wrk_extra=(-H "Connection: close") && lg_extra=(--no-keepalive)

closed() { # port pid... → "req/s µs-of-CPU-per-request"
  local port=$1; shift
  local before after
  before=$(cpu_ticks "$@")
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "${wrk_extra[@]}" "http://127.0.0.1:$port/" 2>/dev/null > "$work/wrk.out"
  after=$(cpu_ticks "$@")
  awk -v t=$((after - before)) -v hz="$clk_tck" '/requests in/ {n = $1} /Requests\/sec/ {r = $2}
    END {printf "%s %.2f\n", r, t / hz * 1e6 / n}' "$work/wrk.out"
}

open() { # port rate → "req/s p50 p99 p99.9 errors load-CPU-busy-%" (latency in ms)
  local b1 t1 b2 t2
  read -r b1 t1 < <(load_cpu_jiffies)
  taskset -c "$LOAD_CPU" "$BIN/dao-loadgen" -t1 -c"$CONNS" --pin "$LOAD_CPU" -d"$OPEN_DURATION" --warmup "$WARMUP" \
    -R "$2" --timer "$TIMER" "${lg_extra[@]}" --progress never --json "$work/lg.json" "http://127.0.0.1:$1/" > /dev/null
  read -r b2 t2 < <(load_cpu_jiffies)
  python3 - "$work/lg.json" $(((b2 - b1) * 100 / (t2 - t1))) <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c = r["latency_ms"]["corrected"]
bad = sum(r["errors"].values()) + r["requests"] - r["status"]["2xx"]
print(r["throughput_rps"], c["p50"], c["p99"], c["p99.9"], bad, sys.argv[2])
PY
}

# results[metric/target] and results[metric/target/load]: values of all rounds.
declare -A results
add() { results[$1]="${results[$1]:-} $2"; }

for round in $(seq "$RUNS"); do
  for name in $TARGETS; do
    read -r rps cpu <<<"$(closed "$(port_of "$name")" $(pids_of "$name"))"
    add "rps/$name" "$rps"; add "cpu/$name" "$cpu"
    echo "round $round $name $rps req/s, $cpu µs CPU/req" >&2
  done
done

# Summaries of the values of a key: median, spread (min–max), in a format.
values() { tr ' ' '\n' <<<"${results[$1]:-}" | { grep -v '^$' || true; } | sort -g; }
median() { values "$1" | awk -v f="$2" '{a[NR]=$1} END {if (NR) printf f, (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }
spread() { values "$1" | awk -v f="$2–$2" 'NR==1{lo=$1} {hi=$1} END {if (NR) printf f, lo, hi}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a != "" && b > 0) printf "%.2f", a/b}'; }
# Latency in ms with about three significant digits.
ms() { awk -v v="$1" 'BEGIN {f = v >= 100 ? "%.0f" : v >= 10 ? "%.1f" : v >= 1 ? "%.2f" : "%.3f"; printf f, v}'; }
lat() { # key → "median (min–max)"
  local lo hi
  lo=$(values "$1" | head -1); hi=$(values "$1" | tail -1)
  echo "$(ms "$(median "$1" %s)") ($(ms "$lo")–$(ms "$hi"))"
}

# Open loop at fixed rates, from nginx's median closed-loop throughput.
base=${BASE_RPS:-$(median rps/nginx %.0f)}
if [ -n "$LOADS" ] && [ -z "$base" ]; then
  echo "no open-loop runs: nginx is not among TARGETS and BASE_RPS is not set" >&2
  LOADS=''
fi
for round in $(seq "$RUNS"); do
  for load in $LOADS; do
    rate=$((base * load / 100))
    for name in $TARGETS; do
      read -r got p50 p99 p999 bad busy <<<"$(open "$(port_of "$name")" "$rate")"
      for m in got p50 p99 p999 bad busy; do add "$m/$name/$load" "${!m}"; done
      echo "round $round $load % ($rate/s) $name: $got req/s, p50 $p50 p99 $p99 p99.9 $p999 ms, $bad errors, load CPU $busy %" >&2
    done
  done
done

commit=$(git rev-parse --short HEAD 2>/dev/null || echo nogit)
git diff --quiet HEAD -- src 2>/dev/null || commit="$commit (src/ modified)"
mkdir -p bench/results
out="bench/results/$(date -u +%Y-%m-%d)-${commit%% *}-compare-${SIZE}B$([ "$NEWCONN" = 1 ] && echo -newconn || true).md"
{
  conn_kind=$([ "$NEWCONN" = 1 ] && echo "a new connection per request" || echo "keep-alive")
  echo "# DAO vs nginx vs HAProxy, HTTP/1.1 $conn_kind, $SIZE-byte responses"
  echo
  echo "- date: $(date -u +%FT%TZ); commit: $commit"
  echo "- machine: $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "- proxy on CPU $PROXY_CPU (1 worker each); backend + load generator on CPU $LOAD_CPU; $RUNS interleaved rounds"
  echo "- peers: $(nginx -v 2>&1 | cut -d/ -f2), HAProxy $(haproxy -v | head -1 | awk '{print $3}')"
  echo
  echo "Closed loop, \`wrk -t1 -c$CONNS -d$DURATION\`$([ "$NEWCONN" = 1 ] && echo " -H 'Connection: close'" || true). CPU: user + system time of the"
  echo "proxy's processes (for direct: the backend's) over the run, per request served."
  echo
  echo "| target | median req/s | spread | DAO / target | µs CPU / req | spread | DAO / target |"
  echo "|---|---:|---|---:|---:|---|---:|"
  dao_rps=$(median rps/dao %s); dao_cpu=$(median cpu/dao %s)
  for name in $TARGETS; do
    m=$(median "rps/$name" %s); c=$(median "cpu/$name" %s)
    echo "| $name | $(median "rps/$name" %.0f) | $(spread "rps/$name" %.0f) | $(ratio "$dao_rps" "$m") | $(median "cpu/$name" %.2f) | $(spread "cpu/$name" %.2f) | $(ratio "$dao_cpu" "$c") |"
  done
  if [ -n "$LOADS" ]; then
    echo
    echo "Open loop at fixed rates, \`dao-loadgen -t1 -c$CONNS -d$OPEN_DURATION --warmup $WARMUP -R RATE --timer $TIMER\`$([ "$NEWCONN" = 1 ] && echo " --no-keepalive" || true),"
    echo "rates as % of nginx's median closed-loop req/s above ($base). Latency corrected for coordinated"
    echo "omission, in ms: median (min–max). errors: failed or non-2xx responses, all rounds. load CPU:"
    echo "busy % of CPU $LOAD_CPU (generator + backend): near 100 % the generator itself adds latency."
    echo
    echo "| load | target | req/s | p50 ms | p99 ms | p99.9 ms | errors | load CPU % |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|"
    for load in $LOADS; do
      rate=$((base * load / 100)); first="$load % ($rate/s)"
      for name in $TARGETS; do
        got=$(median "got/$name/$load" %.0f)
        short=$(awk -v g="$got" -v r="$rate" 'BEGIN {if (g < 0.99 * r) print " (short)"}')
        bad=$(values "bad/$name/$load" | awk '{s += $1} END {print s}')
        echo "| $first | $name | $got$short | $(lat "p50/$name/$load") | $(lat "p99/$name/$load") | $(lat "p999/$name/$load") | $bad | $(median "busy/$name/$load" %.0f) |"
        first=''
      done
      for peer in nginx haproxy; do
        [[ " $TARGETS " == *" dao "* && " $TARGETS " == *" $peer "* ]] || continue
        r=(); for q in p50 p99 p999; do r+=("$(ratio "$(median "$q/dao/$load" %s)" "$(median "$q/$peer/$load" %s)")"); done
        echo "| | DAO / $peer | | ${r[0]} | ${r[1]} | ${r[2]} | | |"
      done
    done
  fi
  if [ "$IDLE_CONNS" -gt 0 ]; then
    echo
    echo "Memory per idle keep-alive connection ($IDLE_CONNS connections, one request each, then idle; RSS of the proxy's processes):"
    echo
    echo "- dao: $(python3 bench/idle_memory.py "127.0.0.1:$dport" "$IDLE_CONNS" $dao_pid)"
    echo "- nginx: $(python3 bench/idle_memory.py "127.0.0.1:$nport" "$IDLE_CONNS" $nginx_pids)"
    echo "- haproxy: $(python3 bench/idle_memory.py "127.0.0.1:$hport" "$IDLE_CONNS" $haproxy_pid)"
  fi
} | tee "$out"
echo "written to $out" >&2
