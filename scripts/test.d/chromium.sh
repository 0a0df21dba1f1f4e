#!/usr/bin/env bash
# The explorer's browser tests (integration/explorer_test.go) drive Debian's
# headless Chromium: install it when missing. CAIRN_REQUIRE_BROWSER=1 makes
# those tests fail rather than skip without it.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
