package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/airlock-dev/airlock/internal/testenv"
	"github.com/airlock-dev/airlock/internal/wasmtest"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
)

// A hostile tool that dumps its arguments, environment, every file it can
// read and the full result of every host call it makes finds no credential
// injected over http, in any form; and one injected into its environment
// leaves the executor only as [REDACTED:...].
func TestHostileToolFindsNoInjectedCredential(t *testing.T) {
	// '+', '/' and '=' make the URL-escaped and base64 forms differ from the raw.
	const httpSecret = "h0stile-http+tok/en=0123456789abcdefXYZ"
	const envSecret = "h0stile-env+tok/en=fedcba9876543210QRS"
	t.Setenv("AIRLOCK_TEST_SNOOP_HTTP", httpSecret)
	t.Setenv("AIRLOCK_TEST_SNOOP_ENV", envSecret)

	// The API records the Authorization header and never sends it back:
	// whatever the tool gets, it gets without the redactor's help. With
	// ?reflect=1 it reflects the request's other headers and its URL.
	var mu sync.Mutex
	var seen []string
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("X-Api", "fake")
		if r.URL.Query().Get("reflect") != "" {
			h := r.Header.Clone()
			h.Del("Authorization")
			_ = json.NewEncoder(w).Encode(map[string]any{"method": r.Method, "url": r.URL.String(), "host": r.Host, "headers": h})
			return
		}
		io.WriteString(w, `{"hello":"world"}`)
	}))
	defer api.Close()
	eg := loopbackEgress(t, api)

	dir := t.TempDir()
	credFile := filepath.Join(dir, "credentials.yaml")
	writeFile(t, credFile, `apiVersion: airlock.dev/v1
kind: Credentials
sources:
  - {name: snoop-http, type: static, env: AIRLOCK_TEST_SNOOP_HTTP}
  - {name: snoop-env, type: static, env: AIRLOCK_TEST_SNOOP_ENV}
`)
	root := testenv.Root(t)
	snoop, err := wasmtest.BuildGoCached(filepath.Join(root, "internal", "e2e", "testdata", "credsnoop"))
	if err != nil {
		t.Fatal(err)
	}
	sum := testenv.SHA256File(t, snoop)
	manifest := func(name, cred string) string {
		return fmt.Sprintf(`apiVersion: airlock.dev/v1
kind: Tool
metadata: {name: %s, version: 1.0.0, description: "a hostile tool looking for its credentials"}
spec:
  runtime:
    wasm: {module: %q, sha256: %q}
  input: {type: object}
  output: {type: object}
  capabilities:
    network:
      - {host: api.example.com, methods: [GET]}
    filesystem:
      - {path: workspace, access: read-write}
    env: {MODE: hostile}
    credentials:
      - %s
  limits: {memory: 128MiB, timeout: 20s, output: 4MiB}
  risk: low
`, name, snoop, sum, cred)
	}
	writeFile(t, filepath.Join(dir, "m", "snoop.http.yaml"), manifest("snoop.http",
		`{name: api, source: snoop-http, inject: {http: {host: api.example.com, header: Authorization, format: "Bearer {{token}}"}}}`))
	writeFile(t, filepath.Join(dir, "m", "snoop.env.yaml"), manifest("snoop.env",
		`{name: envtok, source: snoop-env, inject: {env: {name: TOKEN}}}`))

	x := testenv.Start(t, testenv.Options{
		Manifests: filepath.Join(dir, "m"), Policies: testenv.Policy(t, "allow", testenv.AllowAll),
		Egress: eg, Credentials: credFile,
	})
	ctx := context.Background()
	task, err := x.Client.BeginTask(ctx, client.TaskOptions{Purpose: "hostile credentials"})
	if err != nil {
		t.Fatal(err)
	}
	args := `{"url":"https://api.example.com/v1/me","forbidden":"https://evil.example.com/steal","header":"Authorization"}`

	// http injection: the raw output. The redactor must not have fired,
	// so what the planner got is exactly what the tool printed.
	out := submit(t, x, "snoop.http", args, client.WithTask(task.GetId()))
	wantStatus(t, out, airlockv1.Status_STATUS_OK, "")
	raw := out.GetOutput()
	if strings.Contains(raw, "[REDACTED:") {
		t.Fatalf("the redactor fired on the http-injected tool's output, so this is not the raw output: %.2000s", raw)
	}
	if f := findSecret(raw, httpSecret); len(f) > 0 {
		t.Fatalf("the hostile tool found the http-injected credential as %v", f)
	}
	// The dump is real: it walked the file system, it saw its environment,
	// and its allowed call went out with the credential attached.
	var dump struct {
		Env   []string `json:"env"`
		Files []struct {
			Path string `json:"path"`
		} `json:"files"`
		HTTP []struct {
			Request, Body, Code, Error string
			Status                     int
		} `json:"http"`
	}
	if err := json.Unmarshal([]byte(out.GetOutput()), &dump); err != nil {
		t.Fatalf("the tool's output is not its dump: %v", err)
	}
	if !strings.Contains(strings.Join(dump.Env, "\n"), "MODE=hostile") {
		t.Fatalf("the dump lacks the granted environment: %q", dump.Env)
	}
	var paths []string
	for _, f := range dump.Files {
		paths = append(paths, f.Path)
	}
	mustContain(t, strings.Join(paths, "\n"), "/workspace")
	calls := map[string]int{}
	for _, c := range dump.HTTP {
		calls[c.Request] = c.Status
		switch c.Request {
		case "allowed":
			if c.Status != 200 || c.Body != `{"hello":"world"}` {
				t.Fatalf("the allowed call: %d %q %s", c.Status, c.Body, c.Error)
			}
		case "allowed, reflect":
			if c.Status != 200 || !strings.Contains(c.Body, `"method":"GET"`) {
				t.Fatalf("the reflected call: %d %q %s", c.Status, c.Body, c.Error)
			}
		case "allowed, own Authorization", "allowed, own lower-case Authorization", "forbidden", "forbidden, with Authorization":
			if c.Error == "" {
				t.Fatalf("%s: the host did not refuse it (status %d)", c.Request, c.Status)
			}
		}
	}
	if len(calls) != 12 {
		t.Fatalf("the dump has %d http calls, want 12: %v", len(calls), calls)
	}
	mu.Lock()
	injected := 0
	for _, a := range seen {
		switch a {
		case "Bearer " + httpSecret:
			injected++
		default:
			t.Errorf("the API saw Authorization %q: only the injected credential may reach it", a)
		}
	}
	mu.Unlock()
	if injected < 2 {
		t.Fatalf("the API saw the injected credential %d times; the allowed calls did not carry it", injected)
	}

	// env injection: the tool sees the value, the planner only [REDACTED:envtok].
	out = submit(t, x, "snoop.env", args, client.WithTask(task.GetId()))
	wantStatus(t, out, airlockv1.Status_STATUS_OK, "")
	planner := out.GetOutput()
	mustContain(t, planner, "TOKEN=[REDACTED:envtok]")
	if f := findSecret(planner, envSecret); len(f) > 0 {
		t.Fatalf("the planner got the env-injected credential as %v", f)
	}
	if _, err := x.Client.EndTask(ctx, task.GetId(), "done"); err != nil {
		t.Fatal(err)
	}
	audit, _ := noSecretAtRest(t, x, httpSecret, envSecret)
	mustContain(t, audit, `"credential.issue"`)
	mustContain(t, audit, `"credential.revoke"`)
}
