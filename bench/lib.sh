# Shared by the bench/ and perf/ scripts (sourced, after `cd` to the repo
# root and BIN set): a work directory and the processes in `pids`, both
# cleaned up at exit; free loopback ports; waiting for a port; starting
# dao-bench-backend.

work=$(mktemp -d "/tmp/dao-$(basename "$0" .sh).XXXXXX")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# A port nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits until 127.0.0.1:PORT accepts, for up to SECONDS (default 5).
wait_port() {
  local tries=$(( ${2:-5} * 20 ))
  for _ in $(seq "$tries"); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "port $1 never opened" >&2; return 1
}

# start_backend NAME CPU [dao-bench-backend flags]: starts a backend pinned
# to CPU; its address goes to the variable NAME, its pid to `backend_pid`.
start_backend() {
  local var=$1 cpu=$2; shift 2
  local file; file=$(mktemp "$work/backend.XXXXXX")
  taskset -c "$cpu" "$BIN/dao-bench-backend" --cpu "$cpu" "$@" > "$file" &
  backend_pid=$!
  pids+=("$backend_pid")
  for _ in $(seq 100); do [ -s "$file" ] && break; sleep 0.05; done
  printf -v "$var" '%s' "$(head -1 "$file")"
}
