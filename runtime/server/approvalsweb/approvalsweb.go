// Package approvalsweb serves the executor's approvals web page on a
// loopback address: pending approvals with their exact arguments, the
// tool's risk and the rules that asked for approval, with Approve and Deny
// buttons.
//
// Who uses the page is decided by the planner API, not by the browser: an
// authenticated caller asks for a link (OpenApprovalsPage), and Mint returns
// a URL whose fragment carries a random one-time token bound to that
// caller's identity, valid for TokenTTL. The page exchanges the token
// (POST) for a session: an HttpOnly, SameSite=Strict cookie plus a
// per-session secret the page keeps in sessionStorage and sends in a header
// with every API request, so a cookie leaked to another port of the same
// host is useless alone. Every API request checks the Host header
// (DNS-rebinding defence) and, for POST, the Origin; every action runs as
// the identity the link was minted for, through the same executor methods
// as the gRPC API.
package approvalsweb

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/identity"
)

// Defaults and bounds.
const (
	// DefaultTokenTTL is how long a minted link may be opened.
	DefaultTokenTTL = 2 * time.Minute
	// DefaultSessionTTL is how long a browser session lasts.
	DefaultSessionTTL = 30 * time.Minute
	// MaxTokens bounds the links minted and not yet used or expired.
	MaxTokens = 1000
	// MaxSessions bounds the live browser sessions.
	MaxSessions = 1000
	// MaxTokensPerCaller and MaxSessionsPerCaller bound the links and
	// sessions of one identity: past them its oldest one is dropped, so
	// that one identity cannot fill the page's memory or lock others out,
	// and an operator who opens many links is never refused.
	MaxTokensPerCaller   = 8
	MaxSessionsPerCaller = 8
	// MaxBody bounds the body of every POST.
	MaxBody = 8 << 10
	// MaxReason bounds the reason of a decision, in bytes.
	MaxReason = 1024
	// ListLimit is how many pending approvals the page lists.
	ListLimit = 200
	// Path is the page's path.
	Path = "/approvals"
	// CookieName is the session cookie's name.
	CookieName = "airlock_approvals"
	// CSRFHeader carries the session secret with every API request.
	CSRFHeader = "X-Airlock-CSRF"
)

// Approvals is what the page needs of the executor: the methods of
// *executor.Executor, called with the identity bound to the session.
// Errors should carry a gRPC status (status.FromError); other errors are
// reported as unavailable.
type Approvals interface {
	ListApprovals(ctx context.Context, caller identity.Caller, req *airlockv1.ListApprovalsRequest) ([]*airlockv1.Approval, error)
	GetApproval(ctx context.Context, caller identity.Caller, id string) (*airlockv1.Approval, error)
	Approve(ctx context.Context, approver identity.Caller, id, reason string) (*airlockv1.Approval, error)
	Deny(ctx context.Context, approver identity.Caller, id, reason string) (*airlockv1.Approval, error)
}

// Config configures a Server.
type Config struct {
	// Addr is the address the page is served on, as the listener reports
	// it (127.0.0.1:PORT or [::1]:PORT). It must be loopback: it decides
	// the links and the Host and Origin values that are accepted.
	Addr string
	// Approvals is the executor. Required.
	Approvals Approvals
	// MayOpen reports whether a caller may get a link to the page (the
	// executor's approvers). Required: the page is for those who decide
	// approvals, and links are a bounded resource that planners must not
	// be able to exhaust.
	MayOpen func(identity.Caller) bool
	// TokenTTL (DefaultTokenTTL) and SessionTTL (DefaultSessionTTL).
	TokenTTL, SessionTTL time.Duration
	// Logger receives one line per session and decision.
	Logger zerolog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Server is the approvals page: an http.Handler plus the links it mints.
// It is safe for concurrent use.
type Server struct {
	cfg     Config
	port    string
	hosts   map[string]bool // accepted Host values
	origins map[string]bool // accepted Origin values
	base    string          // http://127.0.0.1:PORT
	mux     *http.ServeMux

	mu       sync.Mutex
	tokens   map[[32]byte]grant // sha256(token) -> grant
	sessions map[[32]byte]*session
}

type grant struct {
	caller  identity.Caller
	expires time.Time
}

type session struct {
	caller  identity.Caller
	csrf    string
	expires time.Time
}

var _ http.Handler = (*Server)(nil)

//go:embed static
var static embed.FS

// CheckAddr returns an error unless addr is host:port with a loopback host
// (127.0.0.0/8, ::1 or localhost).
func CheckAddr(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--approvals-listen %q: %w: write host:port, like 127.0.0.1:8480", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("--approvals-listen %s: the approvals page is served on loopback only (127.0.0.1:PORT); reach it remotely through an SSH tunnel", addr)
	}
	return nil
}

// New builds the page for a listener at cfg.Addr.
func New(cfg Config) (*Server, error) {
	if cfg.Approvals == nil || cfg.MayOpen == nil {
		return nil, errors.New("approvals page: no executor (Approvals and MayOpen are required)")
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("approvals page address %q: %w", cfg.Addr, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("approvals page address %s: listen on a loopback IP address", cfg.Addr)
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	hp := net.JoinHostPort(ip.String(), port)
	s := &Server{
		cfg: cfg, port: port, base: "http://" + hp,
		hosts:    map[string]bool{hp: true, "localhost:" + port: true},
		origins:  map[string]bool{"http://" + hp: true, "http://localhost:" + port: true},
		tokens:   map[[32]byte]grant{},
		sessions: map[[32]byte]*session{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Path, http.StatusSeeOther)
	})
	mux.HandleFunc("GET "+Path, s.page)
	mux.HandleFunc("GET /static/{file}", s.asset)
	mux.HandleFunc("POST /api/session", s.exchange)
	mux.HandleFunc("POST /api/logout", s.authed(s.logout))
	mux.HandleFunc("GET /api/approvals", s.authed(s.list))
	mux.HandleFunc("POST /api/approvals/{id}/approve", s.authed(s.decide(true)))
	mux.HandleFunc("POST /api/approvals/{id}/deny", s.authed(s.decide(false)))
	s.mux = mux
	return s, nil
}

// URL is the page's base URL, http://127.0.0.1:PORT.
func (s *Server) URL() string { return s.base }

// Mint returns a one-time link to the page bound to caller, valid for
// TokenTTL, and its expiry. The token (256 random bits) is in the URL's
// fragment, which browsers never send to a server or in a Referer.
func (s *Server) Mint(caller identity.Caller) (string, time.Time, error) {
	if caller.SpiffeID == "" {
		return "", time.Time{}, status.Error(codes.Unauthenticated, "no caller identity to bind the approvals page link to")
	}
	if !s.cfg.MayOpen(caller) {
		return "", time.Time{}, status.Errorf(codes.PermissionDenied, "%s may not open the approvals page: it is for approvers (the executor's --approvers; default: the executor's own uid and root on the unix socket)", caller.SpiffeID)
	}
	tok, err := randomToken()
	if err != nil {
		return "", time.Time{}, status.Errorf(codes.Unavailable, "mint an approvals page token: %v", err)
	}
	now := s.cfg.Now()
	exp := now.Add(s.cfg.TokenTTL)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(now)
	s.capTokensLocked(caller.SpiffeID)
	if len(s.tokens) >= MaxTokens {
		return "", time.Time{}, status.Errorf(codes.ResourceExhausted, "%d approvals page links are outstanding: wait %s for them to expire", len(s.tokens), s.cfg.TokenTTL)
	}
	s.tokens[sha256.Sum256([]byte(tok))] = grant{caller: caller, expires: exp}
	s.cfg.Logger.Info().Str("caller", caller.SpiffeID).Time("expires", exp).Msg("approvals page link minted")
	return s.base + Path + "#token=" + tok, exp, nil
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// capTokensLocked drops the oldest links of caller until it has fewer than
// MaxTokensPerCaller.
func (s *Server) capTokensLocked(caller string) {
	dropOldest(s.tokens, caller, MaxTokensPerCaller, func(g grant) (string, time.Time) { return g.caller.SpiffeID, g.expires })
}

// capSessionsLocked ends the oldest sessions of caller until it has fewer
// than MaxSessionsPerCaller.
func (s *Server) capSessionsLocked(caller string) {
	dropOldest(s.sessions, caller, MaxSessionsPerCaller, func(ss *session) (string, time.Time) { return ss.caller.SpiffeID, ss.expires })
}

// dropOldest deletes the entries of caller in m that expire first until
// fewer than limit are left; of gives an entry's caller and expiry.
func dropOldest[V any](m map[[32]byte]V, caller string, limit int, of func(V) (string, time.Time)) {
	for {
		var oldest [32]byte
		var at time.Time
		n := 0
		for k, v := range m {
			c, exp := of(v)
			if c != caller {
				continue
			}
			n++
			if at.IsZero() || exp.Before(at) {
				oldest, at = k, exp
			}
		}
		if n < limit {
			return
		}
		delete(m, oldest)
	}
}

// pruneLocked drops expired tokens and sessions.
func (s *Server) pruneLocked(now time.Time) {
	for k, g := range s.tokens {
		if !now.Before(g.expires) {
			delete(s.tokens, k)
		}
	}
	for k, ss := range s.sessions {
		if !now.Before(ss.expires) {
			delete(s.sessions, k)
		}
	}
}

// ServeHTTP checks the Host header of every request, sets the security
// headers and dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if !s.hosts[r.Host] {
		// A DNS-rebinding page reaches us under its own host name.
		httpError(w, http.StatusMisdirectedRequest, "host "+clipString(r.Host, 100)+" is not this page: open "+s.base+Path)
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) page(w http.ResponseWriter, _ *http.Request) {
	b, err := static.ReadFile("static/index.html")
	if err != nil {
		httpError(w, http.StatusInternalServerError, "page missing from the build")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b)
}

func (s *Server) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	types := map[string]string{"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
	ct, ok := types[name]
	if !ok {
		httpError(w, http.StatusNotFound, "not found")
		return
	}
	b, err := static.ReadFile("static/" + name)
	if err != nil {
		httpError(w, http.StatusNotFound, "not found")
		return
	}
	w.Header().Set("Content-Type", ct)
	_, _ = w.Write(b)
}

// checkPost refuses a POST from another origin, and one whose body is not
// JSON (a cross-site form cannot send application/json).
func (s *Server) checkPost(w http.ResponseWriter, r *http.Request) bool {
	if o := r.Header.Get("Origin"); !s.origins[o] {
		httpError(w, http.StatusForbidden, "origin "+clipString(o, 100)+" may not post here: use the page at "+s.base+Path)
		return false
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		httpError(w, http.StatusForbidden, "cross-site request refused")
		return false
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		httpError(w, http.StatusUnsupportedMediaType, "send application/json")
		return false
	}
	return true
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is over %d bytes", MaxBody))
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		httpError(w, http.StatusBadRequest, "the request body is not the expected JSON: "+err.Error())
		return false
	}
	return true
}

// exchange trades a minted token for a session, once.
func (s *Server) exchange(w http.ResponseWriter, r *http.Request) {
	if !s.checkPost(w, r) {
		return
	}
	var req struct {
		Token string `json:"token"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	now := s.cfg.Now()
	key := sha256.Sum256([]byte(req.Token))
	s.mu.Lock()
	g, ok := s.tokens[key]
	delete(s.tokens, key) // one use, whatever happens next
	s.pruneLocked(now)
	if !ok || !now.Before(g.expires) {
		s.mu.Unlock()
		httpError(w, http.StatusUnauthorized, "this link is invalid, used or expired: run `airlock approvals open` for a new one")
		return
	}
	s.capSessionsLocked(g.caller.SpiffeID)
	if len(s.sessions) >= MaxSessions {
		s.mu.Unlock()
		httpError(w, http.StatusServiceUnavailable, "too many approvals page sessions: try again later")
		return
	}
	sid, err1 := randomToken()
	csrf, err2 := randomToken()
	if err1 != nil || err2 != nil {
		s.mu.Unlock()
		httpError(w, http.StatusServiceUnavailable, "cannot create a session")
		return
	}
	exp := now.Add(s.cfg.SessionTTL)
	s.sessions[sha256.Sum256([]byte(sid))] = &session{caller: g.caller, csrf: csrf, expires: exp}
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: sid, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode,
		MaxAge: int(s.cfg.SessionTTL / time.Second), Expires: exp,
	})
	s.cfg.Logger.Info().Str("caller", g.caller.SpiffeID).Time("expires", exp).Msg("approvals page session opened")
	writeJSON(w, http.StatusOK, map[string]any{"csrf": csrf, "caller": g.caller.SpiffeID, "expires_at": exp.UTC().Format(time.RFC3339)})
}

type handler func(w http.ResponseWriter, r *http.Request, ss *session)

// authed requires a live session: its cookie and, in CSRFHeader, its
// secret. POSTs must also come from the page's origin.
func (s *Server) authed(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && !s.checkPost(w, r) {
			return
		}
		c, err := r.Cookie(CookieName)
		if err != nil || c.Value == "" {
			httpError(w, http.StatusUnauthorized, "no session: run `airlock approvals open` and open the link it prints")
			return
		}
		now := s.cfg.Now()
		s.mu.Lock()
		ss, ok := s.sessions[sha256.Sum256([]byte(c.Value))]
		if ok && !now.Before(ss.expires) {
			delete(s.sessions, sha256.Sum256([]byte(c.Value)))
			ok = false
		}
		s.mu.Unlock()
		if !ok {
			httpError(w, http.StatusUnauthorized, "the session is over: run `airlock approvals open` and open the link it prints")
			return
		}
		if got := r.Header.Get(CSRFHeader); subtle.ConstantTimeCompare([]byte(got), []byte(ss.csrf)) != 1 {
			httpError(w, http.StatusUnauthorized, "the request lacks this session's secret: reload the page from a fresh `airlock approvals open` link")
			return
		}
		h(w, r, ss)
	}
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, _ *session) {
	c, _ := r.Cookie(CookieName)
	s.mu.Lock()
	delete(s.sessions, sha256.Sum256([]byte(c.Value)))
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1})
	writeJSON(w, http.StatusOK, map[string]any{})
}

// approvalJSON is an approval as the page shows it. Arguments are
// pretty-printed here, from the exact canonical JSON, so that numbers are
// never rounded by a browser's JSON parser.
type approvalJSON struct {
	ID              string   `json:"id"`
	IntentID        string   `json:"intent_id"`
	TaskID          string   `json:"task_id"`
	Caller          string   `json:"caller"`
	Tool            string   `json:"tool"`
	ToolVersion     string   `json:"tool_version"`
	ToolDigest      string   `json:"tool_digest"`
	Risk            string   `json:"risk"`
	Arguments       string   `json:"arguments"`
	ArgumentsSHA256 string   `json:"arguments_sha256"`
	Justification   string   `json:"justification"`
	Rules           []string `json:"rules"`
	Message         string   `json:"message"`
	State           string   `json:"state"`
	CreatedAt       string   `json:"created_at"`
	ExpiresAt       string   `json:"expires_at"`
	Approver        string   `json:"approver,omitempty"`
	Reason          string   `json:"reason,omitempty"`
}

func toJSON(a *airlockv1.Approval) approvalJSON {
	args := prettyJSON(a.GetArguments())
	ts := func(t interface{ AsTime() time.Time }, ok bool) string {
		if !ok {
			return ""
		}
		return t.AsTime().UTC().Format(time.RFC3339)
	}
	rules := a.GetRules()
	if rules == nil {
		rules = []string{}
	}
	return approvalJSON{
		ID: a.GetId(), IntentID: a.GetIntentId(), TaskID: a.GetTaskId(), Caller: a.GetCaller(),
		Tool: a.GetTool(), ToolVersion: a.GetToolVersion(), ToolDigest: a.GetToolDigest(), Risk: a.GetRisk(),
		Arguments: visible(args), ArgumentsSHA256: a.GetArgumentsSha256(), Justification: visible(a.GetJustification()),
		Rules: rules, Message: visible(a.GetMessage()), State: stateName(a.GetState()),
		CreatedAt: ts(a.GetCreatedAt(), a.GetCreatedAt() != nil), ExpiresAt: ts(a.GetExpiresAt(), a.GetExpiresAt() != nil),
		Approver: a.GetApprover(), Reason: visible(a.GetReason()),
	}
}

// visible shows the characters that would hide or reorder what an
// operator reads as \u escapes: control characters but newline and tab,
// and the Unicode bidirectional controls (a path "publish/\u202egnp.x"
// would display reversed). Within JSON they only occur inside strings,
// where the escape means the same character, so the arguments stay the
// exact JSON the approval covers.
func visible(s string) string {
	var b strings.Builder
	for _, r := range s {
		bidi := r == '\u061c' || r == '\u200e' || r == '\u200f' || (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069')
		if bidi || (unicode.IsControl(r) && r != '\n' && r != '\t') {
			fmt.Fprintf(&b, `\u%04x`, r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// prettyJSON indents canonical JSON for people: numbers keep every digit
// (json.Number) and characters like < > & stay themselves instead of
// \u escapes (the page shows them as text). Invalid JSON is shown as is.
func prettyJSON(s string) string {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return s
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return s
	}
	return strings.TrimSuffix(b.String(), "\n")
}

func stateName(s airlockv1.ApprovalState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "APPROVAL_STATE_"))
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, ss *session) {
	as, err := s.cfg.Approvals.ListApprovals(r.Context(), ss.caller, &airlockv1.ListApprovalsRequest{
		States: []airlockv1.ApprovalState{airlockv1.ApprovalState_APPROVAL_STATE_PENDING}, Limit: ListLimit,
	})
	if err != nil {
		rpcError(w, err)
		return
	}
	out := make([]approvalJSON, 0, len(as))
	for _, a := range as {
		out = append(out, toJSON(a))
	}
	writeJSON(w, http.StatusOK, map[string]any{"approvals": out, "caller": ss.caller.SpiffeID})
}

func (s *Server) decide(approve bool) handler {
	return func(w http.ResponseWriter, r *http.Request, ss *session) {
		var req struct {
			Reason string `json:"reason"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		id := r.PathValue("id")
		if id == "" || len(id) > 200 {
			httpError(w, http.StatusBadRequest, "approval id: give the id of a listed approval")
			return
		}
		if len(req.Reason) > MaxReason {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("reason is %d bytes: at most %d", len(req.Reason), MaxReason))
			return
		}
		if !approve && strings.TrimSpace(req.Reason) == "" {
			httpError(w, http.StatusBadRequest, "reason: say why the intent is denied")
			return
		}
		var a *airlockv1.Approval
		var err error
		if approve {
			a, err = s.cfg.Approvals.Approve(r.Context(), ss.caller, id, req.Reason)
		} else {
			a, err = s.cfg.Approvals.Deny(r.Context(), ss.caller, id, req.Reason)
		}
		verb := map[bool]string{true: "approve", false: "deny"}[approve]
		if err != nil {
			s.cfg.Logger.Info().Str("caller", ss.caller.SpiffeID).Str("approval", clipString(id, 200)).Str("action", verb).Err(err).Msg("approvals page decision refused")
			rpcError(w, err)
			return
		}
		s.cfg.Logger.Info().Str("caller", ss.caller.SpiffeID).Str("approval", a.GetId()).Str("action", verb).Msg("approvals page decision")
		writeJSON(w, http.StatusOK, map[string]any{"approval": toJSON(a)})
	}
}

// rpcError maps an executor error to an HTTP status.
func rpcError(w http.ResponseWriter, err error) {
	st, ok := status.FromError(err)
	if !ok {
		httpError(w, http.StatusServiceUnavailable, "the executor could not answer: "+clipString(err.Error(), 1024))
		return
	}
	code := map[codes.Code]int{
		codes.InvalidArgument:    http.StatusBadRequest,
		codes.NotFound:           http.StatusNotFound,
		codes.PermissionDenied:   http.StatusForbidden,
		codes.Unauthenticated:    http.StatusUnauthorized,
		codes.FailedPrecondition: http.StatusConflict,
		codes.AlreadyExists:      http.StatusConflict,
		codes.ResourceExhausted:  http.StatusTooManyRequests,
		codes.DeadlineExceeded:   http.StatusGatewayTimeout,
	}[st.Code()]
	if code == 0 {
		code = http.StatusServiceUnavailable
	}
	httpError(w, code, clipString(st.Message(), 1024))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func clipString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
