package egress_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/runtime/egress"
	"github.com/airlock-dev/airlock/runtime/manifest"
)

// secret is the credential value; it must reach the api server only.
const secret = "s3cr3t-token-value-9f8e7d"

// Public-looking addresses the fake resolver returns. Nothing ever dials
// them: the test dialer maps them to loopback test servers.
const (
	ipAPI   = "93.184.216.34"
	ipOther = "151.101.1.1"
	ipEvil  = "6.6.6.6"
	ipWild  = "151.101.2.2"
)

// recorder is a test server that records every request it gets.
type recorder struct {
	name string
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []*recorded
}

type recorded struct {
	Method, Path, Host, SNI string
	Header                  http.Header
	Body                    string
}

func (r *recorder) record(req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	rec := &recorded{Method: req.Method, Path: req.URL.Path, Host: req.Host, Header: req.Header.Clone(), Body: string(body)}
	if req.TLS != nil {
		rec.SNI = req.TLS.ServerName
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, rec)
	r.mu.Unlock()
}

func (r *recorder) requests() []*recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*recorded(nil), r.reqs...)
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.reqs = nil
	r.mu.Unlock()
}

func (r *recorder) port() int { return r.srv.Listener.Addr().(*net.TCPAddr).Port }

// env is the test world: servers, a CA, a resolver and a dialer that can
// only reach those servers.
type env struct {
	t                       *testing.T
	api, other, evil, plain *recorder
	wild                    *recorder
	roots                   *x509.CertPool
	mu                      sync.Mutex
	lookups                 map[string]int
	dials                   []string
	names                   map[string][]string // host -> successive answers ("a,b" per lookup)
	routes                  map[string]string   // "ip:port" -> loopback server address
	logs                    bytes.Buffer
	logMu                   sync.Mutex
}

func (e *env) Write(p []byte) (int, error) {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	return e.logs.Write(p)
}

// LookupNetIP answers from e.names; the n-th lookup of a name gets the
// n-th answer (the last one repeats).
func (e *env) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	answers, ok := e.names[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	n := e.lookups[host]
	e.lookups[host] = n + 1
	if n >= len(answers) {
		n = len(answers) - 1
	}
	var out []netip.Addr
	for _, s := range strings.Split(answers[n], ",") {
		out = append(out, netip.MustParseAddr(s))
	}
	return out, nil
}

// DialContext connects only to the test servers, through e.routes or to a
// loopback test server port directly; anything else fails the test.
func (e *env) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	e.mu.Lock()
	e.dials = append(e.dials, addr)
	target, ok := e.routes[addr]
	e.mu.Unlock()
	if !ok {
		e.t.Errorf("the client asked to dial %s %s, which is not a test server: the egress checks let it through", network, addr)
		return nil, fmt.Errorf("test dialer: %s is not a test server", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", target)
}

func (e *env) dialed() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.dials...)
}

func (e *env) resetAll() {
	for _, r := range []*recorder{e.api, e.other, e.evil, e.plain, e.wild} {
		r.reset()
	}
	e.mu.Lock()
	e.dials = nil
	e.lookups = map[string]int{}
	e.mu.Unlock()
}

// noLeak fails when any server other than allowed received the secret, or
// any server received a request at all when allowed is nil.
func (e *env) noLeak(t *testing.T, sent ...*recorder) {
	t.Helper()
	for _, r := range []*recorder{e.api, e.other, e.evil, e.plain, e.wild} {
		reqs := r.requests()
		isSent := false
		for _, s := range sent {
			isSent = isSent || s == r
		}
		if !isSent && len(reqs) > 0 {
			t.Errorf("server %s received %d requests, want none: %+v", r.name, len(reqs), reqs[0])
		}
		if r == e.api {
			continue
		}
		for _, q := range reqs {
			for k, vs := range q.Header {
				for _, v := range vs {
					if strings.Contains(v, secret) {
						t.Errorf("server %s received the credential in header %s", r.name, k)
					}
				}
			}
		}
	}
	e.logMu.Lock()
	defer e.logMu.Unlock()
	if strings.Contains(e.logs.String(), secret) {
		t.Errorf("the credential appears in the logs")
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "egress test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return ca, key
}

func leaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, names ...string) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     names,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func newEnv(t *testing.T) *env {
	e := &env{t: t, lookups: map[string]int{}}
	ca, caKey := newCA(t)
	e.roots = x509.NewCertPool()
	e.roots.AddCert(ca)

	start := func(name string, tlsOn bool, h func(r *recorder, w http.ResponseWriter, req *http.Request), names ...string) *recorder {
		r := &recorder{name: name}
		r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			r.record(req)
			h(r, w, req)
		}))
		if tlsOn {
			r.srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf(t, ca, caKey, names...)}}
			r.srv.StartTLS()
		} else {
			r.srv.Start()
		}
		t.Cleanup(r.srv.Close)
		return r
	}
	plainOK := func(r *recorder, w http.ResponseWriter, req *http.Request) {
		fmt.Fprintf(w, "%s says hello", r.name)
	}
	e.api = start("api", true, func(r *recorder, w http.ResponseWriter, req *http.Request) {
		q := req.URL.Query()
		switch req.URL.Path {
		case "/ok":
			w.Header().Set("X-Reply", "yes")
			fmt.Fprintf(w, "hello %s", req.Method)
		case "/echo":
			b := r.requests()
			io.WriteString(w, b[len(b)-1].Body)
		case "/redirect":
			w.Header().Set("Location", q.Get("to"))
			code, _ := strconv.Atoi(q.Get("code"))
			if code == 0 {
				code = http.StatusFound
			}
			w.WriteHeader(code)
		case "/loop":
			http.Redirect(w, req, "/loop", http.StatusFound)
		case "/big":
			w.Write(bytes.Repeat([]byte("x"), 3000))
		case "/slow":
			select {
			case <-req.Context().Done():
			case <-time.After(5 * time.Second):
			}
		default:
			http.NotFound(w, req)
		}
	}, "api.test", "rebind.test")
	e.other = start("other", true, plainOK, "other.test")
	e.evil = start("evil", true, plainOK, "evil.test")
	e.wild = start("wild", true, plainOK, "*.wild.test")
	e.plain = start("plain", false, plainOK)

	e.names = map[string][]string{
		"api.test":      {ipAPI},
		"other.test":    {ipOther},
		"evil.test":     {ipEvil},
		"a.wild.test":   {ipWild},
		"wild.test":     {ipWild},
		"metadata.test": {"169.254.169.254"},
		"loopback.test": {"127.0.0.1"},
		"v6loop.test":   {"::1"},
		"mapped.test":   {"::ffff:10.0.0.1"},
		"private.test":  {"192.168.0.10"},
		"cgnat.test":    {"100.64.1.1"},
		"mixed.test":    {ipAPI + ",10.0.0.1"},
		"rebind.test":   {ipAPI, "10.0.0.1"},
	}
	e.routes = map[string]string{
		ipAPI + ":443":   e.api.srv.Listener.Addr().String(),
		ipOther + ":443": e.other.srv.Listener.Addr().String(),
		ipEvil + ":443":  e.evil.srv.Listener.Addr().String(),
		ipWild + ":443":  e.wild.srv.Listener.Addr().String(),
		// The literal-IP opt-in reaches the plain server on loopback.
		e.plain.srv.Listener.Addr().String(): e.plain.srv.Listener.Addr().String(),
	}
	return e
}

func (e *env) client(mod func(*egress.Config)) *egress.Client {
	cfg := egress.Config{
		Resolver:  e,
		Dialer:    e,
		TLSConfig: &tls.Config{RootCAs: e.roots, MinVersion: tls.VersionTLS12},
		Timeout:   5 * time.Second,
		Logger:    zerolog.New(e),
	}
	if mod != nil {
		mod(&cfg)
	}
	return egress.New(cfg)
}

var apiRules = []manifest.NetworkRule{
	{Host: "api.test", Methods: []string{"GET", "POST"}, Paths: []string{"/ok", "/echo", "/redirect", "/loop", "/big", "/slow"}},
	{Host: "other.test", Paths: []string{"/**"}},
	{Host: "metadata.test"}, {Host: "loopback.test"}, {Host: "v6loop.test"}, {Host: "mapped.test"},
	{Host: "private.test"}, {Host: "cgnat.test"}, {Host: "mixed.test"}, {Host: "rebind.test", Paths: []string{"/ok"}},
	{Host: "*.wild.test"},
}

var apiCred = egress.Injection{CredentialName: "github", Host: "api.test", Header: "Authorization", Value: "Bearer " + secret}

func wantCode(t *testing.T, err error, code string, contains ...string) *egress.Error {
	t.Helper()
	var ee *egress.Error
	if !errors.As(err, &ee) {
		t.Fatalf("got error %v (%T), want *egress.Error with code %s", err, err, code)
	}
	if ee.Code != code {
		t.Fatalf("got code %s (%v), want %s", ee.Code, err, code)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Errorf("error %q does not mention %q", err, c)
		}
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error %q contains the credential", err)
	}
	return ee
}

func TestAllowedHostGetsCredential(t *testing.T) {
	e := newEnv(t)
	c := e.client(nil)
	resp, err := c.Do(context.Background(), apiRules, []egress.Injection{apiCred}, egress.Request{
		Method: "POST", URL: "https://api.test/ok?x=1", Headers: map[string][]string{"X-Trace": {"t1"}}, Body: []byte("payload"),
	})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || string(resp.Body) != "hello POST" || resp.Headers["X-Reply"][0] != "yes" || resp.Truncated {
		t.Fatalf("response %+v", resp)
	}
	reqs := e.api.requests()
	if len(reqs) != 1 {
		t.Fatalf("api got %d requests", len(reqs))
	}
	r := reqs[0]
	if r.Header.Get("Authorization") != "Bearer "+secret || r.Header.Get("X-Trace") != "t1" || r.Body != "payload" {
		t.Errorf("api saw %+v", r)
	}
	if r.Host != "api.test" || r.SNI != "api.test" {
		t.Errorf("Host %q, SNI %q: want both api.test", r.Host, r.SNI)
	}
	if got := e.dialed(); len(got) != 1 || got[0] != ipAPI+":443" {
		t.Errorf("dialed %v, want exactly the checked %s:443", got, ipAPI)
	}
	e.noLeak(t, e.api)
	// The log has the request, but neither the credential nor the query.
	if !strings.Contains(e.logs.String(), `"host":"api.test"`) || strings.Contains(e.logs.String(), "x=1") {
		t.Errorf("log: %s", e.logs.String())
	}
}

func TestRefused(t *testing.T) {
	e := newEnv(t)
	c := e.client(nil)
	cases := []struct {
		name, method, url, code string
		contains                []string
	}{
		{"loopback literal", "GET", "https://127.0.0.1/ok", egress.CodeForbiddenAddress, []string{"127.0.0.1", "loopback"}},
		{"loopback literal with port", "GET", "http://127.0.0.1:" + strconv.Itoa(e.plain.port()) + "/ok", egress.CodeForbiddenAddress, []string{"127.0.0.1", "loopback"}},
		{"ipv6 loopback literal", "GET", "https://[::1]/ok", egress.CodeForbiddenAddress, []string{"::1", "loopback"}},
		{"metadata literal", "GET", "http://169.254.169.254/latest/meta-data/", egress.CodeForbiddenAddress, []string{"169.254.169.254", "link-local"}},
		{"mapped loopback literal", "GET", "https://[::ffff:127.0.0.1]/", egress.CodeForbiddenAddress, []string{"loopback"}},
		{"private literal", "GET", "https://10.1.2.3/", egress.CodeForbiddenAddress, []string{"10.1.2.3", "private"}},
		{"name to metadata", "GET", "https://metadata.test/", egress.CodeForbiddenAddress, []string{"metadata.test", "169.254.169.254", "link-local"}},
		{"name to loopback", "GET", "https://loopback.test/", egress.CodeForbiddenAddress, []string{"loopback.test", "127.0.0.1", "loopback"}},
		{"name to ipv6 loopback", "GET", "https://v6loop.test/", egress.CodeForbiddenAddress, []string{"v6loop.test", "::1"}},
		{"name to mapped private", "GET", "https://mapped.test/", egress.CodeForbiddenAddress, []string{"mapped.test", "10.0.0.1", "private"}},
		{"name to private", "GET", "https://private.test/", egress.CodeForbiddenAddress, []string{"192.168.0.10"}},
		{"name to cgnat", "GET", "https://cgnat.test/", egress.CodeForbiddenAddress, []string{"100.64.1.1", "carrier-grade"}},
		{"name to public and private", "GET", "https://mixed.test/", egress.CodeForbiddenAddress, []string{"mixed.test", "10.0.0.1"}},
		{"host outside allowlist", "GET", "https://evil.test/steal", egress.CodeNotAllowed, []string{"evil.test", "not in the allowlist", "api.test"}},
		{"method outside rule", "DELETE", "https://api.test/ok", egress.CodeNotAllowed, []string{"DELETE", "api.test", "capabilities.network[0]", "GET, POST"}},
		{"path outside rule", "GET", "https://api.test/admin", egress.CodeNotAllowed, []string{"/admin", "api.test", "capabilities.network[0]"}},
		{"port outside rule", "GET", "https://api.test:8443/ok", egress.CodeNotAllowed, []string{"8443", "api.test"}},
		{"scheme outside rule", "GET", "http://api.test/ok", egress.CodeNotAllowed, []string{"scheme http", "api.test"}},
		{"dot segments", "GET", "https://api.test/ok/../admin", egress.CodeNotAllowed, []string{"'..'"}},
		{"encoded dots", "GET", "https://api.test/%2e%2e/admin", egress.CodeNotAllowed, []string{"encoded"}},
		{"encoded slash", "GET", "https://api.test/ok%2F..%2Fadmin", egress.CodeNotAllowed, []string{"encoded"}},
		{"wildcard apex", "GET", "https://wild.test/", egress.CodeNotAllowed, []string{"wild.test"}},
		{"user info", "GET", "https://user:pw@api.test/ok", egress.CodeInvalidRequest, []string{"user info"}},
		{"numeric host", "GET", "https://2130706433/", egress.CodeInvalidRequest, []string{"non-standard"}},
		{"octal host", "GET", "https://0177.0.0.1/", egress.CodeInvalidRequest, []string{"non-standard"}},
		{"no scheme", "GET", "api.test/ok", egress.CodeInvalidRequest, []string{"scheme"}},
		{"ftp", "GET", "ftp://api.test/ok", egress.CodeInvalidRequest, []string{"ftp"}},
		{"lowercase method", "get", "https://api.test/ok", egress.CodeInvalidRequest, []string{"method"}},
		{"unknown name", "GET", "https://a.b.wild.test/", egress.CodeResolve, []string{"a.b.wild.test"}},
		{"redirect to host outside allowlist", "GET", "https://api.test/redirect?to=https://evil.test/steal", egress.CodeRedirectRefused, []string{"api.test redirected to https://evil.test/steal", "not in the allowlist"}},
		{"redirect to metadata", "GET", "https://api.test/redirect?to=http://169.254.169.254/latest/meta-data/", egress.CodeRedirectRefused, []string{"169.254.169.254", "link-local"}},
		{"redirect to loopback name", "GET", "https://api.test/redirect?to=https://loopback.test/x&code=307", egress.CodeRedirectRefused, []string{"loopback.test", "127.0.0.1"}},
		{"redirect to disallowed path", "GET", "https://api.test/redirect?to=/admin", egress.CodeRedirectRefused, []string{"/admin"}},
		{"redirect to plain http", "GET", "https://api.test/redirect?to=http://api.test/ok", egress.CodeRedirectRefused, []string{"scheme http"}},
		{"redirect loop", "GET", "https://api.test/loop", egress.CodeTooManyRedirects, []string{"more than 5"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.resetAll()
			e.t = t
			_, err := c.Do(context.Background(), apiRules, []egress.Injection{apiCred}, egress.Request{Method: tc.method, URL: tc.url})
			wantCode(t, err, tc.code, tc.contains...)
			switch {
			case strings.Contains(tc.name, "redirect"):
				// The allowed first hop went to the api server; nothing else did.
				e.noLeak(t, e.api)
				if n := len(e.api.requests()); n == 0 {
					t.Errorf("the api server saw no request")
				}
			default:
				e.noLeak(t)
				if d := e.dialed(); len(d) > 0 {
					t.Errorf("dialed %v for a refused request", d)
				}
			}
		})
	}
}

func TestCallerMayNotSetInjectedOrFramingHeaders(t *testing.T) {
	e := newEnv(t)
	c := e.client(nil)
	for _, h := range []string{"authorization", "Authorization", "Host", "Content-Length", "Transfer-Encoding", "Connection", "Proxy-Authorization"} {
		_, err := c.Do(context.Background(), apiRules, []egress.Injection{apiCred}, egress.Request{
			URL: "https://api.test/ok", Headers: map[string][]string{h: {"Bearer attacker"}},
		})
		wantCode(t, err, egress.CodeForbiddenHeader, "remove it")
	}
	_, err := c.Do(context.Background(), apiRules, []egress.Injection{apiCred}, egress.Request{
		URL: "https://api.test/ok", Headers: map[string][]string{"Authorization": {"x"}},
	})
	wantCode(t, err, egress.CodeForbiddenHeader, "credential github", "host-side")
	_, err = c.Do(context.Background(), apiRules, nil, egress.Request{URL: "https://api.test/ok", Headers: map[string][]string{"X-A": {"a\r\nX-Injected: 1"}}})
	wantCode(t, err, egress.CodeInvalidRequest, "control characters")
	e.noLeak(t)
	if len(e.api.requests()) != 0 {
		t.Fatal("a refused request reached the server")
	}
	// Without an injection for it, Authorization is the tool's own business.
	if _, err := c.Do(context.Background(), apiRules, nil, egress.Request{URL: "https://api.test/ok", Headers: map[string][]string{"Authorization": {"Bearer own"}}}); err != nil {
		t.Fatal(err)
	}
	if got := e.api.requests()[0].Header.Get("Authorization"); got != "Bearer own" {
		t.Fatalf("Authorization %q", got)
	}
}

func TestCrossHostRedirectDropsCredentials(t *testing.T) {
	e := newEnv(t)
	c := e.client(nil)
	otherCred := egress.Injection{CredentialName: "other", Host: "other.test", Header: "X-Api-Key", Value: "other-" + secret}
	resp, err := c.Do(context.Background(), apiRules, []egress.Injection{apiCred, otherCred}, egress.Request{URL: "https://api.test/redirect?to=https://other.test/landing"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || string(resp.Body) != "other says hello" {
		t.Fatalf("response %d %q", resp.Status, resp.Body)
	}
	if a := e.api.requests(); len(a) != 1 || a[0].Header.Get("Authorization") != "Bearer "+secret {
		t.Fatalf("the api server did not get the credential on the first hop: %+v", a)
	}
	o := e.other.requests()
	if len(o) != 1 {
		t.Fatalf("other got %d requests", len(o))
	}
	if o[0].Header.Get("Authorization") != "" || o[0].Header.Get("X-Api-Key") != "" {
		t.Errorf("a credential crossed the redirect: %v", o[0].Header)
	}
	e.noLeak(t, e.api, e.other)

	// With swaps the injections and keeps the rules.
	e.resetAll()
	bare, err := c.Bind(apiRules, []egress.Injection{apiCred})
	if err != nil {
		t.Fatal(err)
	}
	if bare, err = bare.With(nil); err != nil {
		t.Fatal(err)
	}
	if _, err := bare.Do(context.Background(), egress.Request{URL: "https://api.test/ok"}); err != nil {
		t.Fatal(err)
	}
	if got := e.api.requests()[0].Header.Get("Authorization"); got != "" {
		t.Fatalf("With(nil) still injects: %q", got)
	}
	if _, err := bare.Do(context.Background(), egress.Request{URL: "https://evil.test/"}); err == nil {
		t.Fatal("With lost the rules")
	}

	// A direct request to other.test gets its own credential, not api's.
	e.resetAll()
	if _, err := c.Do(context.Background(), apiRules, []egress.Injection{apiCred, otherCred}, egress.Request{URL: "https://other.test/x"}); err != nil {
		t.Fatal(err)
	}
	o = e.other.requests()
	if o[0].Header.Get("X-Api-Key") != "other-"+secret || o[0].Header.Get("Authorization") != "" {
		t.Errorf("other.test saw %v", o[0].Header)
	}
}

func TestSameHostRedirectKeepsCredential(t *testing.T) {
	e := newEnv(t)
	c := e.client(nil)
	// A 307 repeats the POST with its body; the credential stays.
	resp, err := c.Do(context.Background(), apiRules, []egress.Injection{apiCred}, egress.Request{Method: "POST", URL: "https://api.test/redirect?to=/echo&code=307", Body: []byte("again")})
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.Body) != "again" {
		t.Fatalf("body %q", resp.Body)
	}
	reqs := e.api.requests()
	if len(reqs) != 2 || reqs[1].Path != "/echo" || reqs[1].Method != "POST" || reqs[1].Header.Get("Authorization") != "Bearer "+secret {
		t.Fatalf("requests %+v", reqs)
	}
	// A 303 turns into a GET without the body.
	e.resetAll()
	if _, err := c.Do(context.Background(), apiRules, []egress.Injection{apiCred}, egress.Request{Method: "POST", URL: "https://api.test/redirect?to=/ok&code=303", Body: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	reqs = e.api.requests()
	if len(reqs) != 2 || reqs[1].Method != "GET" || reqs[1].Body != "" {
		t.Fatalf("requests %+v", reqs)
	}
}

func TestResolveOnceNoRebinding(t *testing.T) {
	e := newEnv(t)
	c := e.client(nil)
	// First lookup: a public address (served by the api server); a second
	// lookup would give 10.0.0.1. The request must use the first answer and
	// never look again.
	resp, err := c.Do(context.Background(), apiRules, []egress.Injection{apiCred}, egress.Request{URL: "https://rebind.test/ok"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 {
		t.Fatalf("status %d", resp.Status)
	}
	e.mu.Lock()
	n := e.lookups["rebind.test"]
	e.mu.Unlock()
	if n != 1 {
		t.Fatalf("rebind.test was looked up %d times, want once", n)
	}
	if d := e.dialed(); len(d) != 1 || d[0] != ipAPI+":443" {
		t.Fatalf("dialed %v", d)
	}
	r := e.api.requests()[0]
	if r.Host != "rebind.test" || r.SNI != "rebind.test" || r.Header.Get("Authorization") != "" {
		t.Fatalf("api saw %+v (the api.test credential must not go to rebind.test)", r)
	}
	// The next request resolves again, gets the private address and is refused.
	e.mu.Lock()
	e.dials = nil
	e.mu.Unlock()
	_, err = c.Do(context.Background(), apiRules, nil, egress.Request{URL: "https://rebind.test/ok"})
	wantCode(t, err, egress.CodeForbiddenAddress, "rebind.test", "10.0.0.1")
	if d := e.dialed(); len(d) != 0 {
		t.Fatalf("dialed %v", d)
	}
}

func TestLiteralAddressOptIn(t *testing.T) {
	e := newEnv(t)
	port := e.plain.port()
	rules := []manifest.NetworkRule{{Host: "127.0.0.1", Schemes: []string{"http"}, Ports: []int{port}, Paths: []string{"/ok"}}}
	cred := egress.Injection{CredentialName: "local", Host: "127.0.0.1", Header: "X-Key", Value: secret}
	url := "http://127.0.0.1:" + strconv.Itoa(port) + "/ok"

	// The rule names the literal address: that is the opt-in.
	resp, err := e.client(nil).Do(context.Background(), rules, nil, egress.Request{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.Body) != "plain says hello" {
		t.Fatalf("body %q", resp.Body)
	}
	// Another port of the same address is still refused.
	_, err = e.client(nil).Do(context.Background(), rules, nil, egress.Request{URL: "http://127.0.0.1:1/ok"})
	wantCode(t, err, egress.CodeNotAllowed, "port 1")

	// A credential is not sent over plain http unless the operator allows it.
	e.resetAll()
	_, err = e.client(nil).Do(context.Background(), rules, []egress.Injection{cred}, egress.Request{URL: url})
	wantCode(t, err, egress.CodeInsecureCredential, "credential local", "plain http")
	if len(e.plain.requests()) != 0 {
		t.Fatal("the request was sent")
	}
	_, err = e.client(func(c *egress.Config) { c.AllowCredentialsOverHTTP = true }).Do(context.Background(), rules, []egress.Injection{cred}, egress.Request{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.plain.requests()[0].Header.Get("X-Key"); got != secret {
		t.Fatalf("X-Key %q", got)
	}
}

func TestWildcardRule(t *testing.T) {
	e := newEnv(t)
	resp, err := e.client(nil).Do(context.Background(), apiRules, nil, egress.Request{URL: "https://a.wild.test/"})
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.Body) != "wild says hello" {
		t.Fatalf("body %q", resp.Body)
	}
}

func TestLimits(t *testing.T) {
	e := newEnv(t)
	c := e.client(func(c *egress.Config) { c.MaxResponseBytes = 1000; c.MaxRequestBytes = 10 })
	resp, err := c.Do(context.Background(), apiRules, nil, egress.Request{URL: "https://api.test/big"})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Truncated || len(resp.Body) != 1000 {
		t.Fatalf("truncated %v, %d bytes", resp.Truncated, len(resp.Body))
	}
	resp, err = c.Do(context.Background(), apiRules, nil, egress.Request{URL: "https://api.test/big", MaxResponseBytes: 100})
	if err != nil || !resp.Truncated || len(resp.Body) != 100 {
		t.Fatalf("per-request cap: %v", err)
	}
	_, err = c.Do(context.Background(), apiRules, nil, egress.Request{Method: "POST", URL: "https://api.test/ok", Body: make([]byte, 11)})
	wantCode(t, err, egress.CodeTooLarge, "11 bytes")

	slow := e.client(func(c *egress.Config) { c.Timeout = 200 * time.Millisecond })
	_, err = slow.Do(context.Background(), apiRules, nil, egress.Request{URL: "https://api.test/slow"})
	wantCode(t, err, egress.CodeTimeout, "api.test")

	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	_, err = c.Do(ctx, apiRules, nil, egress.Request{URL: "https://api.test/slow"})
	wantCode(t, err, egress.CodeCanceled)
}

func TestBadBindings(t *testing.T) {
	c := egress.New(egress.Config{})
	bad := []struct {
		rules  []manifest.NetworkRule
		inject []egress.Injection
		want   string
	}{
		{[]manifest.NetworkRule{{Host: ""}}, nil, "host is empty"},
		{[]manifest.NetworkRule{{Host: "a.*.org"}}, nil, "wildcard"},
		{[]manifest.NetworkRule{{Host: "a.org", Schemes: []string{"ftp"}}}, nil, "ftp"},
		{[]manifest.NetworkRule{{Host: "a.org", Paths: []string{"x"}}}, nil, "must start with /"},
		{nil, []egress.Injection{{CredentialName: "c", Host: "a.org", Header: "Bad Header", Value: "v"}}, "header name"},
		{nil, []egress.Injection{{CredentialName: "c", Host: "a.org", Header: "X-K", Value: "v\r\nX: y"}}, "not a valid header value"},
		{nil, []egress.Injection{{CredentialName: "c", Host: "a.org", Header: "Host", Value: "v"}}, "cannot carry"},
	}
	for _, b := range bad {
		_, err := c.Bind(b.rules, b.inject)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("Bind(%v, ...) = %v, want an error mentioning %q", b.rules, err, b.want)
		}
		if err != nil && strings.Contains(err.Error(), "v\r\nX") {
			t.Errorf("the error quotes the value: %v", err)
		}
	}
}
