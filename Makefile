# airlock — run `make help` for the targets.
SHELL := /bin/bash
GO ?= go
export GOFLAGS ?= -trimpath -buildvcs=false
BIN := bin/airlock

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  %-12s %s\n",$$1,$$2}' $(MAKEFILE_LIST)

PROTO := planner-api/proto/airlock/v1/airlock.proto

.PHONY: proto
proto: ## regenerate the planner API Go code (needs protoc: apt-get install protobuf-compiler)
	@command -v protoc >/dev/null || { echo "protoc not found: apt-get install -y protobuf-compiler"; exit 1; }
	protoc -I planner-api/proto \
	  --plugin=protoc-gen-go=$$($(GO) tool -n protoc-gen-go) \
	  --plugin=protoc-gen-go-grpc=$$($(GO) tool -n protoc-gen-go-grpc) \
	  --go_out=. --go_opt=module=github.com/airlock-dev/airlock \
	  --go-grpc_out=. --go-grpc_opt=module=github.com/airlock-dev/airlock \
	  $(PROTO)
