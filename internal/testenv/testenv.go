// Package testenv starts a real executor for tests and benchmarks: the
// real server on a real unix socket in a temporary directory, with the
// real store and the real wasm sandbox.
package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/planner-api/client"
	"github.com/airlock-dev/airlock/runtime/egress"
	"github.com/airlock-dev/airlock/runtime/server"
)

// Root returns the repository root (the directory holding go.mod).
func Root(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// BundledManifests returns manifests/tools, failing with a clear message
// when the WASM tools have not been built.
func BundledManifests(tb testing.TB) string {
	tb.Helper()
	root := Root(tb)
	if _, err := os.Stat(filepath.Join(root, "build", "wasm", "jsonquery.wasm")); err != nil {
		tb.Fatalf("the WASM tools are not built: run `make tools` (or `make test`, which builds them): %v", err)
	}
	return filepath.Join(root, "manifests", "tools")
}

// Executor is a running executor.
type Executor struct {
	Socket string
	Data   string
	Client *client.Client
	Log    *SyncBuffer
	cancel context.CancelFunc
	done   chan error
}

// Options of Start.
type Options struct {
	Manifests string // directory of manifests (required)
	Policies  string // directory of policies (required)
	Data      string // default: a temp dir
	StoreSync string
	// MaxInstances bounds the sandbox (0: default).
	MaxInstances int
	// Quiet drops the logs instead of buffering them.
	Quiet bool
	// Egress replaces the executor's egress client (tests route its dials
	// to loopback servers).
	Egress *egress.Client
	// Credentials is a credential sources file.
	Credentials string
	// Configure, when set, adjusts the server options last: an mTLS
	// listener, approvers, approval settings, plugin isolation.
	Configure func(*server.Options)
}

// Start runs an executor until the test ends. It fails the test if the
// executor does not start within 2 minutes (a cold compile of Go modules).
func Start(tb testing.TB, o Options) *Executor {
	tb.Helper()
	x, err := TryStart(tb, o)
	if err != nil {
		tb.Fatalf("start executor: %v", err)
	}
	return x
}

// TryStart is Start returning the startup error (a configuration error,
// say) instead of failing.
func TryStart(tb testing.TB, o Options) (*Executor, error) {
	tb.Helper()
	if o.Data == "" {
		o.Data = tb.TempDir()
	}
	// unix socket paths are limited to 108 bytes: keep the socket short.
	sockDir, err := os.MkdirTemp("", "al")
	if err != nil {
		return nil, err
	}
	tb.Cleanup(func() { os.RemoveAll(sockDir) })
	x := &Executor{Socket: filepath.Join(sockDir, "s"), Data: o.Data, Log: &SyncBuffer{}, done: make(chan error, 1)}
	log := zerolog.New(x.Log)
	if o.Quiet {
		log = zerolog.Nop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	x.cancel = cancel
	ready := make(chan struct{})
	so := server.Options{
		Socket: x.Socket, ManifestsDir: o.Manifests, PoliciesDir: o.Policies, DataDir: o.Data,
		Egress: o.Egress, CredentialsFile: o.Credentials,
		StoreSync: o.StoreSync, CacheDir: CacheDir(), MaxInstances: o.MaxInstances, Logger: log, DrainTimeout: 20 * time.Second,
		Ready: func(string) { close(ready) },
	}
	if o.Configure != nil {
		o.Configure(&so)
	}
	go func() { x.done <- server.Run(ctx, so) }()
	select {
	case <-ready:
	case err := <-x.done:
		cancel()
		if err == nil {
			err = fmt.Errorf("the executor stopped before it was ready")
		}
		return nil, err
	case <-time.After(2 * time.Minute):
		cancel()
		return nil, fmt.Errorf("the executor did not start within 2 minutes")
	}
	c, err := client.Dial(context.Background(), x.Socket)
	if err != nil {
		cancel()
		return nil, err
	}
	x.Client = c
	tb.Cleanup(func() {
		if err := x.Stop(); err != nil {
			tb.Errorf("executor stopped with an error: %v", err)
		}
	})
	return x, nil
}

// Stop drains the executor and returns its exit error. It is idempotent.
func (x *Executor) Stop() error {
	if x.cancel == nil {
		return nil
	}
	x.Client.Close()
	x.cancel()
	x.cancel = nil
	select {
	case err := <-x.done:
		return err
	case <-time.After(time.Minute):
		return fmt.Errorf("the executor did not stop within a minute")
	}
}

// Policy writes a policy file with the given rules YAML into a new temp
// directory and returns the directory.
func Policy(tb testing.TB, name, body string) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := os.WriteFile(filepath.Join(dir, name+".yaml"), []byte(strings.TrimLeft(body, "\n")), 0o600); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// AllowAll is a policy allowing every local caller every tool.
const AllowAll = `
apiVersion: airlock.dev/v1
kind: Policy
metadata: {name: test}
spec:
  match: {tools: ["*"]}
  rules:
    - name: allow-all
      effect: allow
      when: 'true'
`

// WritesNeedApproval is a policy allowing every call but asking a human
// for each workspace write.
const WritesNeedApproval = `
apiVersion: airlock.dev/v1
kind: Policy
metadata: {name: approvals}
spec:
  match: {tools: ["*"]}
  rules:
    - name: allow-all
      effect: allow
      when: 'true'
    - name: writes-need-approval
      effect: require_approval
      when: 'tool.name == "workspace.write"'
      message: '"a human must approve writes to " + args.path'
`

// CacheDir is the compiled-module cache shared by every test executor, so
// that the Go-built tools compile once per machine rather than per test.
func CacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "airlock", "test-wazero")
}

// SHA256File returns the hex SHA-256 of a file.
func SHA256File(tb testing.TB, path string) string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
