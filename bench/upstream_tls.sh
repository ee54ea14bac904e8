#!/usr/bin/env bash
# TLS to upstreams, side by side: DAO (1 worker), nginx (1 worker) and
# HAProxy (1 thread) proxying plain HTTP/1.1 clients to the same HTTPS
# backend (nginx serving a small body over TLS 1.3, ECDSA P-256), each
# verifying the backend's certificate and keeping TLS connections alive
# (nginx: `keepalive` + `proxy_ssl_session_reuse`; HAProxy: `http-reuse
# always`). Proxy pinned to CPU 0; backend and wrk on CPU 1. Runs
# interleaved, medians printed. NEWCONN=1: the backend closes after every
# response, so each request pays a TLS handshake to the upstream (session
# resumption allowed for all three).
#
#   bash bench/upstream_tls.sh            # RUNS=3 CONNS=32 DURATION=10s
#   NEWCONN=1 bash bench/upstream_tls.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
CONNS=${CONNS:-32}
DURATION=${DURATION:-10s}
NEWCONN=${NEWCONN:-0}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BIN=${CARGO_TARGET_DIR:-target}/release
BUILD=${BUILD:-1}

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need nginx || ! need haproxy || ! need openssl; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx-light haproxy openssl >/dev/null
fi
[ "$BUILD" = 1 ] && cargo build --release -q -p dao

source bench/lib.sh

bash scripts/dev-certs.sh "$work/certs" > /dev/null
ca="$work/certs/ca.pem"

# The HTTPS backend: nginx on the load CPU.
bport=$(free_port)
mkdir -p "$work/b"
if [ "$NEWCONN" = 1 ]; then keep="keepalive_timeout 0;"; else keep="keepalive_requests 10000000;"; fi
cat > "$work/backend.conf" <<CONF
worker_processes 1;
worker_cpu_affinity 1$(printf '%*s' "$LOAD_CPU" '' | tr ' ' 0);
pid $work/b/nginx.pid;
error_log $work/b/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/b; proxy_temp_path $work/b;
  fastcgi_temp_path $work/b; uwsgi_temp_path $work/b; scgi_temp_path $work/b;
  $keep
  server {
    listen 127.0.0.1:$bport ssl;
    ssl_certificate $work/certs/server.pem;
    ssl_certificate_key $work/certs/server.key;
    ssl_protocols TLSv1.3;
    location / { return 200 "hello, world!"; }
  }
}
CONF
taskset -c "$LOAD_CPU" nginx -c "$work/backend.conf" -g 'daemon off;' &
pids+=($!)

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
  url = "https://localhost:$bport"
  [routes.rule.upstreams.tls]
  ca = "$ca"
CONF
taskset -c "$PROXY_CPU" "$BIN/dao" --config "$work/dao.toml" > /dev/null 2> "$work/dao.log" &
pids+=($!)
dao_pid=$!

nport=$(free_port)
mkdir -p "$work/n"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
worker_cpu_affinity 1$(printf '%*s' "$PROXY_CPU" '' | tr ' ' 0);
pid $work/n/nginx.pid;
error_log $work/n/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/n; proxy_temp_path $work/n;
  fastcgi_temp_path $work/n; uwsgi_temp_path $work/n; scgi_temp_path $work/n;
  keepalive_requests 10000000;
  upstream backend { server 127.0.0.1:$bport; keepalive 1024; }
  server {
    listen 127.0.0.1:$nport;
    location / {
      proxy_pass https://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_protocols TLSv1.2 TLSv1.3;
      proxy_ssl_verify on;
      proxy_ssl_trusted_certificate $ca;
      proxy_ssl_name localhost;
      proxy_ssl_server_name on;
      proxy_ssl_session_reuse on;
    }
  }
}
CONF
taskset -c "$PROXY_CPU" nginx -c "$work/nginx.conf" -g 'daemon off;' &
pids+=($!)
nginx_pid=$!

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
  server s1 127.0.0.1:$bport ssl verify required ca-file $ca sni str(localhost) verifyhost localhost alpn http/1.1
CONF
taskset -c "$PROXY_CPU" haproxy -f "$work/haproxy.cfg" -q &
pids+=($!)
haproxy_pid=$!

wait_port "$bport"; wait_port "$dport"; wait_port "$nport"; wait_port "$hport"
for p in "$dport" "$nport" "$hport"; do
  body=$(curl -s "http://127.0.0.1:$p/")
  [ "$body" = "hello, world!" ] || { echo "port $p answered: $body" >&2; cat "$work/dao.log" "$work/n/error.log" >&2; exit 1; }
done

# nginx: master and worker (the master does no request work).
nginx_pids="$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')"
# CPU time (user + system, all threads) of the given processes, in clock
# ticks; the fields after the "(comm)" of /proc/PID/stat start at state.
cpu_ticks() { for p in "$@"; do sed 's/.*) //' "/proc/$p/stat"; done | awk '{t += $12 + $13} END {print t}'; }
clk_tck=$(getconf CLK_TCK)

run() { # PORT PIDS… → "req/s errors proxy-CPU-µs-per-request"
  local port=$1; shift
  local before after rps bad
  before=$(cpu_ticks "$@")
  taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$port/" > "$work/wrk.$port" 2>&1
  after=$(cpu_ticks "$@")
  rps=$(awk '/^Requests\/sec/ { print $2 }' "$work/wrk.$port")
  bad=$(awk '/Non-2xx/ { n += $NF } /Socket errors/ { gsub(",", ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$work/wrk.$port")
  total=$(awk '/requests in/ { print $1 }' "$work/wrk.$port")
  echo "$rps $bad $(awk -v t=$((after - before)) -v hz="$clk_tck" -v n="$total" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')"
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Warm-up.
for p in "$dport" "$nport" "$hport"; do taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$p/" > /dev/null; done

: > "$work/dao"; : > "$work/nginx"; : > "$work/haproxy"
: > "$work/dao.cpu"; : > "$work/nginx.cpu"; : > "$work/haproxy.cpu"
for round in $(seq "$RUNS"); do
  read -r d de dc < <(run "$dport" "$dao_pid")
  # shellcheck disable=SC2086
  read -r n ne nc < <(run "$nport" $nginx_pids)
  read -r h he hc < <(run "$hport" "$haproxy_pid")
  echo "round $round: DAO $d req/s ($de errors, $dc µs CPU/req), nginx $n req/s ($ne errors, $nc µs), HAProxy $h req/s ($he errors, $hc µs)"
  echo "$d" >> "$work/dao"; echo "$n" >> "$work/nginx"; echo "$h" >> "$work/haproxy"
  echo "$dc" >> "$work/dao.cpu"; echo "$nc" >> "$work/nginx.cpu"; echo "$hc" >> "$work/haproxy.cpu"
done
d=$(median < "$work/dao"); n=$(median < "$work/nginx"); h=$(median < "$work/haproxy")
dc=$(median < "$work/dao.cpu"); nc=$(median < "$work/nginx.cpu"); hc=$(median < "$work/haproxy.cpu")
echo "medians of $RUNS: DAO $d req/s ($dc µs CPU/req); nginx $n req/s ($nc µs); HAProxy $h req/s ($hc µs)"
awk -v d="$d" -v n="$n" -v h="$h" 'BEGIN { printf "req/s: DAO/nginx %.2fx, DAO/HAProxy %.2fx\n", d / n, d / h }'
awk -v d="$dc" -v n="$nc" -v h="$hc" 'BEGIN { printf "proxy CPU per request: nginx/DAO %.2fx, HAProxy/DAO %.2fx\n", n / d, h / d }'
echo "(wrk -t1 -c$CONNS -d$DURATION, plain HTTP to the proxy, HTTPS (TLS 1.3, verified) to the backend; NEWCONN=$NEWCONN;"
echo " proxy on CPU $PROXY_CPU, backend nginx and wrk on CPU $LOAD_CPU)"
