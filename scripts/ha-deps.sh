#!/usr/bin/env bash
# Installs what the mysql+s3 mode needs locally, when it is missing:
#   - MariaDB from Debian (mariadb-server; never started through systemd);
#   - MinIO, which has no Debian package: a pinned version built with
#     `go install` into a cache directory (about 5 minutes the first time,
#     reused afterwards).
# Prints nothing on success when everything is already there.
set -euo pipefail

MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
CACHE_BIN="${CAIRN_CACHE_BIN:-$HOME/.cache/cairn/bin}"

if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  echo "ha-deps: installing mariadb-server (Debian)" >&2
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d keeps the package from starting a system-wide server.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get install -y -qq mariadb-server >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq mariadb-server >/dev/null; }
fi

if [ ! -x "$CACHE_BIN/minio" ]; then
  echo "ha-deps: building MinIO $MINIO_VERSION into $CACHE_BIN (about 5 minutes, once)" >&2
  mkdir -p "$CACHE_BIN"
  tmp=$(mktemp -d)
  # Built outside the project so its dependencies never touch our go.mod.
  (cd "$tmp" && GOBIN="$CACHE_BIN" GOFLAGS= go install "github.com/minio/minio@$MINIO_VERSION")
  rm -rf "$tmp"
fi
