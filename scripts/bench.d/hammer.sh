#!/usr/bin/env bash
# POST /add under Tessera's own load generator (internal/hammer of the pinned
# Tessera, built in a scratch module), against `cairn log serve` and against
# Tessera's POSIX example server, in turn: Cairn, Tessera, Cairn, Tessera.
# Each run hammers a fresh log for HAMMER_SECONDS (default 20) from 256
# writers with no readers, then reads the log's size from its checkpoint.
# It runs with the hammer's own share of duplicate leaves (--dup_chance 0.1)
# and without duplicates: the example server batches 256 records or 1 s, and
# a duplicate it resolves in memory does not take a place in the batch, so
# with duplicates its batches wait out the second.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CGO_ENABLED=0
SECONDS_EACH=${HAMMER_SECONDS:-20}
WRITERS=${HAMMER_WRITERS:-256}
TESSERA=github.com/transparency-dev/tessera
VERSION=$(go list -m -f '{{.Version}}' $TESSERA)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The hammer needs its own module: its UI's dependencies are not Cairn's.
( cd "$work" && go mod init hammer.scratch >/dev/null 2>&1 &&
  GOFLAGS=-mod=mod go get "$TESSERA/internal/hammer@$VERSION" >/dev/null 2>&1 &&
  go build -o "$work/hammer" "$TESSERA/internal/hammer" ) || { echo "hammer: cannot build Tessera's hammer $VERSION; skipped"; exit 0; }
go build -o "$work/tessera-posix" "$TESSERA/cmd/conformance/posix"
[ -x bin/cairn ] || go build -o bin/cairn ./cmd/cairn

pick_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# run NAME DUP: starts that server on a fresh directory, hammers it with
# duplicate chance DUP, prints records/s (the log's size over the time).
run() {
  local name=$1 dup=$2 dir http grpc pid vkey t0 t1 size
  dir=$(mktemp -d -p "$work")
  http=127.0.0.1:$(pick_port)
  bin/cairn keygen --name "hammer.example/$name" --out "$dir/log" >/dev/null
  vkey=$(cat "$dir/log.vkey")
  if [ "$name" = cairn ]; then
    grpc=127.0.0.1:$(pick_port)
    bin/cairn log serve --origin "hammer.example/$name" --key "$dir/log.key" --storage "posix:$dir/data" \
      --http "$http" --grpc "$grpc" --insecure-plaintext --log-level warn 2>"$dir/err" &
  else
    "$work/tessera-posix" --storage_dir="$dir/data" --listen="$http" --private_key="$dir/log.key" 2>"$dir/err" &
  fi
  pid=$!
  pids+=("$pid")
  for _ in $(seq 300); do curl -sf "http://$http/checkpoint" >/dev/null && break; sleep 0.1; done
  t0=$(date +%s.%N)
  "$work/hammer" --log_public_key="$vkey" --log_url="http://$http/" --max_read_ops=0 \
    --num_readers_random=0 --num_readers_full=0 --num_writers="$WRITERS" --max_write_ops=1000000 \
    --dup_chance="$dup" --max_runtime="${SECONDS_EACH}s" --show_ui=false >"$dir/hammer.out" 2>&1 || true
  t1=$(date +%s.%N)
  sleep 2 # the last checkpoint (both publish every second)
  size=$(curl -sf "http://$http/checkpoint" | sed -n 2p)
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  awk -v n="${size:-0}" -v t0="$t0" -v t1="$t1" -v name="$name" -v w="$WRITERS" -v d="$dup" \
    'BEGIN { printf "hammer POST /add %-7s dup_chance %-3s %d writers: %d leaves in %.1f s, %.0f records/s\n", name, d, w, n, t1 - t0, n / (t1 - t0) }'
}

echo "== POST /add under Tessera's hammer ($VERSION)"
for dup in 0.1 0; do
  for name in cairn tessera cairn tessera; do run "$name" "$dup"; done
done
