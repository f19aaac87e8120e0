package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
	"github.com/airlock-dev/airlock/runtime/identity"
)

// wcNeedsApproval sends text.wc to a human and allows the rest.
const wcNeedsApproval = `
apiVersion: airlock.dev/v1
kind: Policy
metadata: {name: web}
spec:
  match: {tools: ["*"]}
  rules:
    - name: wc-needs-a-human
      effect: require_approval
      when: 'tool.name == "text.wc"'
      message: '"a human reads this first"'
    - name: allow-rest
      effect: allow
      when: 'true'
`

// hostileText is what a planner puts in the arguments: it must show as
// text, never run or become an element.
const hostileText = `<script>window.pwned=1</script><img src=x onerror="window.pwned=2"> & "one two three"`

// webDaemon starts `airlock serve` with the approvals page and an mTLS
// listener admitting agents, and returns it, its mTLS address and a
// planner client that is spiffe://airlock.local/agent/planner.
func webDaemon(t *testing.T) (*daemon, string, *client.Client) {
	t.Helper()
	ca := devCA(t, "airlock.local")
	exec := devIssue(t, ca, "spiffe://airlock.local/executor")
	planner := devIssue(t, ca, "spiffe://airlock.local/agent/planner")
	d := startDaemon(t, append([]string{"--policies", testenv.Policy(t, "web", wcNeedsApproval),
		"--approvals-listen", "127.0.0.1:0"}, mtlsFlags(exec, "spiffe://airlock.local/agent/*")...)...)
	addr := listenAddr(t, d)
	c := mtlsClient(t, addr, planner)
	return d, addr, c
}

// openLink runs `airlock approvals open` on the daemon's socket (the
// operator: this process's uid) and returns the link.
func openLink(t *testing.T, d *daemon) *url.URL {
	t.Helper()
	r := d.call(t, "approvals", "open")
	if r.code != 0 {
		t.Fatalf("approvals open: %d %s %s", r.code, r.stdout, r.stderr)
	}
	u, err := url.Parse(strings.TrimSpace(r.stdout))
	if err != nil || u.Scheme != "http" || !strings.HasPrefix(u.Host, "127.0.0.1:") || u.Path != "/approvals" || !strings.HasPrefix(u.Fragment, "token=") {
		t.Fatalf("approvals open printed %q (%v)", r.stdout, err)
	}
	if len(strings.TrimPrefix(u.Fragment, "token=")) < 22 { // 128 bits in base64url
		t.Fatalf("the token is short: %q", u.Fragment)
	}
	return u
}

func chromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("chromium is missing (apt-get install -y chromium): %v", err)
		}
		t.Skipf("chromium is missing (apt-get install -y chromium): %v", err)
	}
	return path
}

// The acceptance scenario: a planner's intent waits for approval; the
// operator opens the page from `airlock approvals open` in headless
// Chromium, sees the exact arguments (as text: the planner's markup does
// not run), clicks Approve, and the waiting Submit returns ok with the
// tool's output.
func TestApprovalsPageApproveInChromium(t *testing.T) {
	bin := chromium(t)
	d, _, planner := webDaemon(t)

	type result struct {
		out *airlockv1.Outcome
		err error
	}
	task, err := planner.BeginTask(context.Background(), client.TaskOptions{Purpose: "approvals page"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := planner.Submit(ctx, "text.wc", `{"text":`+jsonString(hostileText)+`}`,
			client.WithTask(task.GetId()), client.WithApprovalWait(2*time.Minute), client.WithJustification("count <b>words</b>"))
		done <- result{out, err}
	}()

	link := openLink(t, d)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	actx, acancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
	)
	defer acancel()
	bctx, bcancel := chromedp.NewContext(actx)
	defer bcancel()

	card := `article.approval`
	if err := chromedp.Do(bctx,
		chromedp.Navigate(link.String()),
		chromedp.WaitVisible(chromedp.CSS(card+` pre.arguments`)),
	); err != nil {
		t.Fatalf("open the page: %v", err)
	}
	eval := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}
	text := func(sel string) string {
		t.Helper()
		return eval(`document.querySelector(` + jsonString(sel) + `).textContent`)
	}
	args := text(card + ` pre.arguments`)
	caller, risk, rules, message := text(card+` dd.caller`), text(card+` dd.risk`), text(card+` dd.rules`), text(card+` dd.message`)
	who := text(`#who`)
	elems := eval(`String(document.querySelectorAll("main img, main script, main b").length)`)
	pwned := eval(`String(window.pwned)`)
	hash := eval(`location.hash`)
	wantArgs := "{\n  \"text\": " + jsonStringNoEscape(hostileText) + "\n}"
	if args != wantArgs {
		t.Errorf("the page shows the arguments\n%s\nwant exactly\n%s", args, wantArgs)
	}
	if caller != "spiffe://airlock.local/agent/planner" || risk == "" || !strings.Contains(rules, "wc-needs-a-human") || message != "a human reads this first" {
		t.Errorf("the card shows caller %q risk %q rules %q message %q", caller, risk, rules, message)
	}
	if !strings.Contains(who, identity.FromUID(uint32(os.Getuid())).SpiffeID) {
		t.Errorf("the page is signed in as %q", who)
	}
	if elems != "0" || pwned != "undefined" {
		t.Fatalf("the planner's markup became elements (%s) or ran (window.pwned=%s)", elems, pwned)
	}
	if hash != "" {
		t.Errorf("the one-time token stays in the address bar: %q", hash)
	}

	if err := chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(card+` button.approve`)),
		chromedp.WaitNotPresent(chromedp.CSS(card)),
	); err != nil {
		t.Fatalf("approve: %v", err)
	}
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("the waiting Submit did not return after the approval")
	}
	if r.err != nil {
		t.Fatalf("submit: %v", r.err)
	}
	if r.out.GetStatus() != airlockv1.Status_STATUS_OK || r.out.GetApprovalId() == "" {
		t.Fatalf("the approved intent: %v", r.out)
	}
	var wc struct{ Words int }
	if err := json.Unmarshal([]byte(r.out.GetOutput()), &wc); err != nil || wc.Words != len(strings.Fields(hostileText)) {
		t.Fatalf("tool output %q (%v)", r.out.GetOutput(), err)
	}
	if status := text(`#result`); !strings.Contains(status, "approved "+r.out.GetApprovalId()) {
		t.Errorf("the page says %q", status)
	}
}

// The page's HTTP checks, without a browser: one-time tokens, sessions,
// the session secret, Host and Origin, and the executor's identity checks
// (the requester cannot approve its own intent through the page either).
func TestApprovalsPageRefusals(t *testing.T) {
	d, _, planner := webDaemon(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	task, err := planner.BeginTask(ctx, client.TaskOptions{Purpose: "approvals page"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := planner.Submit(ctx, "text.wc", `{"text":"a b"}`, client.WithTask(task.GetId()))
	if err != nil || out.GetStatus() != airlockv1.Status_STATUS_PENDING_APPROVAL {
		t.Fatalf("submit: %v %v", out, err)
	}
	link := openLink(t, d)
	base := "http://" + link.Host
	origin := base
	token := strings.TrimPrefix(link.Fragment, "token=")
	hc := &http.Client{Timeout: 30 * time.Second}
	do := func(method, path, host, origin, cookie, csrf, body string) (int, string, []*http.Cookie) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if cookie != "" {
			req.AddCookie(&http.Cookie{Name: "airlock_approvals", Value: cookie})
		}
		if csrf != "" {
			req.Header.Set("X-Airlock-CSRF", csrf)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, string(b), resp.Cookies()
	}
	tokenBody := `{"token":"` + token + `"}`

	if code, body, _ := do("GET", "/api/approvals", "", "", "", "", ""); code != http.StatusUnauthorized {
		t.Fatalf("no session: %d %s", code, body)
	}
	if code, body, _ := do("POST", "/api/session", "attacker.example:80", origin, "", "", tokenBody); code != http.StatusMisdirectedRequest {
		t.Fatalf("a rebound host name: %d %s", code, body)
	}
	if code, body, _ := do("POST", "/api/session", "", "http://attacker.example", "", "", tokenBody); code != http.StatusForbidden {
		t.Fatalf("a foreign origin: %d %s", code, body)
	}
	code, body, cookies := do("POST", "/api/session", "", origin, "", "", tokenBody)
	if code != http.StatusOK || len(cookies) != 1 {
		t.Fatalf("exchange: %d %s %v", code, body, cookies)
	}
	ck := cookies[0]
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.MaxAge <= 0 || ck.MaxAge > 3600 {
		t.Fatalf("session cookie %+v", ck)
	}
	var sess struct{ CSRF, Caller string }
	if err := json.Unmarshal([]byte(body), &sess); err != nil || sess.CSRF == "" {
		t.Fatalf("exchange body %s: %v", body, err)
	}
	if code, body, _ := do("POST", "/api/session", "", origin, "", "", tokenBody); code != http.StatusUnauthorized {
		t.Fatalf("a used token: %d %s", code, body)
	}
	if code, body, _ := do("GET", "/api/approvals", "", "", ck.Value, "", ""); code != http.StatusUnauthorized {
		t.Fatalf("the cookie without the session secret: %d %s", code, body)
	}
	code, body, _ = do("GET", "/api/approvals", "", "", ck.Value, sess.CSRF, "")
	if code != http.StatusOK || !strings.Contains(body, out.GetApprovalId()) {
		t.Fatalf("list: %d %s", code, body)
	}
	approve := "/api/approvals/" + out.GetApprovalId() + "/approve"
	if code, body, _ := do("POST", approve, "", "http://127.0.0.1:1", ck.Value, sess.CSRF, `{"reason":""}`); code != http.StatusForbidden {
		t.Fatalf("approve from another origin: %d %s", code, body)
	}
	if code, body, _ := do("POST", "/api/approvals/"+out.GetApprovalId()+"/deny", "", origin, ck.Value, sess.CSRF, `{"reason":""}`); code != http.StatusBadRequest || !strings.Contains(body, "reason") {
		t.Fatalf("deny without a reason: %d %s", code, body)
	}

	// The page is for approvers: the planner gets no link (and so cannot
	// fill the page's link table either).
	if _, _, err := planner.OpenApprovalsPage(ctx); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a planner opened the approvals page: %v", err)
	}
	// An approver cannot approve its own intent through the page either.
	r := d.call(t, "task", "begin", "--purpose", "the operator's own")
	if r.code != 0 {
		t.Fatalf("task begin: %d %s", r.code, r.stderr)
	}
	r = d.call(t, "call", "--task", strings.TrimSpace(r.stdout), "text.wc", `{"text":"mine"}`)
	var mine struct {
		ApprovalID string `json:"approval_id"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &mine); err != nil || mine.ApprovalID == "" {
		t.Fatalf("the operator's own call: %d %s %s", r.code, r.stdout, r.stderr)
	}
	if code, body, _ := do("POST", "/api/approvals/"+mine.ApprovalID+"/approve", "", origin, ck.Value, sess.CSRF, `{"reason":"mine"}`); code != http.StatusForbidden {
		t.Fatalf("the requester approved its own intent through the page: %d %s", code, body)
	}

	// The operator approves; the intent runs; approving again changes nothing.
	if code, body, _ := do("POST", approve, "", origin, ck.Value, sess.CSRF, `{"reason":"looks fine"}`); code != http.StatusOK || !strings.Contains(body, `"state":"approved"`) {
		t.Fatalf("approve: %d %s", code, body)
	}
	got, err := planner.Intents.GetIntent(ctx, &airlockv1.GetIntentRequest{IntentId: out.GetIntentId(), Wait: durationpb.New(time.Minute)})
	if err != nil || got.GetStatus() != airlockv1.Status_STATUS_OK {
		t.Fatalf("the approved intent: %v %v", got, err)
	}
	if code, body, _ := do("POST", "/api/logout", "", origin, ck.Value, sess.CSRF, `{}`); code != http.StatusOK {
		t.Fatalf("logout: %d %s", code, body)
	}
	if code, body, _ := do("GET", "/api/approvals", "", "", ck.Value, sess.CSRF, ""); code != http.StatusUnauthorized {
		t.Fatalf("after logout: %d %s", code, body)
	}
}

// A non-loopback --approvals-listen is refused before anything starts.
func TestApprovalsPageLoopbackOnly(t *testing.T) {
	r := runCLI(t, "", "serve", "--data", t.TempDir(), "--socket", t.TempDir()+"/s",
		"--manifests", testenv.BundledManifests(t), "--policies", testenv.Policy(t, "p", testenv.AllowAll),
		"--approvals-listen", "0.0.0.0:0")
	if r.code != 1 || !strings.Contains(r.stderr, "loopback only") {
		t.Fatalf("serve --approvals-listen 0.0.0.0:0: %d %s", r.code, r.stderr)
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// jsonStringNoEscape is s as a JSON string with < > & kept as themselves.
func jsonStringNoEscape(s string) string {
	r := strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&")
	return r.Replace(jsonString(s))
}
