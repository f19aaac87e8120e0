package testenv

import (
	"bytes"
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
	"testing"
	"time"
)

// FreePort returns a loopback port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Hydra is a running ORY Hydra (the real OAuth 2.0 server) on loopback.
type Hydra struct {
	Public, Admin string // base URLs
}

// StartHydra runs the Hydra binary named by AIRLOCK_HYDRA (build it with
// scripts/hydra.sh build) with an in-memory database on 127.0.0.1 until the
// test ends. The test is skipped when AIRLOCK_HYDRA is unset, and fails
// instead when CI=true.
func StartHydra(tb testing.TB) *Hydra {
	tb.Helper()
	bin := os.Getenv("AIRLOCK_HYDRA")
	if bin == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal("AIRLOCK_HYDRA is not set but CI=true: build Hydra with scripts/hydra.sh build and set AIRLOCK_HYDRA to its path")
		}
		tb.Skip("AIRLOCK_HYDRA is not set: build Hydra with scripts/hydra.sh build and set AIRLOCK_HYDRA to its path")
	}
	pub, adm := FreePort(tb), FreePort(tb)
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
	logPath := filepath.Join(tb.TempDir(), "hydra.log")
	logf, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start hydra %s: %v", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		_ = logf.Close()
	})
	h := &Hydra{Public: fmt.Sprintf("http://127.0.0.1:%d", pub), Admin: fmt.Sprintf("http://127.0.0.1:%d", adm)}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get(h.Admin + "/health/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return h
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			tb.Fatalf("hydra exited:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			tb.Fatalf("hydra not ready after 20s:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// CreateClient registers a client-credentials client and returns its id.
func (h *Hydra) CreateClient(tb testing.TB, secret, scopes string) string {
	tb.Helper()
	body, _ := json.Marshal(map[string]any{"client_secret": secret, "grant_types": []string{"client_credentials"},
		"scope": scopes, "token_endpoint_auth_method": "client_secret_basic"})
	resp, err := http.Post(h.Admin+"/admin/clients", "application/json", bytes.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		ClientID string `json:"client_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated || out.ClientID == "" {
		tb.Fatalf("create client: %d %v %+v", resp.StatusCode, err, out)
	}
	return out.ClientID
}

// Introspect asks Hydra's admin API about a token (RFC 7662).
func (h *Hydra) Introspect(token string) (active bool, scope string, err error) {
	resp, err := http.PostForm(h.Admin+"/admin/oauth2/introspect", url.Values{"token": {token}})
	if err != nil {
		return false, "", err
	}
	defer resp.Body.Close()
	var out struct {
		Active bool   `json:"active"`
		Scope  string `json:"scope"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return false, "", fmt.Errorf("introspect: %w", err)
	}
	return out.Active, out.Scope, nil
}
