package credentials_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"

	"github.com/airlock-dev/airlock/runtime/credentials"
)

var ctx = context.Background()

func TestStatic(t *testing.T) {
	t.Setenv("AIRLOCK_TEST_DEV_TOKEN", "dev-token-value-123")
	s, err := credentials.NewStatic("dev", "", "AIRLOCK_TEST_DEV_TOKEN")
	if err != nil {
		t.Fatal(err)
	}
	na := hour()
	c, err := s.Issue(ctx, credentials.IssueRequest{TaskID: "tsk_1", NotAfter: na})
	if err != nil {
		t.Fatal(err)
	}
	if c.Value != "dev-token-value-123" || !c.ExpiresAt.Equal(na) {
		t.Fatalf("got %+v", c)
	}
	if strings.Contains(fmt.Sprint(c), c.Value) || strings.Contains(fmt.Sprintf("%v", c), c.Value) {
		t.Fatal("printing a credential shows its value")
	}
	if _, err := s.Issue(ctx, credentials.IssueRequest{TaskID: "tsk_1", NotAfter: time.Now().Add(-time.Second)}); err == nil {
		t.Fatal("issued for an expired task")
	}
	if _, err := s.Issue(ctx, credentials.IssueRequest{TaskID: "tsk_1"}); err == nil {
		t.Fatal("issued without NotAfter")
	}
	os.Unsetenv("AIRLOCK_TEST_DEV_TOKEN")
	if _, err := s.Issue(ctx, credentials.IssueRequest{TaskID: "tsk_1", NotAfter: na}); !errors.Is(err, credentials.ErrSource) {
		t.Fatalf("unset env: %v", err)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "tok")
	if err := os.WriteFile(path, []byte("file-token-value\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := credentials.NewStatic("file", path, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Issue(ctx, credentials.IssueRequest{TaskID: "t", NotAfter: na}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable secret file: %v", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = f.Issue(ctx, credentials.IssueRequest{TaskID: "t", NotAfter: na})
	if err != nil || c.Value != "file-token-value" {
		t.Fatalf("file: %v %v", c, err)
	}
	if _, err := credentials.NewStatic("both", path, "X"); err == nil {
		t.Fatal("file and env both accepted")
	}
}

// resourceServer is a test API on 127.0.0.1 that accepts a bearer JWT only
// if it verifies against the executor's JWKS (fetched over HTTP) and the
// executor's introspection endpoint says it is active.
func resourceServer(t *testing.T, issuerURL, audience string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			http.Error(w, "no token", http.StatusUnauthorized)
			return
		}
		resp, err := http.Get(issuerURL + credentials.JWKSPath)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		var set jose.JSONWebKeySet
		err = json.NewDecoder(resp.Body).Decode(&set)
		resp.Body.Close()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			http.Error(w, "bad token", http.StatusUnauthorized)
			return
		}
		keys := set.Key(parsed.Headers[0].KeyID)
		if len(keys) != 1 {
			http.Error(w, "unknown key", http.StatusUnauthorized)
			return
		}
		var claims jwt.Claims
		if err := parsed.Claims(keys[0].Key, &claims); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if err := claims.Validate(jwt.Expected{AnyAudience: jwt.Audience{audience}, Time: time.Now()}); err != nil {
			http.Error(w, "invalid claims", http.StatusUnauthorized)
			return
		}
		resp, err = http.PostForm(issuerURL+credentials.IntrospectPath, url.Values{"token": {tok}})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		var in credentials.Introspection
		err = json.NewDecoder(resp.Body).Decode(&in)
		resp.Body.Close()
		if err != nil || !in.Active {
			http.Error(w, "token revoked", http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, "hello %s", claims.Subject)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestJWTVerifiedAndRevoked(t *testing.T) {
	j, err := credentials.NewJWT("ci-jwt", credentials.JWTOptions{Issuer: "airlock", Audience: "ci.example.org", TTL: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	exec := httptest.NewServer(j.Handler())
	t.Cleanup(exec.Close)
	api := resourceServer(t, exec.URL, "ci.example.org")

	notAfter := time.Now().Add(30 * time.Second)
	c, err := j.Issue(ctx, credentials.IssueRequest{LeaseID: "lse_1", TaskID: "tsk_1", Tool: "ci.trigger",
		CallerSPIFFEID: "spiffe://airlock.local/agent/a", Scopes: []string{"builds:write", "logs:read"}, NotAfter: notAfter})
	if err != nil {
		t.Fatal(err)
	}
	if c.ExpiresAt.After(notAfter) {
		t.Fatalf("token expires %s, after the task %s", c.ExpiresAt, notAfter)
	}
	if code, body := call(t, api.URL, c.Value); code != 200 || body != "hello spiffe://airlock.local/agent/a" {
		t.Fatalf("before revoke: %d %q", code, body)
	}
	in := j.Introspect(c.Value)
	if !in.Active || in.ID != "lse_1" || in.Task != "tsk_1" || in.Tool != "ci.trigger" || in.Scope != "builds:write logs:read" ||
		in.Audience != "ci.example.org" || in.Issuer != "airlock" || in.ExpiresAt != c.ExpiresAt.Unix() {
		t.Fatalf("introspection: %+v", in)
	}
	if err := j.Revoke(ctx, c); err != nil {
		t.Fatal(err)
	}
	if code, body := call(t, api.URL, c.Value); code != http.StatusUnauthorized || !strings.Contains(body, "revoked") {
		t.Fatalf("after revoke: %d %q", code, body)
	}
	// A token signed by another key with the same kid is refused.
	other, _ := credentials.NewJWT("x", credentials.JWTOptions{Issuer: "airlock", Audience: "ci.example.org"})
	c2, err := other.Issue(ctx, credentials.IssueRequest{LeaseID: "lse_2", TaskID: "t", CallerSPIFFEID: "spiffe://a/b", NotAfter: hour()})
	if err != nil {
		t.Fatal(err)
	}
	if j.Introspect(c2.Value).Active {
		t.Fatal("a foreign token is active")
	}
	if code, _ := call(t, api.URL, c2.Value); code != http.StatusUnauthorized {
		t.Fatalf("foreign token: %d", code)
	}
	// Garbage and missing fields.
	if j.Introspect("not.a.jwt").Active {
		t.Fatal("garbage is active")
	}
	resp, err := http.PostForm(exec.URL+credentials.IntrospectPath, url.Values{})
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("introspect without token: %v %v", resp.Status, err)
	}
	resp.Body.Close()
	if _, err := j.Issue(ctx, credentials.IssueRequest{TaskID: "t", CallerSPIFFEID: "spiffe://a/b", NotAfter: hour()}); err == nil {
		t.Fatal("issued without a lease id")
	}
	if _, err := j.Issue(ctx, credentials.IssueRequest{LeaseID: "l", TaskID: "t", NotAfter: hour()}); err == nil {
		t.Fatal("issued without a subject")
	}
}

func TestJWTExpiryAndBound(t *testing.T) {
	now := time.Now()
	clock := now
	j, err := credentials.NewJWT("j", credentials.JWTOptions{Issuer: "i", Audience: "a", TTL: time.Minute, MaxActive: 2,
		Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	issue := func(id string) (*credentials.Credential, error) {
		return j.Issue(ctx, credentials.IssueRequest{LeaseID: id, TaskID: "t", CallerSPIFFEID: "spiffe://a/b", NotAfter: now.Add(time.Hour)})
	}
	c1, err := issue("l1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := issue("l2"); err != nil {
		t.Fatal(err)
	}
	if _, err := issue("l3"); !errors.Is(err, credentials.ErrSource) {
		t.Fatalf("third active token: %v", err)
	}
	clock = now.Add(2 * time.Minute) // both expired: pruned
	if j.Introspect(c1.Value).Active {
		t.Fatal("expired token is active")
	}
	if _, err := issue("l3"); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

func TestJWTKeyFile(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	path := filepath.Join(dir, "k.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := credentials.NewJWT("a", credentials.JWTOptions{Issuer: "i", Audience: "x", KeyFile: path})
	if err != nil {
		t.Fatal(err)
	}
	b, err := credentials.NewJWT("b", credentials.JWTOptions{Issuer: "i", Audience: "x", KeyFile: path})
	if err != nil {
		t.Fatal(err)
	}
	if a.KeyID() != b.KeyID() || !strings.Contains(string(a.JWKS()), a.KeyID()) || strings.Contains(string(a.JWKS()), `"d"`) {
		t.Fatalf("kid %s / %s; jwks %s", a.KeyID(), b.KeyID(), a.JWKS())
	}
	// A restarted source with the same key does not know earlier tokens:
	// they are inactive (fail closed).
	c, err := a.Issue(ctx, credentials.IssueRequest{LeaseID: "l", TaskID: "t", CallerSPIFFEID: "spiffe://a/b", NotAfter: hour()})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Introspect(c.Value).Active || b.Introspect(c.Value).Active {
		t.Fatal("introspection after restart")
	}
	_ = os.Chmod(path, 0o644)
	if _, err := credentials.NewJWT("c", credentials.JWTOptions{Issuer: "i", Audience: "x", KeyFile: path}); err == nil {
		t.Fatal("world-readable key accepted")
	}
	rsa := filepath.Join(dir, "bad.pem")
	_ = os.WriteFile(rsa, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600)
	if _, err := credentials.NewJWT("d", credentials.JWTOptions{Issuer: "i", Audience: "x", KeyFile: rsa}); err == nil {
		t.Fatal("certificate accepted as key")
	}
}

func oauthSource(t *testing.T, f *fakeOAuth, scopes ...string) *credentials.OAuth2 {
	t.Helper()
	o, err := credentials.NewOAuth2("gh", credentials.OAuth2Options{TokenURL: f.srv.URL + "/token", RevokeURL: f.srv.URL + "/revoke",
		ClientID: f.clientID, ClientSecret: f.clientSecret, Scopes: scopes, Audience: "api.example.org"})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestOAuth2NarrowsIssuesAndRevokes(t *testing.T) {
	f := newFakeOAuth(t, "repo:read", "repo:write", "admin")
	o := oauthSource(t, f, "repo:read", "repo:write")
	c, err := o.Issue(ctx, credentials.IssueRequest{LeaseID: "l1", TaskID: "t", Scopes: []string{"admin", "repo:read", "repo:read"}, NotAfter: hour()})
	if err != nil {
		t.Fatal(err)
	}
	grants, _ := f.snapshot()
	if len(grants) != 1 || grants[0].Scope != "repo:read" || grants[0].Audience != "api.example.org" || grants[0].Token != c.Value {
		t.Fatalf("grants %+v", grants)
	}
	if !slices.Equal(c.Scopes, []string{"repo:read"}) || c.SourceRef != c.Value {
		t.Fatalf("credential scopes %v", c.Scopes)
	}
	if d := time.Until(c.ExpiresAt); d > time.Hour || d < 59*time.Minute {
		t.Fatalf("expiry in %s", d)
	}
	if !f.isActive(c.Value) {
		t.Fatal("token not active")
	}
	if err := o.Revoke(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, revoked := f.snapshot(); len(revoked) != 1 || revoked[0] != c.Value || f.isActive(c.Value) {
		t.Fatalf("revoked %v", revoked)
	}
	// expires_in shortens the lease below NotAfter; NotAfter caps it.
	short := time.Now().Add(10 * time.Minute)
	c, err = o.Issue(ctx, credentials.IssueRequest{LeaseID: "l2", TaskID: "t", Scopes: []string{"repo:write"}, NotAfter: short})
	if err != nil || !c.ExpiresAt.Equal(short) {
		t.Fatalf("short task: %v %v", c, err)
	}
	// Nothing allowed: refused before any request.
	if _, err := o.Issue(ctx, credentials.IssueRequest{LeaseID: "l3", TaskID: "t", Scopes: []string{"admin"}, NotAfter: hour()}); err == nil ||
		!strings.Contains(err.Error(), "none of the scopes") {
		t.Fatalf("disallowed scope: %v", err)
	}
	if grants, _ := f.snapshot(); len(grants) != 2 {
		t.Fatalf("%d grants", len(grants))
	}
}

func TestOAuth2FailsClosed(t *testing.T) {
	f := newFakeOAuth(t, "repo:read")
	o := oauthSource(t, f, "repo:read")
	req := credentials.IssueRequest{LeaseID: "l", TaskID: "t", Scopes: []string{"repo:read"}, NotAfter: hour()}

	// The server grants more than asked: the token is revoked, Issue fails.
	f.mu.Lock()
	f.extraScope = "admin"
	f.mu.Unlock()
	if _, err := o.Issue(ctx, req); err == nil || !strings.Contains(err.Error(), `granted scope "admin"`) {
		t.Fatalf("over-granted: %v", err)
	}
	grants, revoked := f.snapshot()
	if len(revoked) != 1 || revoked[0] != grants[0].Token {
		t.Fatalf("over-granted token not revoked: %v", revoked)
	}
	f.mu.Lock()
	f.extraScope = ""
	f.mu.Unlock()

	// Wrong secret: the error names the OAuth error, not the secret.
	bad, _ := credentials.NewOAuth2("gh", credentials.OAuth2Options{TokenURL: f.srv.URL + "/token", RevokeURL: f.srv.URL + "/revoke",
		ClientID: f.clientID, ClientSecret: "wrong-secret-value", Scopes: []string{"repo:read"}})
	_, err := bad.Issue(ctx, req)
	if err == nil || !strings.Contains(err.Error(), "401: invalid_client") || strings.Contains(err.Error(), "wrong-secret-value") {
		t.Fatalf("bad client: %v", err)
	}
	// A redirect is not followed.
	redir, _ := credentials.NewOAuth2("gh", credentials.OAuth2Options{TokenURL: f.srv.URL + "/redirect", RevokeURL: f.srv.URL + "/revoke",
		ClientID: f.clientID, ClientSecret: f.clientSecret, Scopes: []string{"repo:read"}})
	if _, err := redir.Issue(ctx, req); err == nil || !strings.Contains(err.Error(), "307") {
		t.Fatalf("redirect: %v", err)
	}
	// Revocation failure is an error.
	c, err := o.Issue(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.failRevoke = true
	f.mu.Unlock()
	if err := o.Revoke(ctx, c); err == nil || strings.Contains(err.Error(), c.Value) {
		t.Fatalf("failed revoke: %v", err)
	}
	// Endpoints: http only to loopback.
	for _, u := range []string{"http://auth.example.org/token", "ftp://x/y", "https://user:pw@x/token", "/token", ""} {
		if _, err := credentials.NewOAuth2("gh", credentials.OAuth2Options{TokenURL: u, RevokeURL: f.srv.URL + "/revoke",
			ClientID: "c", ClientSecret: "s", Scopes: []string{"a"}}); err == nil {
			t.Errorf("token URL %q accepted", u)
		}
	}
}

type fakeFetcher struct {
	token string
	err   error
	got   jwtsvid.Params
}

func (f *fakeFetcher) FetchJWTSVID(_ context.Context, p jwtsvid.Params) (*jwtsvid.SVID, error) {
	f.got = p
	if f.err != nil {
		return nil, f.err
	}
	return jwtsvid.ParseInsecure(f.token, []string{p.Audience})
}

// svidToken signs a JWT-SVID-shaped token (the fake Workload API's answer).
func svidToken(t *testing.T, sub, aud string, exp time.Time) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: "k"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(sig).Claims(jwt.Claims{Subject: sub, Audience: jwt.Audience{aud}, Expiry: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(time.Now())}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestSPIFFEJWT uses a fake Workload API client (the JWTSVIDFetcher
// interface), not SPIRE: it checks the source's own logic.
func TestSPIFFEJWT(t *testing.T) {
	svidExp := time.Now().Add(5 * time.Minute).Truncate(time.Second)
	f := &fakeFetcher{token: svidToken(t, "spiffe://airlock.local/executor", "vault.example.org", svidExp)}
	s, err := credentials.NewSPIFFEJWT("svid", credentials.SPIFFEJWTOptions{Audience: "vault.example.org", Fetcher: f})
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Issue(ctx, credentials.IssueRequest{LeaseID: "l", TaskID: "t", NotAfter: hour()})
	if err != nil {
		t.Fatal(err)
	}
	if c.Value != f.token || !c.ExpiresAt.Equal(svidExp) || f.got.Audience != "vault.example.org" {
		t.Fatalf("got %v, params %+v", c, f.got)
	}
	short := time.Now().Add(time.Minute)
	if c, err = s.Issue(ctx, credentials.IssueRequest{LeaseID: "l", TaskID: "t", NotAfter: short}); err != nil || !c.ExpiresAt.Equal(short) {
		t.Fatalf("lease expiry not capped by task: %v %v", c, err)
	}
	// A request for another audience than the SVID holds is refused.
	if _, err := s.Issue(ctx, credentials.IssueRequest{LeaseID: "l", TaskID: "t", NotAfter: hour(), Audience: "other"}); err == nil {
		t.Fatal("wrong audience accepted")
	}
	f.err = errors.New("no identity issued")
	if _, err := s.Issue(ctx, credentials.IssueRequest{LeaseID: "l", TaskID: "t", NotAfter: hour()}); !errors.Is(err, credentials.ErrSource) {
		t.Fatalf("fetch error: %v", err)
	}
	if _, err := credentials.NewSPIFFEJWT("x", credentials.SPIFFEJWTOptions{}); err == nil {
		t.Fatal("no audience accepted")
	}
	if _, err := credentials.NewSPIFFEJWT("x", credentials.SPIFFEJWTOptions{Audience: "a", Subject: "not-spiffe"}); err == nil {
		t.Fatal("bad subject accepted")
	}
	// Without a fetcher it dials the socket it is given, and fails closed
	// when nothing listens there.
	d, err := credentials.NewSPIFFEJWT("dial", credentials.SPIFFEJWTOptions{Audience: "a", Socket: "unix://" + filepath.Join(t.TempDir(), "none.sock")})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	tctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := d.Issue(tctx, credentials.IssueRequest{LeaseID: "l", TaskID: "t", NotAfter: hour()}); err == nil {
		t.Fatal("issued without a Workload API")
	}
}
