package approvalsweb

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/executor"
	"github.com/airlock-dev/airlock/runtime/identity"
)

func TestCheckAddrLoopbackOnly(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:0", "127.0.0.1:8480", "[::1]:0", "localhost:9000"} {
		if err := CheckAddr(ok); err != nil {
			t.Errorf("CheckAddr(%s): %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:0", "[::]:0", "192.168.1.2:80", "example.org:80", "8480", ""} {
		if err := CheckAddr(bad); err == nil {
			t.Errorf("CheckAddr(%s) accepted it", bad)
		}
	}
	if _, err := New(Config{Addr: "0.0.0.0:1234", Approvals: (*executor.Executor)(nil), MayOpen: anyone}); err == nil {
		t.Error("New accepted a non-loopback address")
	}
}

func anyone(identity.Caller) bool { return true }

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// A link is single-use and expires after TokenTTL; a session after
// SessionTTL. The exchange never reaches the executor, so none is given.
func TestTokenAndSessionExpire(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	s, err := New(Config{Addr: "127.0.0.1:8480", Approvals: (*executor.Executor)(nil), MayOpen: anyone, Now: clk.now,
		TokenTTL: 2 * time.Minute, SessionTTL: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	caller := identity.FromUID(1000)
	csrf := ""
	post := func(path, body, cookie string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", "http://127.0.0.1:8480"+path, strings.NewReader(body))
		req.Header.Set("Origin", "http://127.0.0.1:8480")
		req.Header.Set("Content-Type", "application/json")
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: CookieName, Value: cookie})
			req.Header.Set(CSRFHeader, csrf)
		}
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		return w
	}
	token := func() string {
		link, exp, err := s.Mint(caller)
		if err != nil || !exp.Equal(clk.now().Add(2*time.Minute)) {
			t.Fatalf("mint: %v %v", exp, err)
		}
		u, _ := url.Parse(link)
		return `{"token":"` + strings.TrimPrefix(u.Fragment, "token=") + `"}`
	}
	stale := token()
	clk.add(2 * time.Minute)
	if w := post("/api/session", stale, ""); w.Code != http.StatusUnauthorized {
		t.Fatalf("an expired link: %d %s", w.Code, w.Body)
	}
	fresh := token()
	clk.add(time.Minute)
	w := post("/api/session", fresh, "")
	if w.Code != http.StatusOK {
		t.Fatalf("a fresh link: %d %s", w.Code, w.Body)
	}
	if w := post("/api/session", fresh, ""); w.Code != http.StatusUnauthorized {
		t.Fatalf("a used link: %d %s", w.Code, w.Body)
	}
	sid := w.Result().Cookies()[0].Value
	var sess struct{ CSRF string }
	if err := json.Unmarshal(w.Body.Bytes(), &sess); err != nil {
		t.Fatal(err)
	}
	csrf = sess.CSRF
	clk.add(9 * time.Minute)
	if w := post("/api/logout", `{}`, "nope"); w.Code != http.StatusUnauthorized {
		t.Fatalf("an unknown session: %d %s", w.Code, w.Body)
	}
	clk.add(time.Minute)
	if w := post("/api/logout", `{}`, sid); w.Code != http.StatusUnauthorized {
		t.Fatalf("an expired session: %d %s", w.Code, w.Body)
	}
	if _, _, err := s.Mint(identity.Caller{}); err == nil {
		t.Fatal("minted a link for no identity")
	}
}

// exchangeToken trades a link for a session on s and returns the status,
// the session cookie and its secret.
func exchangeToken(t *testing.T, s *Server, link string) (int, string, string) {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	body := `{"token":"` + strings.TrimPrefix(u.Fragment, "token=") + `"}`
	req := httptest.NewRequest("POST", "http://127.0.0.1:8480/api/session", strings.NewReader(body))
	req.Header.Set("Origin", "http://127.0.0.1:8480")
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		return w.Code, "", ""
	}
	var sess struct{ CSRF string }
	if err := json.Unmarshal(w.Body.Bytes(), &sess); err != nil {
		t.Fatal(err)
	}
	return w.Code, w.Result().Cookies()[0].Value, sess.CSRF
}

// sessionLive reports whether a session is live: it posts a malformed
// decision (GET /api/approvals would reach the executor, which the test
// does not have), which is refused for its body only past the session check.
func sessionLive(t *testing.T, s *Server, cookie, csrf string) bool {
	t.Helper()
	req := httptest.NewRequest("POST", "http://127.0.0.1:8480/api/approvals/apr_x/approve", strings.NewReader(`{"bogus":1}`))
	req.Header.Set("Origin", "http://127.0.0.1:8480")
	req.Header.Set("Content-Type", "application/json")
	req.AddCookie(&http.Cookie{Name: CookieName, Value: cookie})
	req.Header.Set(CSRFHeader, csrf)
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	switch w.Code {
	case http.StatusUnauthorized:
		return false
	case http.StatusBadRequest: // past the session check, refused for its body
		return true
	}
	t.Fatalf("probe: %d %s", w.Code, w.Body)
	return false
}

// Only approvers get links; one identity minting links and opening
// sessions in a loop keeps at most MaxTokensPerCaller links and
// MaxSessionsPerCaller sessions (its oldest ones go), and never locks
// another identity out.
func TestLinksAreForApproversAndBoundedPerCaller(t *testing.T) {
	operator, planner := identity.FromUID(1000), identity.FromUID(1001)
	s, err := New(Config{Addr: "127.0.0.1:8480", Approvals: (*executor.Executor)(nil),
		MayOpen: func(c identity.Caller) bool { return c.SpiffeID == operator.SpiffeID }})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Mint(planner); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a planner got a link: %v", err)
	}
	var links []string
	for range 3 * MaxTokensPerCaller {
		link, _, err := s.Mint(operator)
		if err != nil {
			t.Fatalf("mint: %v", err)
		}
		links = append(links, link)
	}
	s.mu.Lock()
	n := len(s.tokens)
	s.mu.Unlock()
	if n != MaxTokensPerCaller {
		t.Fatalf("%d links outstanding for one caller, want %d", n, MaxTokensPerCaller)
	}
	// The oldest links were dropped; the newest work.
	if code, _, _ := exchangeToken(t, s, links[0]); code != http.StatusUnauthorized {
		t.Fatalf("the oldest link still works: %d", code)
	}
	type sess struct{ cookie, csrf string }
	var sessions []sess
	for range 2 * MaxSessionsPerCaller {
		link, _, err := s.Mint(operator)
		if err != nil {
			t.Fatal(err)
		}
		code, c, x := exchangeToken(t, s, link)
		if code != http.StatusOK {
			t.Fatalf("exchange: %d", code)
		}
		sessions = append(sessions, sess{c, x})
	}
	s.mu.Lock()
	n = len(s.sessions)
	s.mu.Unlock()
	if n != MaxSessionsPerCaller {
		t.Fatalf("%d sessions for one caller, want %d", n, MaxSessionsPerCaller)
	}
	if sessionLive(t, s, sessions[0].cookie, sessions[0].csrf) {
		t.Fatal("the oldest session outlived the per-caller bound")
	}
	last := sessions[len(sessions)-1]
	if !sessionLive(t, s, last.cookie, last.csrf) {
		t.Fatal("the newest session is not live")
	}
	if sessionLive(t, s, last.cookie, sessions[len(sessions)-2].csrf) {
		t.Fatal("a session accepted another session's secret")
	}
}

// Every response carries the headers that keep the page out of frames,
// caches and Referers, and a request under a foreign Host is refused.
func TestSecurityHeadersAndHost(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:8480", Approvals: (*executor.Executor)(nil), MayOpen: anyone})
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1:8480", "evil.example:8480"} {
		req := httptest.NewRequest("GET", "http://"+host+Path, nil)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, req)
		h := w.Result().Header
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"frame-ancestors 'none'", "script-src 'self'", "default-src 'none'", "form-action 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: CSP %q lacks %s", host, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: CSP %q allows inline script", host, csp)
		}
		for k, v := range map[string]string{"X-Frame-Options": "DENY", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"} {
			if h.Get(k) != v {
				t.Errorf("%s: %s = %q, want %q", host, k, h.Get(k), v)
			}
		}
		want := http.StatusOK
		if host != "127.0.0.1:8480" {
			want = http.StatusMisdirectedRequest
		}
		if w.Code != want {
			t.Errorf("%s: %d, want %d", host, w.Code, want)
		}
	}
	// The page has no inline script: the CSP alone keeps injected markup inert.
	b, err := static.ReadFile("static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(b), "<script") != 1 || !strings.Contains(string(b), `<script src="/static/app.js"`) {
		t.Errorf("index.html has inline script:\n%s", b)
	}
}

// Bidirectional overrides and control characters a planner puts in its
// arguments or justification reach the page as visible escapes; the
// arguments stay JSON that means the same.
func TestVisibleEscapesBidiAndControls(t *testing.T) {
	j := toJSON(&airlockv1.Approval{Arguments: "{\"path\":\"publish/\u202egnp.x\",\"n\":12345678901234567890}", Justification: "ok\u2066\x1b[31m\nnext"})
	if strings.ContainsAny(j.Arguments+j.Justification, "\u202e\u2066\x1b") {
		t.Fatalf("raw controls reach the page: %q %q", j.Arguments, j.Justification)
	}
	if j.Justification != `ok\u2066\u001b[31m`+"\nnext" {
		t.Fatalf("justification %q", j.Justification)
	}
	var v map[string]any
	dec := json.NewDecoder(strings.NewReader(j.Arguments))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil || v["path"] != "publish/\u202egnp.x" || v["n"].(json.Number) != "12345678901234567890" {
		t.Fatalf("the shown arguments are not the same JSON: %q %v %v", j.Arguments, v, err)
	}
}
