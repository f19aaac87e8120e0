package egressproxy_test

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/internal/isolate"
	"github.com/airlock-dev/airlock/internal/testenv"
	"github.com/airlock-dev/airlock/runtime/egress"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/sandbox/plugin/egressproxy"
)

const (
	apiHost = "example.com" // a name in httptest's certificate
	apiIP   = "93.184.215.14"
	secret  = "Bearer s3cret-token"
)

type world struct {
	proxy   *egressproxy.Proxy
	client  *http.Client
	binding *egress.Binding
	hits    atomic.Int32
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{}
	api := httptest.NewTLSServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.hits.Add(1)
		switch r.URL.Path {
		case "/big":
			_, _ = rw.Write([]byte(strings.Repeat("x", 2<<20)))
			return
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			rw.Header().Set("X-Method", r.Method)
			_, _ = rw.Write(b)
			return
		}
		rw.Header().Set("Content-Type", "text/plain")
		// The server says whether the credential arrived, never its value.
		fmt.Fprintf(rw, "auth=%v ua=%s", r.Header.Get("Authorization") == secret, r.Header.Get("X-Plugin"))
	}))
	t.Cleanup(api.Close)
	roots := x509.NewCertPool()
	roots.AddCert(api.Certificate())
	c := testenv.LoopbackEgress(t, api.Listener.Addr().String(), apiIP, roots, map[string]string{apiHost: apiIP})
	b, err := c.Bind([]manifest.NetworkRule{{Host: apiHost, Methods: []string{"GET", "POST"}, Paths: []string{"/**"}}},
		[]egress.Injection{{CredentialName: "api", Host: apiHost, Header: "Authorization", Value: secret}})
	if err != nil {
		t.Fatal(err)
	}
	w.binding = b
	sock := filepath.Join(t.TempDir(), "egress.sock")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	w.proxy, err = egressproxy.Serve(ctx, sock, b, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.proxy.Close() })
	w.client = egressproxy.Client(sock, 20*time.Second)
	return w
}

type answer struct {
	status int
	code   string
	body   string
	header http.Header
}

func (w *world) do(t *testing.T, method, url string, body io.Reader, hdr map[string]string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := w.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, code: resp.Header.Get(egressproxy.HeaderError), body: string(b), header: resp.Header}
	if a.code != "" {
		var f struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(b, &f); err != nil || f.Error.Code != a.code || f.Error.Message == "" {
			t.Errorf("refusal body %q does not carry the code %s and a message", b, a.code)
		}
	}
	return a
}

func TestAllowedRequestGetsCredentialHostSide(t *testing.T) {
	w := newWorld(t)
	a := w.do(t, "GET", "https://"+apiHost+"/repos/x", nil, map[string]string{"X-Plugin": "p1"})
	if a.status != 200 || a.body != "auth=true ua=p1" {
		t.Fatalf("got %d %q (%s), want 200 with the credential attached upstream", a.status, a.body, a.code)
	}
	if strings.Contains(fmt.Sprint(a.header), "s3cret") {
		t.Errorf("the answer carries the credential: %v", a.header)
	}
	a = w.do(t, "POST", "https://"+apiHost+"/echo", strings.NewReader("payload"), nil)
	if a.status != 200 || a.body != "payload" || a.header.Get("X-Method") != "POST" {
		t.Errorf("POST: %d %q %v", a.status, a.body, a.header)
	}
}

func TestRefusals(t *testing.T) {
	w := newWorld(t)
	for _, c := range []struct {
		name, method, url string
		hdr               map[string]string
		status            int
		code              string
	}{
		{"host not allowed", "GET", "https://evil.example.org/", nil, 403, egress.CodeNotAllowed},
		{"method not allowed", "DELETE", "https://" + apiHost + "/x", nil, 403, egress.CodeNotAllowed},
		{"plain http", "GET", "http://" + apiHost + "/x", nil, 403, egress.CodeNotAllowed},
		{"literal loopback", "GET", "https://127.0.0.1/", nil, 403, egress.CodeForbiddenAddress},
		{"sets the injected header", "GET", "https://" + apiHost + "/x", map[string]string{"Authorization": "Bearer mine"}, 403, egress.CodeForbiddenHeader},
	} {
		a := w.do(t, c.method, c.url, nil, c.hdr)
		if a.status != c.status || a.code != c.code {
			t.Errorf("%s: got %d %s (%s), want %d %s", c.name, a.status, a.code, a.body, c.status, c.code)
		}
	}
	if n := w.hits.Load(); n != 0 {
		t.Errorf("refused requests reached the server %d time(s)", n)
	}
	a := w.do(t, "POST", "https://"+apiHost+"/echo", strings.NewReader(strings.Repeat("y", egressproxy.MaxBodyBytes+1)), nil)
	if a.status != 413 || a.code != egress.CodeTooLarge {
		t.Errorf("a large body: %d %s", a.status, a.code)
	}
	a = w.do(t, "GET", "https://"+apiHost+"/big", nil, nil)
	if a.status != 200 || a.header.Get(egressproxy.HeaderTruncated) != "true" || len(a.body) != egress.DefaultMaxResponseBytes {
		t.Errorf("a large response: %d, truncated %q, %d bytes", a.status, a.header.Get(egressproxy.HeaderTruncated), len(a.body))
	}
}

// raw sends text on the socket and returns the status line and headers.
func raw(t *testing.T, sock, text string) *http.Response {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, text); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestConnectAndOriginFormRefused(t *testing.T) {
	w := newWorld(t)
	r := raw(t, w.proxy.Path(), "CONNECT "+apiHost+":443 HTTP/1.1\r\nHost: "+apiHost+":443\r\n\r\n")
	if r.StatusCode != 405 || r.Header.Get(egressproxy.HeaderError) != egressproxy.CodeConnectRefused {
		t.Errorf("CONNECT: %d %s", r.StatusCode, r.Header.Get(egressproxy.HeaderError))
	}
	r = raw(t, w.proxy.Path(), "GET /x HTTP/1.1\r\nHost: "+apiHost+"\r\n\r\n")
	if r.StatusCode != 400 || r.Header.Get(egressproxy.HeaderError) != egress.CodeInvalidRequest {
		t.Errorf("origin form: %d %s", r.StatusCode, r.Header.Get(egressproxy.HeaderError))
	}
	r = raw(t, w.proxy.Path(), "GET https://"+apiHost+"/x HTTP/1.1\r\nHost: "+apiHost+"\r\nX-Big: "+strings.Repeat("z", egressproxy.MaxHeaderBytes+1024)+"\r\n\r\n")
	if r.StatusCode != 413 && r.StatusCode != 431 {
		t.Errorf("huge headers: %d, want 413 or 431", r.StatusCode)
	}
	if n := w.hits.Load(); n != 0 {
		t.Errorf("refused requests reached the server %d time(s)", n)
	}
}

func TestBindSwapsAndBudgets(t *testing.T) {
	w := newWorld(t)
	w.proxy.Bind(nil)
	a := w.do(t, "GET", "https://"+apiHost+"/x", nil, nil)
	if a.status != 403 || a.code != egressproxy.CodeNetworkNotGranted {
		t.Errorf("nil binding: %d %s", a.status, a.code)
	}
	w.proxy.Bind(w.binding)
	for i := 0; i < egressproxy.MaxRequests; i++ {
		if a := w.do(t, "GET", "https://"+apiHost+"/x", nil, nil); a.status != 200 {
			t.Fatalf("request %d: %d %s", i, a.status, a.code)
		}
	}
	a = w.do(t, "GET", "https://"+apiHost+"/x", nil, nil)
	if a.status != 429 || a.code != egressproxy.CodeBudgetExceeded {
		t.Errorf("past the budget: %d %s", a.status, a.code)
	}
	w.proxy.Bind(w.binding) // the next call
	if a := w.do(t, "GET", "https://"+apiHost+"/x", nil, nil); a.status != 200 {
		t.Errorf("after a new Bind: %d %s", a.status, a.code)
	}
}

func TestSocketModeAndClose(t *testing.T) {
	w := newWorld(t)
	fi, err := os.Stat(w.proxy.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	uid, gid := isolate.SandboxIDs()
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("socket owned by %d:%d, want the plugin's %d:%d", st.Uid, st.Gid, uid, gid)
	}
	if _, err := egressproxy.Serve(context.Background(), w.proxy.Path(), nil, zerolog.Nop()); err == nil {
		t.Error("Serve on an existing path succeeded")
	}
	if err := w.proxy.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(w.proxy.Path()); !os.IsNotExist(err) {
		t.Errorf("the socket remains after Close: %v", err)
	}
	if _, err := net.Dial("unix", w.proxy.Path()); err == nil {
		t.Error("dial after Close succeeded")
	}
}

// A process the peer check refuses never reaches the egress: the socket
// belongs to the plugin's uid, and another host process of that uid must
// not borrow the plugin's credentials.
func TestPeerCheck(t *testing.T) {
	w := newWorld(t)
	for _, tc := range []struct {
		name  string
		allow egressproxy.PeerCheck
		ok    bool
	}{
		{"this process allowed", func(pid int32) bool { return int(pid) == os.Getpid() }, true},
		{"this process refused", func(pid int32) bool { return int(pid) != os.Getpid() }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "egress.sock")
			p, err := egressproxy.ServePeers(context.Background(), sock, w.binding, tc.allow, zerolog.Nop())
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			before := w.hits.Load()
			resp, err := egressproxy.Client(sock, 5*time.Second).Get("https://" + apiHost + "/")
			if tc.ok {
				if err != nil {
					t.Fatalf("allowed peer: %v", err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.Contains(string(b), "auth=true") {
					t.Fatalf("allowed peer: %d %q", resp.StatusCode, b)
				}
				return
			}
			if err == nil {
				resp.Body.Close()
				t.Fatalf("refused peer got an answer: %d", resp.StatusCode)
			}
			if w.hits.Load() != before {
				t.Fatal("a refused peer's request reached the server")
			}
		})
	}
}
