#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind (hardware counters
# are not available here). DAO runs under valgrind with one worker and
# exits by itself after N responses; the difference between two values of
# N removes start-up and shutdown. nginx is measured the same way (stopped
# with SIGQUIT after wrk) as the peer.
#
#   bash perf/callgrind.sh               # N1=2000 N2=12000
#   NGINX=0 DAO_EXTRA='[telemetry]\nenabled = false\nrequest_id = false' bash perf/callgrind.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N1=${N1:-2000}
N2=${N2:-12000}
# One connection: every request takes the same path through the event loop,
# so the count repeats from run to run (more connections batch unevenly).
CONNS=${CONNS:-1}
# TOML appended to DAO's config (e.g. '[telemetry]\nenabled = false' to
# measure without Sense); NGINX=0 skips the nginx measurement.
DAO_EXTRA=${DAO_EXTRA:-}
# Extra wrk arguments (DAO's runs), e.g. WRK_ARGS='-H "Authorization: Bearer …"'.
WRK_ARGS=${WRK_ARGS:-}
eval "wrk_args=($WRK_ARGS)"
NGINX=${NGINX:-1}
BIN=${CARGO_TARGET_DIR:-target}/release
need() { command -v "$1" >/dev/null 2>&1; }
if ! need valgrind || ! need wrk || ! need nginx; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind wrk nginx-light >/dev/null
fi
cargo build --release -q -p dao -p dao-bench
source bench/lib.sh

start_backend backend 1

total() { # callgrind out file → total Ir
  awk '/^summary:/ {print $2}' "$1"
}

dao_ir() { # N → Ir
  local port; port=$(free_port)
  printf '[server]\nbind = "127.0.0.1:%s"\nworkers = 1\n[[routes.rule]]\nname = "b"\n[[routes.rule.upstreams]]\nname = "b"\nurl = "http://%s"\n%b\n' "$port" "$backend" "$DAO_EXTRA" > "$work/dao.toml"
  taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$work/dao.$1.out" \
    "$BIN/dao" --config "$work/dao.toml" --exit-after-requests "$1" >/dev/null 2>"$work/dao.$1.log" &
  local pid=$!
  wait_port "$port" 60
  taskset -c 1 wrk -t1 -c"$CONNS" -d600s "${wrk_args[@]}" "http://127.0.0.1:$port/" >/dev/null 2>&1 &
  local wrk=$!
  wait "$pid" || true
  kill "$wrk" 2>/dev/null || true; wait "$wrk" 2>/dev/null || true
  total "$work/dao.$1.out"
}

nginx_ir() { # seconds → "Ir requests"
  local port; port=$(free_port)
  mkdir -p "$work/ngx"
  cat > "$work/nginx.conf" <<CONF
worker_processes 1; master_process off; daemon off;
pid $work/nginx.pid; error_log $work/ngx/error.log warn;
events { worker_connections 1024; }
http { access_log off;
  client_body_temp_path $work/ngx; proxy_temp_path $work/ngx; fastcgi_temp_path $work/ngx; uwsgi_temp_path $work/ngx; scgi_temp_path $work/ngx;
  upstream backend { server $backend; keepalive 64; }
  server { listen 127.0.0.1:$port;
    location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
  taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$work/nginx.$1.out" nginx -c "$work/nginx.conf" >/dev/null 2>&1 &
  local pid=$!
  wait_port "$port"
  local reqs
  reqs=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$1"s "http://127.0.0.1:$port/" 2>/dev/null | awk '/requests in/ {print $1}')
  kill -QUIT "$pid"; wait "$pid" || true
  echo "$(total "$work/nginx.$1.out") $reqs"
}

a=$(dao_ir "$N1"); b=$(dao_ir "$N2")
dao_per=$(( (b - a) / (N2 - N1) ))
echo "DAO:   $dao_per instructions per proxied request ($N1 → $N2 requests: $a → $b Ir)"
[ -n "${KEEP:-}" ] && cp "$work/dao.$N2.out" "${KEEP}" && echo "callgrind profile kept in $KEEP"
[ "$NGINX" = 1 ] || exit 0
read -r na ra <<<"$(nginx_ir 5)"; read -r nb rb <<<"$(nginx_ir 15)"
nginx_per=$(( (nb - na) / (rb - ra) ))
echo "nginx: $nginx_per instructions per proxied request ($ra → $rb requests: $na → $nb Ir)"
awk -v d="$dao_per" -v n="$nginx_per" 'BEGIN {printf "DAO / nginx: %.2f\n", d/n}'
exit 0
