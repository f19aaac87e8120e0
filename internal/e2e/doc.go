// Package e2e holds airlock's end-to-end tests: a real executor on a real
// unix socket, real gRPC, real wazero, the real bundled tools and store.
package e2e
