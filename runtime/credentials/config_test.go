package credentials_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/runtime/credentials"
)

func writeConfig(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, "credentials.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	f := newFakeOAuth(t, "repo:read")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "gh-secret"), []byte(f.clientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AIRLOCK_TEST_DEV", "dev-token-abcdefgh")
	path := writeConfig(t, dir, `apiVersion: airlock.dev/v1
kind: Credentials
sources:
  - {name: github-readonly, type: oauth2, tokenURL: '`+f.srv.URL+`/token', revokeURL: '`+f.srv.URL+`/revoke',
     clientID: `+f.clientID+`, clientSecretFile: gh-secret, scopes: ['repo:read']}
  - {name: ci-jwt, type: jwt, issuer: airlock, audience: ci.example.org, ttl: 5m}
  - name: dev-token
    type: static
    env: AIRLOCK_TEST_DEV
  - {name: svid, type: spiffe-jwt, audience: vault}
`)
	reg, err := credentials.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if got := strings.Join(reg.Names(), ","); got != "github-readonly,ci-jwt,dev-token,svid" {
		t.Fatalf("names %s", got)
	}
	gh, err := reg.Source("github-readonly")
	if err != nil {
		t.Fatal(err)
	}
	// The secret file relative to the config was read: the grant works.
	if _, err := gh.Issue(ctx, credentials.IssueRequest{LeaseID: "l", TaskID: "t", Scopes: []string{"repo:read"}, NotAfter: hour()}); err != nil {
		t.Fatal(err)
	}
	dev, _ := reg.Source("dev-token")
	if c, err := dev.Issue(ctx, credentials.IssueRequest{TaskID: "t", NotAfter: hour()}); err != nil || c.Value != "dev-token-abcdefgh" {
		t.Fatalf("static: %v %v", c, err)
	}
	if _, err := reg.Source("nope"); err == nil || !strings.Contains(err.Error(), "configured: github-readonly, ci-jwt") {
		t.Fatalf("unknown source: %v", err)
	}
	// The registry serves the jwt source's JWKS under its name.
	srv := httptest.NewServer(reg.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/credentials/ci-jwt" + credentials.JWKSPath)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("jwks: %v %v", resp, err)
	}
	resp.Body.Close()
	if resp, _ := http.Get(srv.URL + "/credentials/dev-token" + credentials.JWKSPath); resp.StatusCode != 404 {
		t.Fatalf("static source has a JWKS: %d", resp.StatusCode)
	}
}

func TestParseErrors(t *testing.T) {
	head := "apiVersion: airlock.dev/v1\nkind: Credentials\nsources:\n"
	for name, c := range map[string]struct{ text, want string }{
		"unknown key": {head + "  - name: a\n    type: static\n    env: X\n    colour: red\n", "c.yaml:7:"},
		"key of another type": {head + "  - name: a\n    type: static\n    env: X\n    issuer: me\n",
			"c.yaml:7: sources[0] (a): issuer does not apply to a static source"},
		"duplicate name": {head + "  - {name: a, type: static, env: X}\n  - {name: a, type: static, env: Y}\n",
			`c.yaml:5: sources[1] (a): name "a" is already used by sources[0]`},
		"bad type":        {head + "  - {name: a, type: magic}\n", `c.yaml:4: sources[0] (a): type "magic" is not one of`},
		"bad name":        {head + "  - {name: A B, type: static, env: X}\n", `c.yaml:4: sources[0] (A B): name "A B" must be`},
		"static both":     {head + "  - {name: a, type: static, env: X, file: f}\n", "exactly one of file and env"},
		"jwt no audience": {head + "  - {name: a, type: jwt, issuer: i}\n", "audience is required"},
		"jwt ttl":         {head + "  - name: a\n    type: jwt\n    issuer: i\n    audience: x\n    ttl: 2h\n", "c.yaml:8: sources[0] (a): ttl 2h0m0s is not between"},
		"oauth2 http":     {head + "  - {name: a, type: oauth2, tokenURL: 'http://auth.example.org/t', revokeURL: 'https://x/r', clientID: c, clientSecretEnv: S, scopes: [a]}\n", "uses http to a host that is not loopback"},
		"oauth2 scopes":   {head + "  - {name: a, type: oauth2, tokenURL: 'https://x/t', revokeURL: 'https://x/r', clientID: c, clientSecretEnv: S}\n", "scopes is required"},
		"wrong kind":      {"apiVersion: airlock.dev/v1\nkind: Tool\nsources: []\n", `c.yaml:2: kind is "Tool"`},
		"wrong type":      {head + "  - {name: a, type: jwt, issuer: i, audience: x, maxActive: lots}\n", "c.yaml:4:"},
		"duplicate key":   {"apiVersion: airlock.dev/v1\nkind: Credentials\nkind: Credentials\n", "c.yaml:3:"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := credentials.Parse([]byte(c.text), "c.yaml")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, c.want)
			}
		})
	}
}

func TestLoadMissingSecret(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, `apiVersion: airlock.dev/v1
kind: Credentials
sources:
  - {name: gh, type: oauth2, tokenURL: 'https://x/t', revokeURL: 'https://x/r', clientID: c, clientSecretEnv: AIRLOCK_TEST_UNSET_ENV, scopes: [a]}
`)
	if _, err := credentials.Load(path); err == nil || !strings.Contains(err.Error(), "AIRLOCK_TEST_UNSET_ENV") {
		t.Fatalf("unset secret env: %v", err)
	}
	if _, err := credentials.Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("missing file loaded")
	}
}
