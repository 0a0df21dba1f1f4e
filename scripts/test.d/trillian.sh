#!/usr/bin/env bash
# The migration tests (integration/migrate_test.go) run a real Trillian.
set -euo pipefail
bash "$(dirname "$0")/../trillian-deps.sh"
