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
	if _, err := New(Config{Addr: "0.0.0.0:1234", Approvals: (*executor.Executor)(nil)}); err == nil {
		t.Error("New accepted a non-loopback address")
	}
}

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
	s, err := New(Config{Addr: "127.0.0.1:8480", Approvals: (*executor.Executor)(nil), Now: clk.now,
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
