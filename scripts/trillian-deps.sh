#!/usr/bin/env bash
# Installs what the Trillian migration tests need, when it is missing: the
# Trillian v1 log server, log signer and createtree at the pinned release,
# built with `go install` into a cache directory (a few minutes the first
# time, reused afterwards). They run on the MariaDB that scripts/ha-deps.sh
# installs. Prints nothing on success when everything is already there.
set -euo pipefail

TRILLIAN_VERSION=v1.7.3
CACHE_BIN="${CAIRN_CACHE_BIN:-$HOME/.cache/cairn/bin}/trillian-$TRILLIAN_VERSION"

missing=0
for b in trillian_log_server trillian_log_signer createtree; do
  [ -x "$CACHE_BIN/$b" ] || missing=1
done
if [ "$missing" = 1 ]; then
  echo "trillian-deps: building Trillian $TRILLIAN_VERSION into $CACHE_BIN (a few minutes, once)" >&2
  mkdir -p "$CACHE_BIN"
  tmp=$(mktemp -d)
  # Built outside the project so its dependencies never touch our go.mod.
  (cd "$tmp" && GOBIN="$CACHE_BIN" GOFLAGS= go install \
    "github.com/google/trillian/cmd/trillian_log_server@$TRILLIAN_VERSION" \
    "github.com/google/trillian/cmd/trillian_log_signer@$TRILLIAN_VERSION" \
    "github.com/google/trillian/cmd/createtree@$TRILLIAN_VERSION")
  rm -rf "$tmp"
fi
