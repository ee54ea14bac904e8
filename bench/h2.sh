#!/usr/bin/env bash
# HTTP/2 from clients, side by side: h2load (h2c, prior knowledge) against
# DAO (1 worker) and nginx (1 worker, `listen PORT http2`) in front of the
# same backend (over HTTP/1.1 keep-alive); DAO over HTTP/1.1 with wrk for
# reference. Proxy pinned to CPU 0; backend and load generator on CPU 1.
# Runs interleaved, medians printed.
#
#   bash bench/h2.sh                 # RUNS=3 REQUESTS=200000 CONNS=64 STREAMS=10
#   BUILD=0 RUNS=5 bash bench/h2.sh
#   SIZE=1048576 REQUESTS=3000 CONNS=4 STREAMS=1 bash bench/h2.sh   # large bodies: bytes/s
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
SIZE=${SIZE:-13}          # response body bytes
REQUESTS=${REQUESTS:-200000}
CONNS=${CONNS:-64}
STREAMS=${STREAMS:-10}
DURATION=${DURATION:-10s}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BIN=${CARGO_TARGET_DIR:-target}/release
BUILD=${BUILD:-1}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx || ! need h2load; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light nghttp2-client >/dev/null
fi
[ "$BUILD" = 1 ] && cargo build --release -q -p dao -p dao-bench

source bench/lib.sh

start_backend backend "$LOAD_CPU" --size "$SIZE"

dport=$(free_port)
cat > "$work/dao.toml" <<CONF
[server]
bind = "127.0.0.1:$dport"
workers = 1
[proxy]
pool_max_idle = 1024
[[routes.rule]]
name = "bench"
  [[routes.rule.upstreams]]
  name = "backend"
  url = "http://$backend"
CONF
taskset -c "$PROXY_CPU" "$BIN/dao" --config "$work/dao.toml" > /dev/null 2> "$work/dao.log" &
pids+=($!)

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
  http2_max_concurrent_streams 128;
  keepalive_requests 10000000;
  upstream backend { server $backend; keepalive 1024; }
  server {
    listen 127.0.0.1:$nport http2;
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
wait_port "$dport"
wait_port "$nport"

# h2load's req/s for PORT.
h2() {
  taskset -c "$LOAD_CPU" h2load -n "$REQUESTS" -c "$CONNS" -m "$STREAMS" "http://127.0.0.1:$1/" 2>&1 |
    tee "$work/h2load.$1.log" | awk '/^finished in/ { print $4 }'
}
h1() {
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$1/" | awk '/^Requests\/sec/ { print $2 }'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Warm-up.
taskset -c "$LOAD_CPU" h2load -n 20000 -c "$CONNS" -m "$STREAMS" "http://127.0.0.1:$dport/" > /dev/null
taskset -c "$LOAD_CPU" h2load -n 20000 -c "$CONNS" -m "$STREAMS" "http://127.0.0.1:$nport/" > /dev/null

: > "$work/dao-h2"; : > "$work/nginx-h2"; : > "$work/dao-h1"
for round in $(seq "$RUNS"); do
  d=$(h2 "$dport"); n=$(h2 "$nport"); w=$(h1 "$dport")
  grep -q "$REQUESTS succeeded" "$work/h2load.$dport.log" || { echo "DAO: not all succeeded" >&2; cat "$work/h2load.$dport.log" >&2; }
  grep -q "$REQUESTS succeeded" "$work/h2load.$nport.log" || { echo "nginx: not all succeeded" >&2; cat "$work/h2load.$nport.log" >&2; }
  echo "round $round: DAO h2c $d req/s, nginx h2c $n req/s, DAO h1 (wrk) $w req/s"
  echo "$d" >> "$work/dao-h2"; echo "$n" >> "$work/nginx-h2"; echo "$w" >> "$work/dao-h1"
done
echo "medians of $RUNS ($SIZE-byte bodies): DAO h2c $(median < "$work/dao-h2") req/s; nginx h2c $(median < "$work/nginx-h2") req/s;" \
  "DAO h1 wrk -c$CONNS $(median < "$work/dao-h1") req/s"
for side in dao-h2 nginx-h2 dao-h1; do
  echo "  $side: $(median < "$work/$side" | awk -v s="$SIZE" '{ printf "%.1f MB/s of bodies", $1 * s / 1e6 }')"
done
echo "(h2load -n $REQUESTS -c $CONNS -m $STREAMS; proxy on CPU $PROXY_CPU, backend and load on CPU $LOAD_CPU)"
