package credentials_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/runtime/credentials"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/runtime/store/sqlite"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// hydra is a running ORY Hydra on loopback.
type hydra struct {
	public, admin string
}

// startHydra runs the Hydra binary named by AIRLOCK_HYDRA (build it with
// scripts/hydra.sh build) with an in-memory database on 127.0.0.1. The
// test is skipped when AIRLOCK_HYDRA is unset, and fails instead when
// CI=true.
func startHydra(t *testing.T) *hydra {
	t.Helper()
	bin := os.Getenv("AIRLOCK_HYDRA")
	if bin == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("AIRLOCK_HYDRA is not set but CI=true: build Hydra with scripts/hydra.sh build and set AIRLOCK_HYDRA to its path")
		}
		t.Skip("AIRLOCK_HYDRA is not set: build Hydra with scripts/hydra.sh build and set AIRLOCK_HYDRA to its path")
	}
	pub, adm := freePort(t), freePort(t)
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	cmd := exec.Command(bin, "serve", "all", "--dev", "--sqa-opt-out")
	cmd.Env = append(os.Environ(),
		"DSN=memory",
		"SERVE_PUBLIC_HOST=127.0.0.1", fmt.Sprintf("SERVE_PUBLIC_PORT=%d", pub),
		"SERVE_ADMIN_HOST=127.0.0.1", fmt.Sprintf("SERVE_ADMIN_PORT=%d", adm),
		fmt.Sprintf("URLS_SELF_ISSUER=http://127.0.0.1:%d/", pub),
		"SECRETS_SYSTEM="+hex.EncodeToString(secret),
		"STRATEGIES_ACCESS_TOKEN=opaque",
		"LOG_LEVEL=warn",
	)
	logPath := filepath.Join(t.TempDir(), "hydra.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start hydra %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		_ = logf.Close()
	})
	h := &hydra{public: fmt.Sprintf("http://127.0.0.1:%d", pub), admin: fmt.Sprintf("http://127.0.0.1:%d", adm)}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(h.admin + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return h
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("hydra exited:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("hydra not ready after 20s:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (h *hydra) createClient(t *testing.T, secret string, scopes string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"client_secret": secret, "grant_types": []string{"client_credentials"},
		"scope": scopes, "token_endpoint_auth_method": "client_secret_basic"})
	resp, err := http.Post(h.admin+"/admin/clients", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		ClientID string `json:"client_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated || out.ClientID == "" {
		t.Fatalf("create client: %d %v %+v", resp.StatusCode, err, out)
	}
	return out.ClientID
}

func (h *hydra) introspect(t *testing.T, token string) (bool, string) {
	t.Helper()
	resp, err := http.PostForm(h.admin+"/admin/oauth2/introspect", url.Values{"token": {token}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Active bool   `json:"active"`
		Scope  string `json:"scope"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Active, out.Scope
}

// TestHydraIssueAndRevoke issues a token from a real Hydra through a Leaser
// and proves Hydra's introspection says inactive after the task's leases
// are revoked.
func TestHydraIssueAndRevoke(t *testing.T) {
	h := startHydra(t)
	secret := "hydra-client-secret-" + hex.EncodeToString([]byte(t.Name()))[:16]
	clientID := h.createClient(t, secret, "repo:read repo:write admin")

	src, err := credentials.NewOAuth2("github", credentials.OAuth2Options{TokenURL: h.public + "/oauth2/token",
		RevokeURL: h.public + "/oauth2/revoke", ClientID: clientID, ClientSecret: secret, Scopes: []string{"repo:read", "repo:write"}})
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := credentials.NewRegistry(src)
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "airlock.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sealer, err := credentials.LoadOrCreateSealer(filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := credentials.NewLeaser(credentials.LeaserOptions{Registry: reg, Store: st, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	task := beginTask(t, st, "tsk_hydra", time.Now().Add(30*time.Minute))
	issued, err := l.IssueCall(context.Background(), credentials.CallRequest{TaskID: task.ID, Tool: "github.issue.create",
		Caller: task.Caller, NotAfter: task.ExpiresAt,
		Credentials: []manifest.Credential{{Name: "github", Source: "github", Scopes: []string{"repo:read", "admin"}}}})
	if err != nil {
		t.Fatal(err)
	}
	active, scope := h.introspect(t, issued[0].Value)
	if !active || scope != "repo:read" {
		t.Fatalf("after issue: active %v scope %q (want the narrowed scope repo:read)", active, scope)
	}
	if n, err := l.RevokeTask(context.Background(), task.ID, "task ended"); n != 1 || err != nil {
		t.Fatalf("revoke: %d %v", n, err)
	}
	if active, _ := h.introspect(t, issued[0].Value); active {
		t.Fatal("Hydra says the token is still active after the task's leases were revoked")
	}
	if !strings.HasPrefix(issued[0].LeaseID, credentials.LeasePrefix+"_") {
		t.Fatalf("lease id %q", issued[0].LeaseID)
	}
}
