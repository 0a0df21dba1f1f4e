# Cairn build, run, test and benchmark entry points.
GO            ?= go
BIN           := bin/cairn
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
# staticcheck pinned: the v0.8 line is the one that supports Go 1.26.
STATICCHECK_VERSION := v0.8.2
TOOLS         := $(CURDIR)/.tools

.PHONY: all build run run-ha test race bench soak proto wasm vet lint fmt clean

all: build

# The binary is built without cgo: static, and Pebble (the posix antispam
# index) then keeps its block cache and memtables in the Go heap, where RSS
# stays flat; with cgo they come from C's allocator, whose freed blocks made
# RSS creep up over an hour (docs/log.md, Memory).
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/cairn

# make run: one local Cairn with its embedded defaults, state under ./data/.
run: build
	$(BIN) dev --data ./data

# make run-ha: the same with the log as two frontends on MariaDB + MinIO
# (mysql+s3); installs them first when missing (MinIO builds once, ~5 min).
run-ha: build
	bash scripts/ha-deps.sh
	$(BIN) dev --ha --data ./data-ha

test:
	bash scripts/test.sh

# make race: every test under the race detector, the integration suite
# against a race-built binary that halts on the first race (~8 min).
race:
	bash scripts/ha-deps.sh
	$(GO) build -race -o bin/cairn-race ./cmd/cairn
	CAIRN_REQUIRE_HA=1 GORACE=halt_on_error=1 CAIRN_BIN=$(CURDIR)/bin/cairn-race \
		$(GO) test -race -count=1 -timeout 30m ./...

bench: build
	bash scripts/bench.sh

# make soak: one log under a steady load for SOAK_DURATION (default 1h),
# printing RSS, heap and goroutines every 30s (scripts/soak.sh lists the knobs).
soak: build
	bash scripts/soak.sh

# make proto regenerates proto/cairn/v1 with pinned plugins (needs protoc:
# apt-get install protobuf-compiler). Generated code is committed.
proto:
	command -v protoc >/dev/null || (apt-get update -qq && apt-get install -y -qq protobuf-compiler)
	GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO_GRPC)
	PATH=$(TOOLS):$$PATH protoc --proto_path=proto \
		--go_out=proto --go_opt=paths=source_relative \
		--go-grpc_out=proto --go-grpc_opt=paths=source_relative \
		proto/cairn/v1/log.proto proto/cairn/v1/index.proto

# make wasm rebuilds the explorer's receipt verifier (ui/wasm → ui/assets/
# verify.wasm) and copies the toolchain's wasm_exec.js beside it. Both are
# committed, like the generated proto code; ui's TestCommittedWasmIsFresh
# fails when they are stale.
wasm:
	GOOS=js GOARCH=wasm $(GO) build -trimpath -ldflags='-s -w' -o ui/assets/verify.wasm ./ui/wasm
	cp "$$($(GO) env GOROOT)/lib/wasm/wasm_exec.js" ui/assets/wasm_exec.js
	$(GO) env GOVERSION > ui/wasm/toolchain.txt

vet:
	$(GO) vet ./...

# make lint: go vet, gofmt and staticcheck (the pinned version, installed
# into .tools/ once per version).
lint: vet $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)
	$(TOOLS)/staticcheck-$(STATICCHECK_VERSION) ./...

$(TOOLS)/staticcheck-$(STATICCHECK_VERSION):
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(TOOLS)/staticcheck $@

fmt:
	gofmt -l -w $$(git ls-files '*.go')

clean:
	rm -rf bin .tools
