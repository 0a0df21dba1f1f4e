#!/usr/bin/env bash
# Migration rate from a local Trillian v1 log (integration/migrate_bench_test.go):
# a real trillian_log_server and signer on MariaDB, copied into posix and mysql+s3.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/trillian-deps.sh
CGO_ENABLED=0 go build -o bin/cairn ./cmd/cairn
CAIRN_BIN="$PWD/bin/cairn" CAIRN_REQUIRE_HA=1 go test -count=1 -run '^$' -bench BenchmarkMigrateTrillian -benchtime 1x -timeout 20m ./integration 2>/dev/null |
  grep -E '^(Benchmark|ok|FAIL|---)' || true
