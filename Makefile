# airlock — `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
# Reproducible builds: the WASM tools' digests are pinned in their manifests.
export GOFLAGS := -trimpath -buildvcs=false
BIN := bin/airlock
DATA ?= .airlock
BENCHSTAT := golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  %-12s %s\n",$$1,$$2}' $(MAKEFILE_LIST)

.PHONY: build
build: tools ## build bin/airlock and the WASM tools
	$(GO) build -o $(BIN) ./cmd/airlock

.PHONY: tools
tools: ## compile the bundled Go tools to WebAssembly (build/wasm) and the native plugin tools (build/plugins)
	@./tools/build.sh

.PHONY: plugins
plugins: tools ## build the native plugin tools (build/plugins; tools/build.sh builds both kinds)

.PHONY: tools-c
tools-c: ## rebuild the C example tool (installs clang and wasi-libc with apt-get when missing)
	@./tools/textwc/build.sh

.PHONY: pin
pin: tools ## update the manifests' sha256 pins to the built modules
	@./tools/pin.sh

.PHONY: run
run: build ## build everything and serve the bundled tools on .airlock/airlock.sock (Ctrl-C stops)
	$(BIN) serve --manifests manifests/tools --policies manifests/policies --data $(DATA) --approvals-listen 127.0.0.1:0

.PHONY: test
test: tools ## run the whole test suite (real gRPC, real wazero, real SQLite)
	$(GO) test -count=1 -timeout 14m ./...

.PHONY: lint
lint: tools ## static gates: vet, gofmt, go mod tidy, generated code, manifest pins, policy tests
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run go mod tidy and commit"; $(GO) mod tidy -diff | head -40; exit 1; }
	@$(MAKE) --no-print-directory proto
	@git diff --exit-code --stat -- planner-api/airlockv1 sandbox/plugin/pluginv1 || { echo "generated code is stale: run make proto and commit"; exit 1; }
	@./tools/pin.sh --check
	$(GO) run ./cmd/airlock manifest lint manifests/tools
	$(GO) run ./cmd/airlock manifest lint manifests/examples/tools
	$(GO) run ./cmd/airlock policy test manifests/policies --manifests manifests/tools

.PHONY: check
check: lint test ## the gate: every static check, then the whole test suite

PROTO := planner-api/proto/airlock/v1/airlock.proto
PLUGIN_PROTO := sandbox/plugin/proto/airlock/plugin/v1/plugin.proto

.PHONY: proto
proto: ## regenerate the planner API and plugin protocol Go code (needs protoc: apt-get install protobuf-compiler)
	@command -v protoc >/dev/null || { echo "protoc not found: apt-get install -y protobuf-compiler"; exit 1; }
	protoc -I planner-api/proto \
	  --plugin=protoc-gen-go=$$($(GO) tool -n protoc-gen-go) \
	  --plugin=protoc-gen-go-grpc=$$($(GO) tool -n protoc-gen-go-grpc) \
	  --go_out=. --go_opt=module=github.com/airlock-dev/airlock \
	  --go-grpc_out=. --go-grpc_opt=module=github.com/airlock-dev/airlock \
	  $(PROTO)
	protoc -I sandbox/plugin/proto \
	  --plugin=protoc-gen-go=$$($(GO) tool -n protoc-gen-go) \
	  --plugin=protoc-gen-go-grpc=$$($(GO) tool -n protoc-gen-go-grpc) \
	  --go_out=. --go_opt=module=github.com/airlock-dev/airlock \
	  --go-grpc_out=. --go-grpc_opt=module=github.com/airlock-dev/airlock \
	  $(PLUGIN_PROTO)

BENCH_COUNT ?= 6
.PHONY: bench
bench: tools ## run the benchmarks, compare them with benchstat (docs/benchmarks.md)
	@mkdir -p bench/out
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCH_COUNT) -timeout 60m \
	  ./internal/bench/ ./runtime/policy/ ./sandbox/wasm/ ./runtime/store/sqlite/ ./runtime/manifest/ \
	  ./runtime/egress/ ./runtime/credentials/ ./runtime/redact/ | tee bench/out/bench.txt
	$(GO) run $(BENCHSTAT) bench/out/bench.txt | tee bench/out/benchstat.txt
	@echo "--- the pipeline against the bare wazero baseline (ratios):"
	$(GO) run $(BENCHSTAT) -filter '.name:Call' -col /path bench/out/bench.txt | tee bench/out/ratio.txt
	@echo "--- the cost of credentials per call (ratio to the same call without):"
	$(GO) run $(BENCHSTAT) -filter '.name:Credentials' -col /path bench/out/bench.txt | tee bench/out/credentials.txt
	@echo "--- plugin tools: cold start, warm call, WASM call, against a bare gRPC round trip (ratios):"
	$(GO) run $(BENCHSTAT) -filter '.name:Plugin' -col /path bench/out/bench.txt | tee bench/out/plugin.txt

.PHONY: fuzz
fuzz: ## run the fuzzers for a while (FUZZTIME=2m per target)
	$(GO) test -run '^$$' -fuzz FuzzValidateArgs -fuzztime $${FUZZTIME:-2m} ./runtime/manifest/

.PHONY: clean
clean: ## remove build output (keeps .airlock data)
	rm -rf bin build bench/out
