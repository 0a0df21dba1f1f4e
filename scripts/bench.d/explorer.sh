#!/usr/bin/env bash
# The explorer (docs/explorer.md): one receipt verification natively
# (format/receipt.Verify, what the WebAssembly verifier runs per receipt or
# search hit), and the sizes the browser downloads.
set -euo pipefail
cd "$(dirname "$0")/../.."
go test -count=1 -run '^$' -bench BenchmarkVerify -benchtime 2s ./format/receipt | grep -E '^(Benchmark|ok|FAIL)' || true
first=$(cat ui/assets/index.html ui/assets/app.js ui/assets/app.css | wc -c)
wasm=$(wc -c < ui/assets/verify.wasm)
wasmgz=$(gzip -9 -c ui/assets/verify.wasm | wc -c)
echo "explorer first-load assets: ${first} bytes (index.html + app.js + app.css, uncompressed)"
echo "explorer verifier: ${wasm} bytes (${wasmgz} gzipped), loaded only when verifying"
