package credentials_test

import (
	"context"
	"encoding/hex"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testenv"
	"github.com/airlock-dev/airlock/runtime/credentials"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/runtime/store/sqlite"
)

// introspect asks Hydra whether token is active, failing the test on error.
func introspect(t *testing.T, h *testenv.Hydra, token string) (bool, string) {
	t.Helper()
	active, scope, err := h.Introspect(token)
	if err != nil {
		t.Fatal(err)
	}
	return active, scope
}

// TestHydraIssueAndRevoke issues a token from a real Hydra through a Leaser
// and proves Hydra's introspection says inactive after the task's leases
// are revoked.
func TestHydraIssueAndRevoke(t *testing.T) {
	h := testenv.StartHydra(t)
	secret := "hydra-client-secret-" + hex.EncodeToString([]byte(t.Name()))[:16]
	clientID := h.CreateClient(t, secret, "repo:read repo:write admin")

	src, err := credentials.NewOAuth2("github", credentials.OAuth2Options{TokenURL: h.Public + "/oauth2/token",
		RevokeURL: h.Public + "/oauth2/revoke", ClientID: clientID, ClientSecret: secret, Scopes: []string{"repo:read", "repo:write"}})
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
	active, scope := introspect(t, h, issued[0].Value)
	if !active || scope != "repo:read" {
		t.Fatalf("after issue: active %v scope %q (want the narrowed scope repo:read)", active, scope)
	}
	if n, err := l.RevokeTask(context.Background(), task.ID, "task ended"); n != 1 || err != nil {
		t.Fatalf("revoke: %d %v", n, err)
	}
	if active, _ := introspect(t, h, issued[0].Value); active {
		t.Fatal("Hydra says the token is still active after the task's leases were revoked")
	}
	if !strings.HasPrefix(issued[0].LeaseID, credentials.LeasePrefix+"_") {
		t.Fatalf("lease id %q", issued[0].LeaseID)
	}
}
