package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
	"github.com/airlock-dev/airlock/runtime/identity"
)

// spireBin returns the directory of the SPIRE binaries (env
// AIRLOCK_SPIRE_BIN, built by `scripts/spire.sh build`). Without it the
// test is skipped, except on CI, where it fails.
func spireBin(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("AIRLOCK_SPIRE_BIN")
	if dir == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("AIRLOCK_SPIRE_BIN is not set on CI: build SPIRE with `scripts/spire.sh build` and export AIRLOCK_SPIRE_BIN")
		}
		t.Skip("AIRLOCK_SPIRE_BIN is not set: `export AIRLOCK_SPIRE_BIN=$(scripts/spire.sh build)` to run the SPIRE tests")
	}
	for _, b := range []string{"spire-server", "spire-agent"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Fatalf("AIRLOCK_SPIRE_BIN=%s: %v: run scripts/spire.sh build", dir, err)
		}
	}
	return dir
}

// spire is a SPIRE server and agent started by scripts/spire.sh.
type spire struct {
	dir, trustDomain string
	// register adds a registration entry for processes running binary.
	register func(id, binary string)
}

func (s *spire) socket() string { return filepath.Join(s.dir, "agent.sock") }
func (s *spire) bin(name string) string {
	return filepath.Join(s.dir, "bin", "airlock-"+name)
}

func startSPIRE(t *testing.T, bin, trustDomain string) *spire {
	t.Helper()
	// unix socket paths are short: keep the directory near the root.
	dir, err := os.MkdirTemp("", "spire")
	if err != nil {
		t.Fatal(err)
	}
	s := &spire{dir: dir, trustDomain: trustDomain}
	script := filepath.Join(testenv.Root(t), "scripts", "spire.sh")
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(script, args...)
		cmd.Env = append(os.Environ(), "AIRLOCK_SPIRE_BIN="+bin, "TRUST_DOMAIN="+trustDomain, "AIRLOCK_BIN="+airlockBin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("spire.sh %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() {
		run("stop", dir)
		if t.Failed() {
			for _, f := range []string{"server.log", "agent.log"} {
				b, _ := os.ReadFile(filepath.Join(dir, f))
				t.Logf("%s %s:\n%s", trustDomain, f, tail(string(b), 4000))
			}
		}
		os.RemoveAll(dir)
	})
	run("start", dir)
	s.register = func(id, binary string) { run("register", dir, id, binary) }
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// spireDaemon runs `serve` as the registered executor binary.
func spireDaemon(t *testing.T, s *spire, extra ...string) (addr string, log *testenv.SyncBuffer) {
	t.Helper()
	root := testenv.Root(t)
	log = &testenv.SyncBuffer{}
	args := append([]string{"serve", "--socket", filepath.Join(s.dir, "x.sock"), "--data", t.TempDir(),
		"--manifests", testenv.BundledManifests(t), "--policies", filepath.Join(root, "manifests", "policies"),
		"--log-format", "json", "--cache-dir", testenv.CacheDir(),
		"--listen", "127.0.0.1:0", "--spiffe-socket", s.socket()}, extra...)
	cmd := exec.Command(s.bin("executor"), args...)
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	})
	d := &daemon{stderr: log}
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(log.String(), "airlock is serving") {
		select {
		case err := <-done:
			t.Fatalf("the executor exited early: %v\n%s", err, log.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the executor did not start:\n%s", log.String())
		}
	}
	return listenAddr(t, d), log
}

// runAs runs the airlock binary at bin (a registered copy) as a client.
func runAs(t *testing.T, bin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	r := result{stdout: so.String(), stderr: se.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s %v: %v", bin, args, err)
	}
	return r
}

// mergedSource is an SVID from one Workload API with extra trust bundles.
type mergedSource struct {
	identity.Source
	extra *x509bundle.Set
}

func (m mergedSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if b, ok := m.extra.Get(td); ok {
		return b, nil
	}
	return m.Source.GetX509BundleForTrustDomain(td)
}

func TestSPIREIdentity(t *testing.T) {
	bin := spireBin(t)
	local := startSPIRE(t, bin, "airlock.local")
	foreign := startSPIRE(t, bin, "foreign.test")

	addr, log := spireDaemon(t, local, "--policies", testenv.Policy(t, "mtls", onlyAgentA),
		"--allow-id-pattern", "spiffe://airlock.local/agent/*")
	mustContain(t, log.String(), `"spiffe_id":"spiffe://airlock.local/executor"`)
	as := func(name string, args ...string) result {
		t.Helper()
		return runAs(t, local.bin(name), append([]string{args[0], "--addr", addr, "--spiffe-socket", local.socket()}, args[1:]...)...)
	}
	query := []string{"json.query", `{"filter":".a","input":{"a":1}}`}

	t.Run("agent A calls; CEL on caller.spiffe_id denies agent B", func(t *testing.T) {
		if r := as("agent-a", append([]string{"call"}, query...)...); r.code != 0 || !strings.Contains(r.stdout, `"ok"`) {
			t.Fatalf("agent A: %d %s %s", r.code, r.stdout, r.stderr)
		}
		if r := as("agent-b", append([]string{"call"}, query...)...); r.code != 3 || !strings.Contains(r.stdout, `"denied"`) {
			t.Fatalf("agent B: %d %s %s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("a task begun by A is unusable by B", func(t *testing.T) {
		r := as("agent-a", "task", "begin", "--purpose", "spire")
		task := strings.TrimSpace(r.stdout)
		if r.code != 0 || !strings.HasPrefix(task, "tsk_") {
			t.Fatalf("task begin: %d %s %s", r.code, r.stdout, r.stderr)
		}
		if r := as("agent-b", append([]string{"call", "--task", task}, query...)...); r.code != 3 || !strings.Contains(r.stdout, "task_not_owned") {
			t.Fatalf("B used A's task: %d %s %s", r.code, r.stdout, r.stderr)
		}
		if r := as("agent-a", append([]string{"call", "--task", task}, query...)...); r.code != 0 {
			t.Fatalf("A in its task: %d %s %s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("an agent without a registration entry gets no SVID", func(t *testing.T) {
		r := as("unregistered", "call", "--timeout", "3s", query[0], query[1])
		if r.code != 2 || !strings.Contains(r.stderr, "no identity issued") {
			t.Fatalf("unregistered: %d %s %s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("an agent from a foreign trust domain is refused", func(t *testing.T) {
		// Through the CLI: its SPIRE issues it spiffe://foreign.test/agent/a.
		r := runAs(t, foreign.bin("agent-a"), "call", "--addr", addr, "--spiffe-socket", foreign.socket(), query[0], query[1])
		if r.code != 2 || !strings.Contains(r.stderr, "mTLS handshake") {
			t.Fatalf("foreign agent: %d %s %s", r.code, r.stdout, r.stderr)
		}
		// With the local bundle added, the foreign agent accepts the
		// executor: the executor alone refuses it.
		self, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		foreign.register("spiffe://foreign.test/agent/tester", self)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		src, err := identity.OpenSource(ctx, identity.SVIDConfig{WorkloadAPI: foreign.socket()})
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		pem, err := exec.Command(filepath.Join(bin, "spire-server"), "bundle", "show", "-socketPath", filepath.Join(local.dir, "server.sock")).Output()
		if err != nil {
			t.Fatal(err)
		}
		lb, err := x509bundle.Parse(spiffeid.RequireTrustDomainFromString("airlock.local"), pem)
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.DialMTLS(ctx, addr, client.MTLSOptions{Source: mergedSource{src, x509bundle.NewSet(lb)}, ServerID: "spiffe://airlock.local/executor"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.ListTools(ctx); status.Code(err) != codes.Unavailable {
			t.Fatalf("the foreign agent was served: %v", err)
		}
		waitLogBuf(t, log, "mtls handshake refused", "foreign.test")
	})
	t.Run("a client without a certificate is refused", func(t *testing.T) {
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(
			credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := airlockv1.NewToolServiceClient(conn).ListTools(ctx, &airlockv1.ListToolsRequest{}); status.Code(err) != codes.Unavailable {
			t.Fatalf("no certificate: %v", err)
		}
		waitLogBuf(t, log, "mtls handshake refused", "certificate")
	})
}

func waitLogBuf(t *testing.T, log *testenv.SyncBuffer, parts ...string) {
	t.Helper()
	waitLog(t, &daemon{stderr: log}, parts...)
}
