package credentials_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeOAuth is an OAuth 2.0 server on 127.0.0.1 with the client-credentials
// grant, RFC 7009 revocation and RFC 7662 introspection. It records every
// grant and revocation.
type fakeOAuth struct {
	srv          *httptest.Server
	clientID     string
	clientSecret string
	allowed      []string // scopes the client may get

	mu      sync.Mutex
	grants  []grant
	revoked []string
	active  map[string]bool
	// extraScope, when set, is added to every granted scope (a misbehaving
	// server).
	extraScope string
	// failRevoke makes revocation answer 503.
	failRevoke bool
}

type grant struct {
	Scope, Audience, Token string
}

func newFakeOAuth(t *testing.T, allowed ...string) *fakeOAuth {
	t.Helper()
	f := &fakeOAuth{clientID: "airlock-exec", clientSecret: "s3cret:with/odd&chars", allowed: allowed, active: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /token", f.token)
	mux.HandleFunc("POST /revoke", f.revoke)
	mux.HandleFunc("POST /introspect", f.introspect)
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/token", http.StatusTemporaryRedirect)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOAuth) authed(r *http.Request) bool {
	id, secret, ok := r.BasicAuth()
	if !ok {
		return false
	}
	id, _ = url.QueryUnescape(id)
	secret, _ = url.QueryUnescape(secret)
	return id == f.clientID && secret == f.clientSecret
}

func (f *fakeOAuth) token(w http.ResponseWriter, r *http.Request) {
	if !f.authed(r) {
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_client"})
		return
	}
	_ = r.ParseForm()
	if r.PostForm.Get("grant_type") != "client_credentials" {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "unsupported_grant_type"})
		return
	}
	scopes := strings.Fields(r.PostForm.Get("scope"))
	for _, s := range scopes {
		ok := false
		for _, a := range f.allowed {
			ok = ok || a == s
		}
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": "invalid_scope", "error_description": "scope " + s})
			return
		}
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	tok := "at_" + hex.EncodeToString(b[:])
	f.mu.Lock()
	scope := strings.Join(scopes, " ")
	if f.extraScope != "" {
		scope += " " + f.extraScope
	}
	f.grants = append(f.grants, grant{Scope: strings.Join(scopes, " "), Audience: r.PostForm.Get("audience"), Token: tok})
	f.active[tok] = true
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "bearer", "expires_in": 3600, "scope": scope})
}

func (f *fakeOAuth) revoke(w http.ResponseWriter, r *http.Request) {
	if !f.authed(r) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	_ = r.ParseForm()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failRevoke {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	tok := r.PostForm.Get("token")
	f.revoked = append(f.revoked, tok)
	delete(f.active, tok)
}

func (f *fakeOAuth) introspect(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	f.mu.Lock()
	active := f.active[r.PostForm.Get("token")]
	f.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]bool{"active": active})
}

func (f *fakeOAuth) isActive(tok string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.active[tok]
}

func (f *fakeOAuth) snapshot() ([]grant, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]grant(nil), f.grants...), append([]string(nil), f.revoked...)
}

// hour is a task expiry an hour away.
func hour() time.Time { return time.Now().Add(time.Hour) }
