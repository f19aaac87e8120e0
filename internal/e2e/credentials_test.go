package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/airlock-dev/airlock/internal/testenv"
	"github.com/airlock-dev/airlock/internal/wasmtest"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
	"github.com/airlock-dev/airlock/runtime/egress"
)

// apiIP is the (public-looking) address the test resolver gives api.example.com;
// the test dialer routes it to a loopback server and nothing else anywhere.
const apiIP = "93.184.216.34"

// testNames are what the test resolver answers: the API, and names that
// resolve to addresses tools may never reach.
var testNames = map[string]string{
	"api.example.com":      apiIP,
	"metadata.example.com": "169.254.169.254",
	"loop.example.com":     "127.0.0.1",
}

// A credential injected over http reaches the allowed host and never the
// tool, the planner, the audit log or the logs; one injected into the
// environment reaches the tool but leaves only as [REDACTED:...]; ending
// the task revokes the leases; egress refusals reach the tool as errors.
func TestCredentialsAreInjectedInsideTheSandboxOnly(t *testing.T) {
	const httpSecret = "s3cr3t-http-token-0123456789abcdef"
	const envSecret = "s3cr3t-env-token-fedcba9876543210"
	t.Setenv("AIRLOCK_TEST_HTTP_TOKEN", httpSecret)
	t.Setenv("AIRLOCK_TEST_ENV_TOKEN", envSecret)

	// The API: records the Authorization header, and echoes it back (a
	// careless API) so that redaction has something to catch.
	var seenMu sync.Mutex
	var seen []string
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "https://metadata.example.com/latest/meta-data/", http.StatusFound)
			return
		}
		seenMu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		seenMu.Unlock()
		io.WriteString(w, "you sent: "+r.Header.Get("Authorization"))
	}))
	defer api.Close()
	eg := loopbackEgress(t, api)

	dir := t.TempDir()
	credFile := filepath.Join(dir, "credentials.yaml")
	writeFile(t, credFile, `apiVersion: airlock.dev/v1
kind: Credentials
sources:
  - {name: api-token, type: static, env: AIRLOCK_TEST_HTTP_TOKEN}
  - {name: env-token, type: static, env: AIRLOCK_TEST_ENV_TOKEN}
`)
	root := testenv.Root(t)
	fetch := filepath.Join(root, "build", "wasm", "httpfetch.wasm")
	writeFile(t, filepath.Join(dir, "m", "api.fetch.yaml"), fmt.Sprintf(`apiVersion: airlock.dev/v1
kind: Tool
metadata: {name: api.fetch, version: 1.0.0, description: "http.fetch with an API token"}
spec:
  runtime:
    wasm: {module: %q, sha256: %q}
  input: {type: object}
  output: {type: object}
  capabilities:
    network:
      - {host: api.example.com, methods: [GET]}
      - {host: loop.example.com, methods: [GET]}
      - {host: metadata.example.com, methods: [GET]}
    credentials:
      - name: api
        source: api-token
        inject: {http: {host: api.example.com, header: Authorization, format: "Bearer {{token}}"}}
  limits: {memory: 64MiB, timeout: 10s, output: 1MiB}
  risk: low
`, fetch, testenv.SHA256File(t, fetch)))
	echo, err := wasmtest.BuildGoCached(filepath.Join(root, "sandbox", "wasm", "testdata", "echo"))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "m", "env.dump.yaml"), fmt.Sprintf(`apiVersion: airlock.dev/v1
kind: Tool
metadata: {name: env.dump, version: 1.0.0, description: "prints its environment"}
spec:
  runtime:
    wasm: {module: %q, sha256: %q}
  input: {type: object}
  output: {type: object}
  capabilities:
    credentials:
      - {name: envtok, source: env-token, inject: {env: {name: TOKEN}}}
  limits: {memory: 64MiB, timeout: 10s, output: 1MiB}
  risk: low
`, echo, testenv.SHA256File(t, echo)))

	x := testenv.Start(t, testenv.Options{
		Manifests: filepath.Join(dir, "m"), Policies: testenv.Policy(t, "allow", testenv.AllowAll),
		Egress: eg, Credentials: credFile,
	})
	ctx := context.Background()
	task, err := x.Client.BeginTask(ctx, client.TaskOptions{Purpose: "credentials"})
	if err != nil {
		t.Fatal(err)
	}

	// Credentials need a task.
	wantStatus(t, submit(t, x, "api.fetch", `{"url":"https://api.example.com/v1/me"}`), airlockv1.Status_STATUS_INVALID, "task_required")

	// http injection: the API sees the token; the planner does not.
	out := submit(t, x, "api.fetch", `{"url":"https://api.example.com/v1/me"}`, client.WithTask(task.GetId()))
	v := wantOK(t, out)
	seenMu.Lock()
	if len(seen) != 1 || seen[0] != "Bearer "+httpSecret {
		t.Fatalf("the API saw %q", seen)
	}
	seenMu.Unlock()
	body, _ := v["body"].(string)
	if body != "you sent: Bearer [REDACTED:api]" {
		t.Fatalf("the echoed token was not redacted: %q", body)
	}

	// Egress refusals reach the tool, and no credential leaves.
	for u, why := range map[string]string{
		"https://169.254.169.254/latest/meta-data/": "forbidden_address",
		"https://metadata.example.com/":             "169.254.169.254",
		"https://127.0.0.1/":                        "forbidden_address",
		"https://[::1]/":                            "forbidden_address",
		"https://evil.example.com/":                 "not_allowed",
		"https://loop.example.com/":                 "127.0.0.1",
		"https://api.example.com:8443/":             "not_allowed",
		"https://api.example.com/redirect":          "redirect",
	} {
		out := submit(t, x, "api.fetch", fmt.Sprintf(`{"url":%q}`, u), client.WithTask(task.GetId()))
		wantStatus(t, out, airlockv1.Status_STATUS_FAILED, "tool_error")
		mustContain(t, out.GetError().GetMessage(), why)
	}
	out = submit(t, x, "api.fetch", `{"url":"https://api.example.com/v1/me","method":"DELETE"}`, client.WithTask(task.GetId()))
	wantStatus(t, out, airlockv1.Status_STATUS_FAILED, "tool_error")
	mustContain(t, out.GetError().GetMessage(), "DELETE")
	seenMu.Lock()
	if len(seen) != 1 {
		t.Fatalf("refused requests reached the API: %q", seen)
	}
	seenMu.Unlock()

	// env injection: the tool sees it; the planner gets it redacted, raw
	// and encoded.
	out = submit(t, x, "env.dump", `{"note":"`+base64.StdEncoding.EncodeToString([]byte("x"))+`"}`, client.WithTask(task.GetId()))
	v = wantOK(t, out)
	envs, _ := json.Marshal(v["env"])
	if !strings.Contains(string(envs), "TOKEN=[REDACTED:envtok]") {
		t.Fatalf("env: %s", envs)
	}

	// An explicit revoke revokes every lease of the task at its source; the
	// task stays open and a later call leases afresh.
	rv, err := x.Client.Tasks.RevokeCredentials(ctx, &airlockv1.RevokeCredentialsRequest{TaskId: task.GetId(), Reason: "rotate"})
	if err != nil || rv.GetRevoked() < 2 {
		t.Fatalf("revoke: %v %v", rv, err)
	}
	if rv, err := x.Client.Tasks.RevokeCredentials(ctx, &airlockv1.RevokeCredentialsRequest{TaskId: task.GetId()}); err != nil || rv.GetRevoked() != 0 {
		t.Fatalf("second revoke: %v %v", rv, err)
	}
	wantOK(t, submit(t, x, "api.fetch", `{"url":"https://api.example.com/v1/me"}`, client.WithTask(task.GetId())))

	if _, err := x.Client.EndTask(ctx, task.GetId(), "done"); err != nil {
		t.Fatal(err)
	}
	// No secret, in any form, in the audit log, the store file or the logs.
	audit, _ := noSecretAtRest(t, x, httpSecret, envSecret)
	mustContain(t, audit, `"credential.issue"`)
	mustContain(t, audit, `"credential.revoke"`)
}

// loopbackEgress reaches only the httptest TLS server api, as
// api.example.com (see testNames).
func loopbackEgress(t *testing.T, api *httptest.Server) *egress.Client {
	pool := api.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	return testenv.LoopbackEgress(t, api.Listener.Addr().String(), apiIP, pool, testNames)
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}
