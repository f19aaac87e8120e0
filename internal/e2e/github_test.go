package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testenv"
	"github.com/airlock-dev/airlock/internal/wasmtest"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
)

// githubIP is what the test resolver gives api.github.com; the test dialer
// routes it, and nothing else, to the loopback fake API.
const githubIP = "140.82.112.6"

// selfSigned returns a certificate for api.github.com and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "api.github.com"},
		DNSNames: []string{"api.github.com"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// The shipped example github.issue.create (manifests/examples, with the
// example credentials file) opens an issue against a fake GitHub API: the
// token reaches only the API, as a bearer token, and appears nowhere in the
// outcome, the audit log, the store or the logs; API errors become clear
// tool errors.
func TestGitHubIssueCreateWithAnInjectedToken(t *testing.T) {
	const token = "ghp_e2eTestToken0123456789abcdefABCDEF"
	t.Setenv("GITHUB_TOKEN", token)

	type req struct{ auth, path, body string }
	var mu sync.Mutex
	var reqs []req
	api := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		reqs = append(reqs, req{r.Header.Get("Authorization"), r.URL.Path, string(b)})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Header.Get("Authorization") != "Bearer "+token:
			w.WriteHeader(401)
			io.WriteString(w, `{"message":"Bad credentials"}`)
		case r.Method != "POST" || r.Header.Get("Accept") != "application/vnd.github+json":
			w.WriteHeader(400)
			io.WriteString(w, `{"message":"bad request"}`)
		case r.URL.Path == "/repos/octo-org/demo/issues":
			w.WriteHeader(201)
			io.WriteString(w, `{"id":1001,"number":42,"html_url":"https://github.com/octo-org/demo/issues/42","title":"Crash"}`)
		case r.URL.Path == "/repos/octo-org/private/issues":
			w.WriteHeader(404)
			io.WriteString(w, `{"message":"Not Found"}`)
		default:
			// A careless API that echoes the token in an error.
			w.WriteHeader(422)
			io.WriteString(w, `{"message":"Validation Failed for `+r.Header.Get("Authorization")+`"}`)
		}
	}))
	cert, pool := selfSigned(t)
	api.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	api.StartTLS()
	defer api.Close()
	eg := testenv.LoopbackEgress(t, api.Listener.Addr().String(), githubIP, pool, map[string]string{"api.github.com": githubIP})

	root := testenv.Root(t)
	x := testenv.Start(t, testenv.Options{
		Manifests:   filepath.Join(root, "manifests", "examples", "tools"),
		Policies:    testenv.Policy(t, "allow", testenv.AllowAll),
		Egress:      eg,
		Credentials: filepath.Join(root, "manifests", "examples", "credentials.yaml"),
	})
	ctx := context.Background()
	task, err := x.Client.BeginTask(ctx, client.TaskOptions{Purpose: "file an issue"})
	if err != nil {
		t.Fatal(err)
	}
	inTask := client.WithTask(task.GetId())

	out := submit(t, x, "github.issue.create", `{"owner":"octo-org","repo":"demo","title":"Crash","body":"on empty input","labels":["bug"]}`, inTask)
	v := wantOK(t, out)
	if v["number"] != float64(42) || v["url"] != "https://github.com/octo-org/demo/issues/42" {
		t.Fatalf("outcome %v", v)
	}
	mu.Lock()
	if len(reqs) != 1 || reqs[0].auth != "Bearer "+token || reqs[0].path != "/repos/octo-org/demo/issues" {
		t.Fatalf("the API saw %+v", reqs)
	}
	var sent map[string]any
	if err := json.Unmarshal([]byte(reqs[0].body), &sent); err != nil || sent["title"] != "Crash" || sent["body"] != "on empty input" {
		t.Fatalf("the API got %q (%v)", reqs[0].body, err)
	}
	mu.Unlock()

	// API errors are tool errors that say what happened; an echoed token
	// is redacted before the tool sees it.
	out = submit(t, x, "github.issue.create", `{"owner":"octo-org","repo":"private","title":"x"}`, inTask)
	wantStatus(t, out, airlockv1.Status_STATUS_FAILED, "tool_error")
	mustContain(t, out.GetError().GetMessage(), "not_found")
	mustContain(t, out.GetError().GetMessage(), "octo-org/private was not found")
	out = submit(t, x, "github.issue.create", `{"owner":"octo-org","repo":"echo","title":"x"}`, inTask)
	wantStatus(t, out, airlockv1.Status_STATUS_FAILED, "tool_error")
	mustContain(t, out.GetError().GetMessage(), "validation_failed")
	mustContain(t, out.GetError().GetMessage(), "Bearer [REDACTED:github]")

	// The input schema is strict: nothing reaches the API.
	for _, args := range []string{
		`{"owner":"octo-org","repo":"../../user","title":"x"}`,
		`{"owner":"octo/org","repo":"demo","title":"x"}`,
		`{"owner":"octo-org","repo":"demo","title":""}`,
		`{"owner":"octo-org","repo":"demo","title":"` + strings.Repeat("t", 257) + `"}`,
		`{"owner":"octo-org","repo":"demo","title":"x","body":"` + strings.Repeat("b", 65537) + `"}`,
		`{"owner":"octo-org","repo":"demo","title":"x","assignee":"me"}`,
	} {
		wantStatus(t, submit(t, x, "github.issue.create", args, inTask), airlockv1.Status_STATUS_INVALID, "invalid_arguments")
	}
	mu.Lock()
	if len(reqs) != 3 {
		t.Fatalf("the API got %d requests, want 3", len(reqs))
	}
	mu.Unlock()

	if _, err := x.Client.EndTask(ctx, task.GetId(), "done"); err != nil {
		t.Fatal(err)
	}
	// No form of the token in the outcome, the audit log, the store or the logs.
	if f := findSecret(mustJSON(v), token); len(f) > 0 {
		t.Errorf("the outcome holds the token as %v", f)
	}
	audit, _ := noSecretAtRest(t, x, token)
	mustContain(t, audit, `"credential.issue"`)
	mustContain(t, audit, "github.issue.create")
}

// A credential injected as a file is readable by the tool, for this call
// only, at /run/airlock/credentials/NAME on a read-only mount; the planner
// sees only [REDACTED:name]; the host directory is gone after the call; a
// file name that is not a plain name is refused at load.
func TestFileInjectedCredential(t *testing.T) {
	const secret = "file-secret-0123456789abcdef-XYZ"
	t.Setenv("AIRLOCK_TEST_FILE_TOKEN", secret)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // where the executor makes the per-call directories

	root := testenv.Root(t)
	mod, err := wasmtest.BuildGoCached(filepath.Join(root, "internal", "e2e", "testdata", "readcred"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	credFile := filepath.Join(dir, "credentials.yaml")
	writeFile(t, credFile, `apiVersion: airlock.dev/v1
kind: Credentials
sources:
  - {name: file-token, type: static, env: AIRLOCK_TEST_FILE_TOKEN}
`)
	manifest := func(path string) string {
		return fmt.Sprintf(`apiVersion: airlock.dev/v1
kind: Tool
metadata: {name: cred.read, version: 1.0.0, description: "reads a file-injected credential"}
spec:
  runtime:
    wasm: {module: %q, sha256: %q}
  input: {type: object}
  output: {type: object}
  capabilities:
    credentials:
      - {name: filetok, source: file-token, inject: {file: {path: %q}}}
  limits: {memory: 64MiB, timeout: 10s, output: 1MiB}
  risk: low
`, mod, testenv.SHA256File(t, mod), path)
	}
	writeFile(t, filepath.Join(dir, "m", "cred.read.yaml"), manifest("token"))
	x := testenv.Start(t, testenv.Options{
		Manifests: filepath.Join(dir, "m"), Policies: testenv.Policy(t, "allow", testenv.AllowAll), Credentials: credFile,
	})
	ctx := context.Background()
	task, err := x.Client.BeginTask(ctx, client.TaskOptions{Purpose: "file credential"})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		out := submit(t, x, "cred.read", `{"name":"token"}`, client.WithTask(task.GetId()))
		v := wantOK(t, out)
		if v["value"] != "[REDACTED:filetok]" {
			t.Fatalf("the planner saw %q", v["value"])
		}
		if names, _ := json.Marshal(v["names"]); string(names) != `["token"]` {
			t.Fatalf("the credentials directory holds %s", names)
		}
		if v["write_error"] == "none" {
			t.Fatal("the guest wrote into the credentials mount")
		}
		if left, _ := filepath.Glob(filepath.Join(tmp, "airlock-cred-*")); len(left) != 0 {
			t.Fatalf("the call's credential directory is still there: %v", left)
		}
	}
	// A failing call removes it too (the guest reads a name that is not there).
	out := submit(t, x, "cred.read", `{"name":"other"}`, client.WithTask(task.GetId()))
	wantStatus(t, out, airlockv1.Status_STATUS_FAILED, "tool_error")
	if left, _ := filepath.Glob(filepath.Join(tmp, "airlock-cred-*")); len(left) != 0 {
		t.Fatalf("the failed call's credential directory is still there: %v", left)
	}
	logs := x.Log.String()
	if err := x.Stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs, secret) {
		t.Error("the logs hold the file-injected credential")
	}

	// Names that are not one plain file name are refused at load.
	for _, bad := range []string{"../escape", ".hidden", "a/b", ""} {
		writeFile(t, filepath.Join(dir, "bad", "cred.read.yaml"), manifest(bad))
		_, err := testenv.TryStart(t, testenv.Options{
			Manifests: filepath.Join(dir, "bad"), Policies: testenv.Policy(t, "allow", testenv.AllowAll), Credentials: credFile,
		})
		if err == nil || !strings.Contains(err.Error(), "file.path") {
			t.Errorf("file.path %q: %v", bad, err)
		}
	}
}
