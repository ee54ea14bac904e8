#!/usr/bin/env bash
# Side-by-side: DAO (1 worker), nginx (1 worker) and HAProxy (nbthread 1)
# in front of the same backend. Proxy pinned to CPU 0; backend and wrk on
# CPU 1. Interleaved rounds; prints medians and ratios, and writes them to
# bench/results/.
#
#   bash bench/compare.sh            # RUNS=5 DURATION=10s CONNS=64 by default
#   RUNS=3 DURATION=5s TARGETS="dao nginx" bash bench/compare.sh
#   SIZE=16384 bash bench/compare.sh; SIZE=1048576 bash bench/compare.sh; NEWCONN=1 bash bench/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
TARGETS=${TARGETS:-dao nginx haproxy direct}
DAO_BIN=${DAO_BIN:-./target/release/dao}
IDLE_CONNS=${IDLE_CONNS:-3000}
SIZE=${SIZE:-13}          # response body bytes (13, 16384, 1048576, ...)
NEWCONN=${NEWCONN:-0}     # 1: a new client connection per request

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx || ! need haproxy; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light haproxy >/dev/null
fi
cargo build --release -q -p dao -p dao-bench

work=$(mktemp -d /tmp/dao-bench.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

# Backend.
taskset -c "$LOAD_CPU" ./target/release/dao-bench-backend --cpu "$LOAD_CPU" --size "$SIZE" > "$work/backend.addr" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/backend.addr" ] && break; sleep 0.05; done
backend=$(head -1 "$work/backend.addr")
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

wrk_extra=()
[ "$NEWCONN" = 1 ] && wrk_extra=(-H "Connection: close")
run() { # name port → req/s
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "${wrk_extra[@]}" "http://127.0.0.1:$2/" 2>/dev/null \
    | awk '/Requests\/sec/ {print $2}'
}
declare -A results
for name in dao nginx haproxy direct; do results[$name]=""; done
for round in $(seq "$RUNS"); do
  for name in $TARGETS; do
    case $name in dao) p=$dport;; nginx) p=$nport;; haproxy) p=$hport;; direct) p=$bport;; esac
    r=$(run "$name" "$p")
    results[$name]="${results[$name]} $r"
    echo "round $round $name $r req/s" >&2
  done
done

median() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.0f", m}'; }
spread() { tr ' ' '\n' | { grep -v '^$' || true; } | sort -g | awk 'NR==1{lo=$1} {hi=$1} END {printf "%.0f–%.0f", lo, hi}'; }
dao_m=$(echo "${results[dao]}" | median)

mkdir -p bench/results
out="bench/results/$(date -u +%Y-%m-%d)-$(git rev-parse --short HEAD 2>/dev/null || echo nogit)-compare-${SIZE}B$([ "$NEWCONN" = 1 ] && echo -newconn || true).md"
{
  conn_kind=$([ "$NEWCONN" = 1 ] && echo "a new connection per request" || echo "keep-alive")
  echo "# DAO vs nginx vs HAProxy, HTTP/1.1 $conn_kind, $SIZE-byte responses"
  echo
  echo "- date: $(date -u +%FT%TZ); commit: $(git rev-parse --short HEAD 2>/dev/null || echo none)"
  echo "- machine: $(nproc) cores, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo "- proxy on CPU $PROXY_CPU (1 worker each); backend + \`wrk -t1 -c$CONNS -d$DURATION\` on CPU $LOAD_CPU; $RUNS interleaved rounds"
  echo "- peers: $(nginx -v 2>&1 | cut -d/ -f2), HAProxy $(haproxy -v | head -1 | awk '{print $3}')"
  echo
  echo "| target | median req/s | spread | DAO / target |"
  echo "|---|---:|---|---:|"
  for name in $TARGETS; do
    m=$(echo "${results[$name]}" | median)
    echo "| $name | $m | $(echo "${results[$name]}" | spread) | $(awk -v a="$dao_m" -v b="$m" 'BEGIN {printf "%.2f", a/b}') |"
  done
  if [ "$IDLE_CONNS" -gt 0 ]; then
    echo
    echo "Memory per idle keep-alive connection ($IDLE_CONNS connections, one request each, then idle; RSS of the proxy's processes):"
    echo
    # nginx: master and worker; the master does not grow.
    nginx_pids="$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')"
    echo "- dao: $(python3 bench/idle_memory.py "127.0.0.1:$dport" "$IDLE_CONNS" $dao_pid)"
    echo "- nginx: $(python3 bench/idle_memory.py "127.0.0.1:$nport" "$IDLE_CONNS" $nginx_pids)"
    echo "- haproxy: $(python3 bench/idle_memory.py "127.0.0.1:$hport" "$IDLE_CONNS" $haproxy_pid)"
  fi
} | tee "$out"
echo "written to $out" >&2
