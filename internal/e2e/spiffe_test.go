package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/internal/devca"
	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
	"github.com/airlock-dev/airlock/runtime/identity"
)

// onlyAgentA allows json.query to one SPIFFE ID: CEL on caller.spiffe_id
// decides, and the ID comes from the mTLS peer certificate.
const onlyAgentA = `
apiVersion: airlock.dev/v1
kind: Policy
metadata: {name: mtls}
spec:
  match: {tools: ["json.query"]}
  rules:
    - name: agent-a
      effect: allow
      when: 'caller.spiffe_id == "spiffe://airlock.local/agent/a" && caller.trust_domain == "airlock.local" && caller.path == "/agent/a"'
`

// svidFiles are the flags naming an SVID issued by a dev CA.
type svidFiles struct{ cert, key, bundle string }

func (s svidFiles) flags() []string {
	return []string{"--svid-cert", s.cert, "--svid-key", s.key, "--svid-bundle", s.bundle}
}

func (s svidFiles) config() identity.SVIDConfig {
	return identity.SVIDConfig{CertFile: s.cert, KeyFile: s.key, Bundles: []string{s.bundle}}
}

// devCA creates a CA for trustDomain with the real CLI.
func devCA(t *testing.T, trustDomain string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	if r := runCLI(t, "", "dev", "ca", "init", "--dir", dir, "--trust-domain", trustDomain); r.code != 0 {
		t.Fatalf("dev ca init: %d %s %s", r.code, r.stdout, r.stderr)
	}
	return dir
}

// devIssue issues an SVID for id from the CA in dir with the real CLI.
func devIssue(t *testing.T, dir, id string) svidFiles {
	t.Helper()
	out := t.TempDir()
	if r := runCLI(t, "", "dev", "ca", "issue", "--dir", dir, "--out", out, "--ttl", "1h", id); r.code != 0 || !strings.Contains(r.stdout, id) {
		t.Fatalf("dev ca issue %s: %d %s %s", id, r.code, r.stdout, r.stderr)
	}
	return svidFiles{filepath.Join(out, devca.SVIDFile), filepath.Join(out, devca.KeyFile), filepath.Join(out, devca.BundleFile)}
}

// listenAddr reads the mTLS listener's address from the daemon's log.
func listenAddr(t *testing.T, d *daemon) string {
	t.Helper()
	for _, l := range strings.Split(d.stderr.String(), "\n") {
		var ev struct {
			Msg    string `json:"message"`
			Listen string `json:"listen"`
		}
		if json.Unmarshal([]byte(l), &ev) == nil && ev.Msg == "airlock is serving" && ev.Listen != "" {
			return ev.Listen
		}
	}
	t.Fatalf("the daemon logged no mTLS listen address:\n%s", d.stderr.String())
	return ""
}

func TestSPIFFEMTLSWithDevCA(t *testing.T) {
	ca := devCA(t, "airlock.local")
	foreignCA := devCA(t, "foreign.example")
	exec := devIssue(t, ca, "spiffe://airlock.local/executor")
	agentA := devIssue(t, ca, "spiffe://airlock.local/agent/a")
	agentB := devIssue(t, ca, "spiffe://airlock.local/agent/b")
	robot := devIssue(t, ca, "spiffe://airlock.local/robot/x")
	foreign := devIssue(t, foreignCA, "spiffe://foreign.example/agent/a")

	d := startDaemon(t, append([]string{"--policies", testenv.Policy(t, "mtls", onlyAgentA)},
		mtlsFlags(exec, "spiffe://airlock.local/agent/*")...)...)
	addr := listenAddr(t, d)
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("listening on %s", addr)
	}
	as := func(s svidFiles, args ...string) result {
		t.Helper()
		return runCLI(t, "", append(append([]string{args[0], "--addr", addr}, s.flags()...), args[1:]...)...)
	}
	query := []string{"json.query", `{"filter":".a","input":{"a":1}}`}

	t.Run("agent A is allowed by its SPIFFE ID", func(t *testing.T) {
		r := as(agentA, append([]string{"call"}, query...)...)
		if r.code != 0 || !strings.Contains(r.stdout, `"ok"`) {
			t.Fatalf("agent A: %d %s %s", r.code, r.stdout, r.stderr)
		}
		if r := as(agentA, "tools"); r.code != 0 || !strings.Contains(r.stdout, "json.query") {
			t.Fatalf("agent A tools: %d %s %s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("CEL on caller.spiffe_id denies agent B", func(t *testing.T) {
		r := as(agentB, append([]string{"call"}, query...)...)
		if r.code != 3 || !strings.Contains(r.stdout, `"denied"`) {
			t.Fatalf("agent B: %d %s %s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("the unix socket still identifies by uid", func(t *testing.T) {
		// The policy admits only agent A, so the local uid is denied.
		r := d.call(t, append([]string{"call"}, query...)...)
		if r.code != 3 {
			t.Fatalf("socket call: %d %s %s", r.code, r.stdout, r.stderr)
		}
		if r := d.call(t, "tools"); r.code != 0 {
			t.Fatalf("socket tools: %d %s", r.code, r.stderr)
		}
	})
	t.Run("a task begun by A is not B's", func(t *testing.T) {
		r := as(agentA, "task", "begin", "--purpose", "mtls")
		task := strings.TrimSpace(r.stdout)
		if r.code != 0 || !strings.HasPrefix(task, "tsk_") {
			t.Fatalf("task begin: %d %s %s", r.code, r.stdout, r.stderr)
		}
		r = as(agentB, append([]string{"call", "--task", task}, query...)...)
		if r.code != 3 || !strings.Contains(r.stdout, "task_not_owned") {
			t.Fatalf("B used A's task: %d %s %s", r.code, r.stdout, r.stderr)
		}
		if r := as(agentB, "task", "end", task); r.code != 2 || !strings.Contains(r.stderr, "not found") {
			t.Fatalf("B ended A's task: %d %s %s", r.code, r.stdout, r.stderr)
		}
		r = as(agentA, append([]string{"call", "--task", task}, query...)...)
		if r.code != 0 {
			t.Fatalf("A in its own task: %d %s %s", r.code, r.stdout, r.stderr)
		}
		if r := as(agentA, "task", "end", task); r.code != 0 {
			t.Fatalf("A ends its task: %d %s %s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("an ID outside the allowed patterns is refused", func(t *testing.T) {
		r := as(robot, append([]string{"call"}, query...)...)
		if r.code != 2 || !strings.Contains(r.stderr, "mTLS handshake") {
			t.Fatalf("robot: %d %s %s", r.code, r.stdout, r.stderr)
		}
		waitLog(t, d, "mtls handshake refused", "spiffe://airlock.local/robot/x", "matches no allowed pattern")
	})
	t.Run("a foreign trust domain is refused", func(t *testing.T) {
		// The foreign client trusts our CA, so it would accept the server.
		r := runCLI(t, "", "call", "--addr", addr, "--svid-cert", foreign.cert, "--svid-key", foreign.key,
			"--svid-bundle", foreign.bundle, "--svid-bundle", "airlock.local="+agentA.bundle,
			"--server-id", "spiffe://airlock.local/executor", query[0], query[1])
		if r.code != 2 || !strings.Contains(r.stderr, "mTLS handshake") {
			t.Fatalf("foreign: %d %s %s", r.code, r.stdout, r.stderr)
		}
		waitLog(t, d, "mtls handshake refused", "foreign.example")
	})
	t.Run("a client without a certificate is refused", func(t *testing.T) {
		// A TLS client that would accept any server but has no certificate.
		conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(
			credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err = airlockv1.NewToolServiceClient(conn).ListTools(ctx, &airlockv1.ListToolsRequest{})
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("no certificate: %v", err)
		}
		waitLog(t, d, "mtls handshake refused", "certificate")
	})
	t.Run("the client checks the server's ID", func(t *testing.T) {
		r := as(agentA, "call", "--server-id", "spiffe://airlock.local/not-the-executor", query[0], query[1])
		if r.code != 2 || !strings.Contains(r.stderr, "does not match") {
			t.Fatalf("wrong server id: %d %s %s", r.code, r.stdout, r.stderr)
		}
	})
	t.Run("the Go client", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		src, err := identity.OpenSource(ctx, agentA.config())
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		c, err := client.DialMTLS(ctx, addr, client.MTLSOptions{Source: src, ServerID: "spiffe://airlock.local/executor"})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		out, err := c.Submit(ctx, query[0], query[1])
		if err != nil || out.GetStatus() != airlockv1.Status_STATUS_OK {
			t.Fatalf("Go client: %v %v", out, err)
		}
	})
	t.Run("the audit log names the SVID's ID as the caller", func(t *testing.T) {
		r := runCLI(t, "", "audit", "tail", "--data", d.data, "-n", "100")
		if r.code != 0 || !strings.Contains(r.stdout, `"caller":"spiffe://airlock.local/agent/a"`) || !strings.Contains(r.stdout, `"caller":"spiffe://airlock.local/agent/b"`) {
			t.Fatalf("audit: %d %s %s", r.code, r.stdout, r.stderr)
		}
	})
}

// waitLog waits until one line of the daemon's log holds every part.
func waitLog(t *testing.T, d *daemon, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, l := range strings.Split(d.stderr.String(), "\n") {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(l, p)
			}
			if all {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon never logged %q:\n%s", parts, d.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServeRefusesAPublicListenAddress(t *testing.T) {
	ca := devCA(t, "airlock.local")
	exec := devIssue(t, ca, "spiffe://airlock.local/executor")
	root := testenv.Root(t)
	base := []string{"serve", "--data", t.TempDir(), "--socket", filepath.Join(t.TempDir(), "s"),
		"--manifests", filepath.Join(root, "manifests", "tools"), "--policies", filepath.Join(root, "manifests", "policies"),
		"--allow-trust-domain", "airlock.local"}
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:8443"} {
		r := runCLI(t, "", append(append(base, "--listen", addr), exec.flags()...)...)
		if r.code == 0 || !strings.Contains(r.stderr, "--listen-public") {
			t.Fatalf("--listen %s: %d %s", addr, r.code, r.stderr)
		}
	}
	r := runCLI(t, "", append(base[:len(base)-2], append([]string{"--listen", "127.0.0.1:0"}, exec.flags()...)...)...)
	if r.code == 0 || !strings.Contains(r.stderr, "--allow-trust-domain or --allow-id-pattern") {
		t.Fatalf("no allow list: %d %s", r.code, r.stderr)
	}
	if r := runCLI(t, "", append(base, "--listen-public")...); r.code != 2 || !strings.Contains(r.stderr, "--listen") {
		t.Fatalf("--listen-public alone: %d %s", r.code, r.stderr)
	}
}
