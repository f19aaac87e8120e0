package wasm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/wasmtest"
	"github.com/airlock-dev/airlock/runtime/egress"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/sandbox"
	"github.com/airlock-dev/airlock/sandbox/wasm"
)

const httpSecret = "tok-5e6f7a8b9c0d-secret"

// ipAPI is the address the fake resolver gives api.test; the test dialer
// maps it to the loopback test server and refuses everything else.
const ipAPI = "93.184.216.34"

// httpWorld is a loopback test server reachable as api.test through an
// egress client that can dial nothing else.
type httpWorld struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	seen   []http.Header
	client *egress.Client
}

func (w *httpWorld) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	switch host {
	case "api.test", "evil.test":
		return []netip.Addr{netip.MustParseAddr(ipAPI)}, nil
	case "metadata.test":
		return []netip.Addr{netip.MustParseAddr("169.254.169.254")}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func (w *httpWorld) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if addr != ipAPI+":80" {
		w.t.Errorf("the egress client asked to dial %s, which is not the test server", addr)
		return nil, fmt.Errorf("test dialer: %s refused", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", w.srv.Listener.Addr().String())
}

func (w *httpWorld) headers() []http.Header {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]http.Header(nil), w.seen...)
}

func newHTTPWorld(t *testing.T) *httpWorld {
	w := &httpWorld{t: t}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w.mu.Lock()
		w.seen = append(w.seen, r.Header.Clone())
		w.mu.Unlock()
		switch r.URL.Path {
		case "/hello":
			rw.Header().Set("Content-Type", "application/json")
			rw.Header().Add("X-Multi", "a")
			rw.Header().Add("X-Multi", "b")
			fmt.Fprintf(rw, `{"hello":"world","method":%q}`, r.Method)
		case "/big":
			rw.Write(bytes.Repeat([]byte("0123456789"), 20_000)) // 200 kB: past the SDK's first buffer
		case "/redirect":
			http.Redirect(rw, r, "http://evil.test/steal", http.StatusFound)
		default:
			http.NotFound(rw, r)
		}
	}))
	t.Cleanup(w.srv.Close)
	w.client = egress.New(egress.Config{Resolver: w, Dialer: w, AllowCredentialsOverHTTP: true, Timeout: 5 * time.Second})
	return w
}

var httpRules = []manifest.NetworkRule{{Host: "api.test", Schemes: []string{"http"}, Methods: []string{"GET", "POST"}, Paths: []string{"/hello", "/big", "/redirect"}}}

func (w *httpWorld) bind(t *testing.T) *egress.Binding {
	b, err := w.client.Bind(httpRules, []egress.Injection{{CredentialName: "api", Host: "api.test", Header: "Authorization", Value: "Bearer " + httpSecret}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func withNetwork(rules []manifest.NetworkRule) opt {
	return func(m *manifest.Manifest) { m.Spec.Capabilities.Network = rules }
}

// buildFetch builds tools/httpfetch for wasip1 (go's build cache keeps it
// cheap; not wasmtest.BuildGo, whose cache key ignores tools/sdk).
func buildFetch(t *testing.T) (string, string) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "httpfetch.wasm")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, "./tools/httpfetch")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build tools/httpfetch: %v\n%s", err, msg)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return out, wasmtest.Sum(bin)
}

func prepareFetch(t *testing.T, b *wasm.Backend) sandbox.Tool {
	t.Helper()
	path, sum := buildFetch(t)
	m := newManifest("http.fetch", path, sum)
	m.Spec.Limits.Timeout = manifest.Duration(20 * time.Second)
	m.Spec.Capabilities.Network = httpRules
	tl, err := b.Prepare(context.Background(), m)
	if err != nil {
		t.Fatalf("prepare http.fetch: %v", err)
	}
	t.Cleanup(func() { _ = tl.Close(context.Background()) })
	return tl
}

type fetchOut struct {
	Status    int               `json:"status"`
	Headers   map[string]string `json:"headers"`
	Body      string            `json:"body"`
	Truncated bool              `json:"truncated"`
}

func TestHTTPFetchThroughSandbox(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasip1 module")
	}
	w := newHTTPWorld(t)
	tl := prepareFetch(t, shared)
	run := func(call *sandbox.Call) (*sandbox.Result, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return tl.Run(ctx, call)
	}

	// Allowed: the credential reaches the server, never the tool's output.
	res, err := run(&sandbox.Call{Input: []byte(`{"url": "http://api.test/hello", "method": "POST", "headers": {"Accept": "application/json"}, "body": "hi"}`), Egress: w.bind(t)})
	if err != nil {
		t.Fatal(err)
	}
	var out fetchOut
	if err := json.Unmarshal(res.Output, &out); err != nil {
		t.Fatalf("output %s: %v", res.Output, err)
	}
	if out.Status != 200 || out.Body != `{"hello":"world","method":"POST"}` || out.Headers["X-Multi"] != "a, b" || out.Truncated {
		t.Fatalf("output %+v", out)
	}
	seen := w.headers()
	if len(seen) != 1 || seen[0].Get("Authorization") != "Bearer "+httpSecret || seen[0].Get("Accept") != "application/json" {
		t.Fatalf("the server saw %v", seen)
	}
	if bytes.Contains(res.Output, []byte(httpSecret)) || bytes.Contains(res.Stderr, []byte(httpSecret)) {
		t.Fatal("the credential reached the tool's output")
	}

	// A response larger than the SDK's first buffer comes through http_result.
	res, err = run(&sandbox.Call{Input: []byte(`{"url": "http://api.test/big"}`), Egress: w.bind(t)})
	if err != nil {
		t.Fatal(err)
	}
	out = fetchOut{}
	if err := json.Unmarshal(res.Output, &out); err != nil || len(out.Body) != 200_000 || out.Truncated {
		t.Fatalf("big: %d bytes, truncated %v, %v", len(out.Body), out.Truncated, err)
	}

	// Refusals reach the tool as coded errors, and it fails with them.
	refused := []struct{ input, want string }{
		{`{"url": "http://evil.test/steal"}`, "not_allowed: host evil.test is not in the allowlist"},
		{`{"url": "http://api.test/admin"}`, "not_allowed: path /admin"},
		{`{"url": "http://api.test/hello", "method": "DELETE"}`, "not_allowed: method DELETE"},
		{`{"url": "http://169.254.169.254/latest/meta-data/"}`, "forbidden_address: host 169.254.169.254 is a link-local address"},
		{`{"url": "http://127.0.0.1/"}`, "forbidden_address: host 127.0.0.1 is a loopback address"},
		{`{"url": "http://[::1]/"}`, "forbidden_address: host ::1 is a loopback address"},
		{`{"url": "http://api.test/redirect"}`, "redirect_refused: api.test redirected to http://evil.test/steal"},
		{`{"url": "http://api.test/hello", "headers": {"Authorization": "Bearer stolen"}}`, "forbidden_header: the request sets header Authorization"},
	}
	for _, r := range refused {
		before := len(w.headers())
		_, err := run(&sandbox.Call{Input: []byte(r.input), Egress: w.bind(t)})
		se := wantKind(t, err, sandbox.KindExit)
		if !strings.Contains(string(se.Stderr), r.want) {
			t.Errorf("%s: stderr %q does not contain %q", r.input, se.Stderr, r.want)
		}
		if strings.Contains(err.Error(), httpSecret) {
			t.Errorf("%s: the error carries the credential", r.input)
		}
		// Only the redirect's allowed first hop (to api.test) was sent.
		want := 0
		if strings.Contains(r.input, "redirect") {
			want = 1
		}
		if got := w.headers()[before:]; len(got) != want {
			t.Errorf("%s: the server got %d requests, want %d", r.input, len(got), want)
		}
	}

	// No egress for the call: the guest is told the network is not granted.
	_, err = run(&sandbox.Call{Input: []byte(`{"url": "http://api.test/hello"}`)})
	se := wantKind(t, err, sandbox.KindExit)
	if !strings.Contains(string(se.Stderr), "network_not_granted") {
		t.Fatalf("stderr %q", se.Stderr)
	}
}

func TestHTTPResponseBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasip1 module")
	}
	w := newHTTPWorld(t)
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	b, err := wasm.New(context.Background(), wasm.Config{CacheDir: filepath.Join(base, "airlock-wasmtest", "wazero"), MaxHTTPResponseBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	tl := prepareFetch(t, b)
	res, err := tl.Run(context.Background(), &sandbox.Call{Input: []byte(`{"url": "http://api.test/big"}`), Egress: w.bind(t)})
	if err != nil {
		t.Fatal(err)
	}
	var out fetchOut
	if err := json.Unmarshal(res.Output, &out); err != nil || len(out.Body) != 1000 || !out.Truncated {
		t.Fatalf("budgeted: %d bytes, truncated %v, %v", len(out.Body), out.Truncated, err)
	}
}

func TestHTTPABIEdges(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a wasip1 module")
	}
	w := newHTTPWorld(t)
	tl := goTool(t, "httpabi", withNetwork(httpRules))
	res, err := tl.Run(context.Background(), &sandbox.Call{Input: []byte(`{"url": "http://api.test/hello"}`), Egress: w.bind(t)})
	if err != nil {
		t.Fatal(err)
	}
	var steps []struct {
		Name   string `json:"name"`
		Errno  uint32 `json:"errno"`
		Len    uint32 `json:"len"`
		Result string `json:"result"`
	}
	if err := json.Unmarshal(res.Output, &steps); err != nil {
		t.Fatalf("output %s: %v", res.Output, err)
	}
	got := map[string]int{}
	for i, s := range steps {
		got[s.Name] = i
	}
	step := func(name string) (uint32, uint32, string) {
		s := steps[got[name]]
		return s.Errno, s.Len, s.Result
	}
	if e, _, _ := step("result-before-request"); e != wasm.ErrnoNoResult {
		t.Errorf("http_result before any request: errno %d", e)
	}
	if e, _, _ := step("request-fault"); e != wasm.ErrnoFault {
		t.Errorf("out-of-memory pointers: errno %d", e)
	}
	e, n, _ := step("request-small")
	if e != wasm.ErrnoTooSmall || n < 20 {
		t.Errorf("small buffer: errno %d, len %d", e, n)
	}
	if e, n2, _ := step("result-still-small"); e != wasm.ErrnoTooSmall || n2 != n {
		t.Errorf("still small: errno %d, len %d", e, n2)
	}
	e, n3, result := step("result-full")
	if e != wasm.ErrnoOK || n3 != n || !strings.Contains(result, `"status":200`) {
		t.Errorf("full: errno %d, len %d, %s", e, n3, result)
	}
	if e, _, _ := step("result-again"); e != wasm.ErrnoNoResult {
		t.Errorf("result fetched twice: errno %d", e)
	}
	if e, _, r := step("request-malformed"); e != wasm.ErrnoOK || !strings.Contains(r, `"code":"invalid_request"`) {
		t.Errorf("malformed: errno %d, %s", e, r)
	}
	if e, _, r := step("request-own-authorization"); e != wasm.ErrnoOK || !strings.Contains(r, `"code":"forbidden_header"`) {
		t.Errorf("own authorization: errno %d, %s", e, r)
	}
	if strings.Contains(string(res.Output), httpSecret) {
		t.Error("the credential reached guest memory")
	}
	// One request reached the server (request-small), with the credential.
	if h := w.headers(); len(h) != 1 || h[0].Get("Authorization") != "Bearer "+httpSecret {
		t.Errorf("server saw %v", h)
	}
}

func TestHTTPImportChecks(t *testing.T) {
	// A known name with another type is refused at Prepare, naming both.
	_, err := prepareBin(t, shared, "http-badsig", wasmtest.ImportAirlockHTTP(), withNetwork(httpRules))
	wantKind(t, err, sandbox.KindModule)
	for _, w := range []string{"airlock_v1.http_request", "(i32, i32, i32, i32) -> (i32)", "(i32, i32, i32, i32, i32) -> (i32)", "not provided by this executor"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	_, err = prepareBin(t, shared, "http-unknown", wasmtest.ImportFunc("airlock_v1", "open_socket"), withNetwork(httpRules))
	wantKind(t, err, sandbox.KindModule)
	if !strings.Contains(err.Error(), "airlock_v1.open_socket") || !strings.Contains(err.Error(), "not provided by this executor") {
		t.Errorf("error %q", err)
	}
}
