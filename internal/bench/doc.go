// Package bench holds the end-to-end benchmarks of airlock (`make bench`):
// the whole pipeline over the unix socket against the bare baseline of
// plain wazero running the same modules, and throughput under concurrency.
// See docs/benchmarks.md for results and how to reproduce them.
package bench
