package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testenv"
)

// readmeBlock returns the first ```sh block of README.md after the line
// containing marker.
func readmeBlock(t *testing.T, marker string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.Root(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatalf("README.md has no %q", marker)
	}
	s = s[i:]
	start := strings.Index(s, "```sh\n")
	if start < 0 {
		t.Fatalf("no sh block after %q", marker)
	}
	s = s[start+len("```sh\n"):]
	return s[:strings.Index(s, "```")]
}

// walkthroughDaemon serves like `make run` does, from a scratch directory
// that holds bin/airlock, so the README's commands run exactly as written.
func walkthroughDaemon(t *testing.T) (dir string) {
	t.Helper()
	root := testenv.Root(t)
	// A short path: the socket is DIR/.airlock/airlock.sock (108-byte limit).
	dir, err := os.MkdirTemp("", "alw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(airlockBin, filepath.Join(dir, "bin", "airlock")); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"manifests", "build", "tools"} {
		if err := os.Symlink(filepath.Join(root, sub), filepath.Join(dir, sub)); err != nil {
			t.Fatal(err)
		}
	}
	// The same command line as the Makefile's run target.
	cmd := exec.Command(airlockBin, "serve", "--manifests", "manifests/tools", "--policies", "manifests/policies",
		"--data", ".airlock", "--cache-dir", testenv.CacheDir(), "--log-format", "json")
	cmd.Dir = dir
	logs := &testenv.SyncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(logs.String(), "airlock is serving") {
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v\n%s", err, logs.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s", logs.String())
		}
	}
	return dir
}

func runShell(t *testing.T, dir, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("script failed: %v\n%s", err, out.String())
	}
	return out.String()
}

// The README's five-minute walkthrough, run as written.
func TestREADMEWalkthroughWorksAsWritten(t *testing.T) {
	dir := walkthroughDaemon(t)
	script := readmeBlock(t, "In a second terminal")
	out := runShell(t, dir, script)
	for _, want := range []string{
		`"results": [` + "\n" + `      "ada"`, // json.query
		`"text": "Hello`,                      // html.to_text
		`"bytes": 19`,                         // workspace.write
		`"content": "hi from the sandbox"`,    // workspace.read
		"the secrets directory is off limits", // the dev policy
		"exit 3",
		`"field": "/filter"`,
		"exit 6",
		`"words": 3`,                   // text.wc in C
		`"status": "pending_approval"`, // the dev policy asks for approval under publish/
		"exit 4",
		`{"content":"hello","path":"publish/post.md"}`, // approvals list
		`"ended_at"`,
		`"type":"task.end"`,
		"audit chain ok",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the walkthrough output lacks %q", want)
		}
	}
	// audit verify of the store, then of the export.
	if n := strings.Count(out, "audit chain ok"); n != 2 {
		t.Errorf("the walkthrough output has %d \"audit chain ok\", want 2 (the store and the export)", n)
	}
	if t.Failed() {
		t.Logf("walkthrough output:\n%s", out)
	}
	// And the policy and lint commands that follow it.
	out = runShell(t, dir, readmeBlock(t, "Check the policy against its test cases"))
	if !regexp.MustCompile(`\d+ passed, 0 failed`).MatchString(out) || !strings.Contains(out, "ok") {
		t.Fatalf("policy test / lint:\n%s", out)
	}
}

// grpcurl, an independent client, lists the services through reflection
// and submits an intent: the README's commands, run as written.
func TestGRPCurlThroughReflection(t *testing.T) {
	grpcurl, err := exec.LookPath("grpcurl")
	if err != nil {
		if gp, gerr := exec.Command("go", "env", "GOPATH").Output(); gerr == nil {
			cand := filepath.Join(strings.TrimSpace(string(gp)), "bin", "grpcurl")
			if _, serr := os.Stat(cand); serr == nil {
				grpcurl, err = cand, nil
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("grpcurl is not installed: .ci/run installs it")
		}
		t.Skip("grpcurl not installed: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3")
	}
	dir := walkthroughDaemon(t)
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(readmeBlock(t, "### With grpcurl"), "\\\n", ""), "\n") {
		if strings.HasPrefix(l, "grpcurl ") {
			lines = append(lines, grpcurl+strings.TrimPrefix(l, "grpcurl"))
		}
	}
	if len(lines) != 3 {
		t.Fatalf("the README's grpcurl block changed: %q", lines)
	}
	list := runShell(t, dir, lines[0])
	for _, svc := range []string{"airlock.v1.IntentService", "airlock.v1.TaskService", "airlock.v1.ToolService", "grpc.health.v1.Health"} {
		mustContain(t, list, svc)
	}
	mustContain(t, runShell(t, dir, lines[1]), "rpc Submit")
	sub := runShell(t, dir, lines[2])
	mustContain(t, sub, `"status": "STATUS_OK"`)
	mustContain(t, sub, `\"results\":[1]`)
}
