#!/usr/bin/env bash
# A short fuzz run of the HTTP/1.1 parsers (cargo-fuzz, nightly toolchain).
#   bash scripts/fuzz.sh            # 60 s per target
#   SECONDS_PER_TARGET=600 bash scripts/fuzz.sh
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
T=${SECONDS_PER_TARGET:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo +nightly install cargo-fuzz
for target in h1_request h1_chunked; do
  echo "== $target for ${T}s"
  cargo +nightly fuzz run "$target" -- -max_total_time="$T" -max_len=4096
done
