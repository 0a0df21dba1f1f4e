#!/usr/bin/env bash
# make soak: runs one log (posix, its own temp directory, plaintext on
# loopback) under a steady append load and prints, every SOAK_INTERVAL, its
# RSS (and its anonymous and file-backed parts), Go heap in use and
# goroutines, then the series' spread after warm-up.
#
#   SOAK_DURATION  total run (default 1h)
#   SOAK_INTERVAL  sampling period (default 30s)
#   SOAK_RATE      records/s offered (default 6000, the rate of the run in
#                  issue #19 whose RSS doubled; for the issue's "half the
#                  saturation rate", set half of what `make bench` reports
#                  for AppendBatch on your machine)
#   SOAK_WARMUP    samples ignored before judging flatness (default 10: at
#                  6k records/s the dedup LRU, the antispam index's memtables
#                  and its block cache fill in the first ~5 minutes)
#   SOAK_FLAGS     extra `cairn log serve` flags, e.g. --dedup-cache-entries 65536
#
# The load is `cairn submit --batch`: once a second, SOAK_RATE 256-byte JSON
# lines in AppendBatch calls of 1000. A second whose call runs long is not
# made up, so the achieved rate is printed too. Exit status 1 if RSS is not
# within ±10% of its post-warm-up mean, or exceeds 512 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${SOAK_DURATION:-1h}
INTERVAL=${SOAK_INTERVAL:-30s}
RATE=${SOAK_RATE:-6000}
WARMUP=${SOAK_WARMUP:-10}
secs() { # 90s, 10m, 1h → seconds
  local v=$1
  case $v in
    *h) echo $(( ${v%h} * 3600 )) ;; *m) echo $(( ${v%m} * 60 )) ;; *s) echo "${v%s}" ;; *) echo "$v" ;;
  esac
}
dur=$(secs "$DURATION"); step=$(secs "$INTERVAL")
BIN=${CAIRN_BIN:-bin/cairn}
[ -x "$BIN" ] || CGO_ENABLED=0 go build -o "$BIN" ./cmd/cairn
work=$(mktemp -d)
pick_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
http=127.0.0.1:$(pick_port); grpc=127.0.0.1:$(pick_port); debug=127.0.0.1:$(pick_port)
"$BIN" keygen --name soak.example/log --out "$work/log" >/dev/null
# shellcheck disable=SC2086
"$BIN" log serve --origin soak.example/log --key "$work/log.key" --storage "posix:$work/data" \
  --http "$http" --grpc "$grpc" --debug-addr "$debug" --insecure-plaintext --log-level warn ${SOAK_FLAGS:-} \
  2>"$work/log.err" &
log_pid=$!
load_pid=
cleanup() {
  local rc=$?
  if [ -n "$load_pid" ]; then
    # The load loop and the submit it is running (children first: once the
    # loop is gone they would be orphans).
    kill $(pgrep -P "$load_pid") "$load_pid" 2>/dev/null
    wait "$load_pid" 2>/dev/null || true
  fi
  kill "$log_pid" 2>/dev/null; wait "$log_pid" 2>/dev/null || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "http://$http/checkpoint" >/dev/null && break; sleep 0.1; done
curl -sf "http://$http/checkpoint" >/dev/null || { echo "soak: the log did not start:"; cat "$work/log.err"; exit 2; }

# The load: one batch of RATE records a second.
(
  pad=$(printf '%0200d' 0)
  i=0
  while :; do
    t0=$(date +%s%N)
    seq "$i" $((i + RATE - 1)) | awk -v pad="$pad" '{ printf "{\"soak\":%d,\"pad\":\"%s\"}\n", $1, pad }' |
      "$BIN" submit --grpc "$grpc" --insecure-plaintext --content-type application/json --batch - >/dev/null ||
      echo "soak: a batch failed" >&2
    i=$((i + RATE))
    left=$(( 1000000000 - ($(date +%s%N) - t0) ))
    [ "$left" -gt 0 ] && sleep "$(printf '0.%09d' "$left")"
  done
) &
load_pid=$!

metric() { curl -sf "http://$http/metrics" | awk -v m="$1" '$1 == m { printf "%.0f", $2 }'; }
echo "== soak: $DURATION at $RATE records/s offered, sampling every $INTERVAL ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%8s %10s %10s %10s %10s %10s %12s %10s\n' elapsed rss_mib anon_mib file_mib heap_mib goroutines tree_size rate/s
start=$(date +%s); last_size=0; last_t=$start
rss_series=(); anon_series=()
while :; do
  sleep "$step"
  now=$(date +%s)
  rss_kib=$(awk '/^VmRSS:/ { print $2 }' "/proc/$log_pid/status")
  # Anonymous: the Go heap, the runtime and the antispam index's Pebble
  # cache and memtables; file-backed: mapped files (the binary; the index's
  # tables are read with pread, not mapped).
  anon_kib=$(awk '/^RssAnon:/ { print $2 }' "/proc/$log_pid/status")
  file_kib=$(awk '/^RssFile:/ { print $2 }' "/proc/$log_pid/status")
  heap=$(metric go_memstats_heap_inuse_bytes)
  gor=$(metric go_goroutines)
  size=$(metric cairn_log_tree_size_entries)
  rate=$(( (size - last_size) / (now - last_t) ))
  last_size=$size; last_t=$now
  rss_series+=("$rss_kib"); anon_series+=("$anon_kib")
  printf '%7ds %10.1f %10.1f %10.1f %10.1f %10s %12s %10s\n' $((now - start)) "$(echo "$rss_kib/1024" | bc -l)" "$(echo "$anon_kib/1024" | bc -l)" "$(echo "$file_kib/1024" | bc -l)" "$(echo "$heap/1048576" | bc -l)" "$gor" "$size" "$rate"
  [ $((now - start)) -ge "$dur" ] && break
done
# The anonymous part alone, for the record (the verdict is on RSS).
printf '%s\n' "${anon_series[@]}" | awk -v warm="$WARMUP" '
  NR > warm { n++; s += $1; if (min == "" || $1 < min) min = $1; if ($1 > max) max = $1 }
  END {
    if (n == 0) exit 0
    mean = s / n
    printf "== anonymous RSS after %d warm-up samples: mean %.1f MiB, min %.1f, max %.1f (%+.1f%% / %+.1f%% of mean)\n", warm, mean/1024, min/1024, max/1024, (min-mean)*100/mean, (max-mean)*100/mean
  }'
printf '%s\n' "${rss_series[@]}" | awk -v warm="$WARMUP" '
  NR > warm { n++; s += $1; if (min == "" || $1 < min) min = $1; if ($1 > max) max = $1 }
  END {
    if (n == 0) { print "soak: too few samples after warm-up to judge"; exit 0 }
    mean = s / n
    printf "== RSS after %d warm-up samples: mean %.1f MiB, min %.1f, max %.1f (%+.1f%% / %+.1f%% of mean)\n", warm, mean/1024, min/1024, max/1024, (min-mean)*100/mean, (max-mean)*100/mean
    bad = (max > mean * 1.1 || min < mean * 0.9 || max > 512 * 1024)
    print (bad ? "== NOT flat within ±10% under 512 MiB" : "== flat within ±10%, under 512 MiB")
    exit bad
  }'
