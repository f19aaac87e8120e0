package e2e

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/internal/testenv"
	"github.com/airlock-dev/airlock/runtime/egress"
	"github.com/airlock-dev/airlock/runtime/server"
)

// inProcessDaemon runs the daemon (server.Run, what `airlock serve` runs)
// in this process, so that its egress can be routed to loopback test
// servers; the test drives it with the real airlock CLI over its socket.
type inProcessDaemon struct {
	socket, data string
	log          *testenv.SyncBuffer
}

func startInProcess(t *testing.T, o server.Options) *inProcessDaemon {
	t.Helper()
	sockDir, err := os.MkdirTemp("", "al")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	d := &inProcessDaemon{socket: filepath.Join(sockDir, "s"), data: t.TempDir(), log: &testenv.SyncBuffer{}}
	o.Socket, o.DataDir, o.CacheDir = d.socket, d.data, testenv.CacheDir()
	o.Logger, o.DrainTimeout = zerolog.New(d.log), 20*time.Second
	ready := make(chan struct{})
	o.Ready = func(string) { close(ready) }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("the daemon stopped with an error: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("the daemon did not stop within a minute")
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("the daemon stopped before it was ready: %v\n%s", err, d.log.String())
	case <-time.After(2 * time.Minute):
		t.Fatalf("the daemon did not start within 2 minutes:\n%s", d.log.String())
	}
	return d
}

func (d *inProcessDaemon) cli(t *testing.T, args ...string) result {
	t.Helper()
	return runCLI(t, "", append([]string{args[0], "--socket", d.socket}, args[1:]...)...)
}

// beginTask runs `airlock task begin` and returns the task id.
func (d *inProcessDaemon) beginTask(t *testing.T) string {
	t.Helper()
	r := d.cli(t, "task", "begin", "--purpose", "revocation e2e")
	task := strings.TrimSpace(r.stdout)
	if r.code != 0 || !strings.HasPrefix(task, "tsk_") {
		t.Fatalf("task begin: %d %q %s", r.code, r.stdout, r.stderr)
	}
	return task
}

// fetch runs `airlock call --task TASK api.fetch` and returns the status
// and body the tool got from the resource server.
func (d *inProcessDaemon) fetch(t *testing.T, task string) (int, string) {
	t.Helper()
	r := d.cli(t, "call", "--task", task, "api.fetch", `{"url":"https://api.example.com/v1/resource"}`)
	var out struct {
		Status string          `json:"status"`
		Output json.RawMessage `json:"output"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || r.code != 0 || out.Status != "ok" {
		t.Fatalf("call api.fetch: exit %d: %v\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	var res struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
	}
	if err := json.Unmarshal(out.Output, &res); err != nil {
		t.Fatalf("api.fetch output %q: %v", out.Output, err)
	}
	return res.Status, res.Body
}

// endTask runs `airlock task end TASK`.
func (d *inProcessDaemon) endTask(t *testing.T, task string) {
	t.Helper()
	r := d.cli(t, "task", "end", task)
	if r.code != 0 || !strings.Contains(r.stdout, "ended_at") {
		t.Fatalf("task end: %d %s %s", r.code, r.stdout, r.stderr)
	}
}

// tokenLog records the bearer token of every request an API saw.
type tokenLog struct {
	mu     sync.Mutex
	tokens []string
}

func (l *tokenLog) record(tok string) {
	l.mu.Lock()
	l.tokens = append(l.tokens, tok)
	l.mu.Unlock()
}

// lastToken is the bearer token of the last request, failing the test when
// that request had none.
func (l *tokenLog) lastToken(t *testing.T) string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.tokens) == 0 || l.tokens[len(l.tokens)-1] == "" {
		t.Fatalf("the API saw no bearer token: %q", l.tokens)
	}
	return l.tokens[len(l.tokens)-1]
}

// resourceServer is an https API on loopback that accepts a request when
// check says its bearer token is good, and records every token it saw.
type resourceServer struct {
	srv   *httptest.Server
	check func(token string) error
	tokenLog
}

func newResourceServer(t *testing.T, check func(token string) error) *resourceServer {
	rs := &resourceServer{check: check}
	rs.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		rs.record(tok)
		if !ok || tok == "" {
			http.Error(w, "no bearer token", http.StatusUnauthorized)
			return
		}
		if err := rs.check(tok); err != nil {
			http.Error(w, "token refused: "+err.Error(), http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "granted")
	}))
	t.Cleanup(rs.srv.Close)
	return rs
}

// egressTo returns an egress client whose only reachable host is
// api.example.com, routed to rs (see loopbackEgress).
func (rs *resourceServer) egressTo(t *testing.T) *egress.Client { return loopbackEgress(t, rs.srv) }

// replay presents token to the resource server directly, as a thief
// holding it would after the task ended; it returns the status.
func (rs *resourceServer) replay(t *testing.T, token string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", rs.srv.URL+"/v1/resource", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := rs.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// fetchManifest writes the api.fetch manifest (build/wasm/httpfetch.wasm)
// whose credential comes from source, injected over http for
// api.example.com, into dir/m and returns that directory.
func fetchManifest(t *testing.T, dir, source, scopes string) string {
	t.Helper()
	fetch := filepath.Join(testenv.Root(t), "build", "wasm", "httpfetch.wasm")
	writeFile(t, filepath.Join(dir, "m", "api.fetch.yaml"), fmt.Sprintf(`apiVersion: airlock.dev/v1
kind: Tool
metadata: {name: api.fetch, version: 1.0.0, description: "http.fetch with a task-scoped token"}
spec:
  runtime:
    wasm: {module: %q, sha256: %q}
  input: {type: object}
  output: {type: object}
  capabilities:
    network:
      - {host: api.example.com, methods: [GET]}
    credentials:
      - name: api
        source: %s
        scopes: %s
        inject: {http: {host: api.example.com, header: Authorization, format: "Bearer {{token}}"}}
  limits: {memory: 64MiB, timeout: 20s, output: 1MiB}
  risk: low
`, fetch, testenv.SHA256File(t, fetch), source, scopes))
	return filepath.Join(dir, "m")
}

// hydraCredentials registers a client of h granted scopes, puts its
// secret in AIRLOCK_TEST_HYDRA_SECRET, and writes dir/credentials.yaml
// with one oauth2 source "hydra" for it, returning the file's path.
func hydraCredentials(t *testing.T, h *testenv.Hydra, dir string, scopes ...string) string {
	t.Helper()
	secret := "hydra-e2e-secret-" + hex.EncodeToString([]byte(t.Name()))[:16]
	clientID := h.CreateClient(t, secret, strings.Join(scopes, " "))
	t.Setenv("AIRLOCK_TEST_HYDRA_SECRET", secret)
	credFile := filepath.Join(dir, "credentials.yaml")
	writeFile(t, credFile, fmt.Sprintf(`apiVersion: airlock.dev/v1
kind: Credentials
sources:
  - name: hydra
    type: oauth2
    tokenURL: %s/oauth2/token
    revokeURL: %s/oauth2/revoke
    clientID: %s
    clientSecretEnv: AIRLOCK_TEST_HYDRA_SECRET
    scopes: [%s]
`, h.Public, h.Public, clientID, strings.Join(scopes, ", ")))
	return credFile
}

// After `airlock task end`, the OAuth 2.0 token a tool's call was given is
// no longer active at the authorization server (a real ORY Hydra), and
// the resource server that relies on Hydra's introspection refuses it.
func TestTaskEndRevokesOAuth2TokenAtHydra(t *testing.T) {
	h := testenv.StartHydra(t)

	rs := newResourceServer(t, func(token string) error {
		active, _, err := h.Introspect(token)
		if err != nil {
			return err
		}
		if !active {
			return fmt.Errorf("inactive")
		}
		return nil
	})
	dir := t.TempDir()
	credFile := hydraCredentials(t, h, dir, "repo:read", "repo:write")
	d := startInProcess(t, server.Options{
		ManifestsDir: fetchManifest(t, dir, "hydra", "[repo:read]"), PoliciesDir: testenv.Policy(t, "allow", testenv.AllowAll),
		CredentialsFile: credFile, Egress: rs.egressTo(t),
	})

	task := d.beginTask(t)
	if status, body := d.fetch(t, task); status != http.StatusOK || body != "granted" {
		t.Fatalf("before task end the resource server answered %d %q", status, body)
	}
	token := rs.lastToken(t)
	active, scope, err := h.Introspect(token)
	if err != nil || !active || scope != "repo:read" {
		t.Fatalf("before task end Hydra says active=%v scope=%q (%v); want active with the narrowed scope repo:read", active, scope, err)
	}

	d.endTask(t, task)
	if active, _, err := h.Introspect(token); err != nil || active {
		t.Fatalf("after `airlock task end` Hydra says the token is active=%v (%v)", active, err)
	}
	if code := rs.replay(t, token); code != http.StatusUnauthorized {
		t.Fatalf("after `airlock task end` the resource server answered %d to the token, want 401", code)
	}
	if strings.Contains(d.log.String(), token) {
		t.Fatal("the daemon's logs hold the token")
	}
}

// jwtVerifier checks a bearer JWT as a resource server would: its
// signature against the executor's JWKS (fetched over HTTP from
// --credentials-listen), its issuer, audience and expiry, and then the
// executor's introspection endpoint, which knows about revocation.
type jwtVerifier struct {
	base     string // http://127.0.0.1:PORT/credentials/SOURCE
	issuer   string
	audience string
}

func (v *jwtVerifier) check(token string) error {
	resp, err := http.Get(v.base + "/.well-known/jwks.json")
	if err != nil {
		return fmt.Errorf("fetch jwks: %w", err)
	}
	var jwks jose.JSONWebKeySet
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&jwks)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || len(jwks.Keys) == 0 {
		return fmt.Errorf("jwks: %d %v (%d keys)", resp.StatusCode, err, len(jwks.Keys))
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	var claims jwt.Claims
	if err := tok.Claims(jwks, &claims); err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	if err := claims.Validate(jwt.Expected{Issuer: v.issuer, AnyAudience: jwt.Audience{v.audience}, Time: time.Now()}); err != nil {
		return fmt.Errorf("claims: %w", err)
	}
	resp, err = http.PostForm(v.base+"/introspect", url.Values{"token": {token}})
	if err != nil {
		return fmt.Errorf("introspect: %w", err)
	}
	defer resp.Body.Close()
	var in struct {
		Active bool `json:"active"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&in); err != nil {
		return fmt.Errorf("introspect: %w", err)
	}
	if !in.Active {
		return fmt.Errorf("inactive")
	}
	return nil
}

// A JWT minted for a call verifies at a resource server (signature against
// the executor's JWKS served by --credentials-listen, and introspection)
// until `airlock task end`; then the same token is refused.
func TestTaskEndRevokesJWT(t *testing.T) {
	listen := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	v := &jwtVerifier{base: "http://" + listen + "/credentials/ci-jwt", issuer: "airlock-e2e", audience: "api.example.com"}
	var checks, refusals sync.Map
	rs := newResourceServer(t, func(token string) error {
		err := v.check(token)
		checks.Store(token, true)
		if err != nil {
			refusals.Store(token, err.Error())
		}
		return err
	})
	dir := t.TempDir()
	credFile := filepath.Join(dir, "credentials.yaml")
	writeFile(t, credFile, `apiVersion: airlock.dev/v1
kind: Credentials
sources:
  - {name: ci-jwt, type: jwt, issuer: airlock-e2e, audience: api.example.com, ttl: 10m}
`)
	d := startInProcess(t, server.Options{
		ManifestsDir: fetchManifest(t, dir, "ci-jwt", "[ci:read]"), PoliciesDir: testenv.Policy(t, "allow", testenv.AllowAll),
		CredentialsFile: credFile, CredentialsListen: listen, Egress: rs.egressTo(t),
	})

	task := d.beginTask(t)
	if status, body := d.fetch(t, task); status != http.StatusOK || body != "granted" {
		t.Fatalf("before task end the resource server answered %d %q", status, body)
	}
	token := rs.lastToken(t)
	if err := v.check(token); err != nil {
		t.Fatalf("before task end the token does not verify: %v", err)
	}
	// A forged token (another key, same claims) is refused: the check is real.
	if code := rs.replay(t, forgeJWT(t, "airlock-e2e", "api.example.com")); code != http.StatusUnauthorized {
		t.Fatalf("a forged token got %d, want 401", code)
	}

	d.endTask(t, task)
	err := v.check(token)
	if err == nil || !strings.Contains(err.Error(), "inactive") {
		t.Fatalf("after `airlock task end` the token verifies (err %v); want introspection to say inactive", err)
	}
	if code := rs.replay(t, token); code != http.StatusUnauthorized {
		t.Fatalf("after `airlock task end` the resource server answered %d to the token, want 401", code)
	}
	if strings.Contains(d.log.String(), token) {
		t.Fatal("the daemon's logs hold the token")
	}
}

// forgeJWT signs a token with the claims airlock's would have, with a key
// airlock never had.
func forgeJWT(t *testing.T, issuer, audience string) string {
	t.Helper()
	k, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte("0123456789abcdef0123456789abcdef")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jwt.Signed(k).Claims(jwt.Claims{Issuer: issuer, Audience: jwt.Audience{audience},
		Expiry: jwt.NewNumericDate(time.Now().Add(time.Minute))}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
