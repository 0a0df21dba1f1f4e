#!/usr/bin/env bash
# Runs every test: vet, unit tests (with fuzz seed corpora), integration tests.
# Installs what the tests need when it is missing (CI starts from a clean machine).
set -euo pipefail
cd "$(dirname "$0")/.."
for s in scripts/test.d/*.sh; do
  if [ -e "$s" ]; then bash "$s"; fi
done
# The mysql+s3 tests need MariaDB and MinIO: install them, then require them.
bash scripts/ha-deps.sh
export CAIRN_REQUIRE_HA=1
# scripts/test.d/chromium.sh installed the explorer's browser: require it.
export CAIRN_REQUIRE_BROWSER=1
go vet ./...
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted"; exit 1; fi
CGO_ENABLED=0 go build -o bin/cairn ./cmd/cairn
CAIRN_BIN="$PWD/bin/cairn" go test -count=1 -timeout 18m ./...
