package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/isolate"
	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
	"github.com/airlock-dev/airlock/sandbox/plugin/pluginv1"
	"github.com/airlock-dev/airlock/tools/sdk/plugin"
)

const testKey = "example-signing-key-0123456789abcdef"

func TestMain(m *testing.M) {
	isolate.Init() // the isolated plugin processes' init runs this test binary
	os.Exit(m.Run())
}

func want(data []byte, key string) Out {
	sum := sha256.Sum256(data)
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(data)
	return Out{Bytes: int64(len(data)), Digest: hex.EncodeToString(sum[:]), HMAC: hex.EncodeToString(mac.Sum(nil))}
}

// The tool function through the plugin SDK's server, as the executor's
// calls reach it, without a process or isolation.
func TestSignNatively(t *testing.T) {
	ws := t.TempDir()
	data := []byte("quarterly report\n")
	if err := os.WriteFile(filepath.Join(ws, "report.txt"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(ws, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/hostname", filepath.Join(ws, "out")); err != nil {
		t.Fatal(err)
	}
	srv := plugin.NewServer(sign)
	call := func(input, workspace string, creds map[string]string) *pluginv1.CallResponse {
		t.Helper()
		resp, err := srv.Call(context.Background(), &pluginv1.CallRequest{Input: []byte(input), Workspace: workspace, Credentials: creds})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	key := map[string]string{"SIGNING_KEY": testKey}

	resp := call(`{"path":"report.txt"}`, ws, key)
	var got Out
	if resp.GetError() != "" || json.Unmarshal(resp.GetOutput(), &got) != nil || got != want(data, testKey) {
		t.Fatalf("sign report.txt: %s %q, want %+v", resp.GetOutput(), resp.GetError(), want(data, testKey))
	}
	for _, c := range []struct {
		input, workspace string
		creds            map[string]string
		want             string
	}{
		{`{"path":"report.txt"}`, "", key, "no_workspace: "},
		{`{"path":"report.txt"}`, ws, nil, "no_key: "},
		{`{"path":"missing.txt"}`, ws, key, "not_found: "},
		{`{"path":"../etc/passwd"}`, ws, key, "invalid_path: "},
		{`{"path":"/etc/passwd"}`, ws, key, "invalid_path: "},
		{`{"path":"out"}`, ws, key, "invalid_path: "},
		{`{"path":"dir"}`, ws, key, "not_a_file: "},
		{`{"path":"report.txt","mode":"fast"}`, ws, key, `invalid_input: arguments: unknown field "mode"`},
	} {
		resp := call(c.input, c.workspace, c.creds)
		if !strings.HasPrefix(resp.GetError(), c.want) || resp.GetExitCode() != plugin.ExitError {
			t.Errorf("%s (workspace %q, creds %v): error %q exit %d, want %q...", c.input, c.workspace, c.creds, resp.GetError(), resp.GetExitCode(), c.want)
		}
	}
}

// The example as the tool guide tells readers to use it: built with the
// flags of tools/build.sh, pinned with tools/pin.sh, served by a real
// executor (isolated plugin process, real store, real credentials source)
// under the bundled development policy, and called over the socket.
func TestFileSignThroughExecutor(t *testing.T) {
	if rep := isolate.Probe(); len(rep.Missing) > 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("isolation layers missing in CI: %s", rep)
		}
		t.Skipf("isolation layers missing here: %s", rep)
	}
	root := testenv.Root(t)
	scratch := t.TempDir()
	bin := filepath.Join(scratch, "build", "plugins", "filesign")
	build := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", bin, "./examples/plugin-tool")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	manifests := filepath.Join(scratch, "examples", "plugin-tool", "manifests")
	if err := os.MkdirAll(manifests, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"manifests/file.sign.yaml", "credentials.yaml"} {
		b, err := os.ReadFile(filepath.Join(root, "examples", "plugin-tool", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(scratch, "examples", "plugin-tool", f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	manifest := filepath.Join(manifests, "file.sign.yaml")
	if out, err := exec.Command("bash", filepath.Join(root, "tools", "pin.sh"), manifest).CombinedOutput(); err != nil {
		t.Fatalf("tools/pin.sh: %v\n%s", err, out)
	}
	t.Setenv("FILE_SIGNING_KEY", testKey)
	x := testenv.Start(t, testenv.Options{
		Manifests:   manifests,
		Policies:    filepath.Join(root, "manifests", "policies"),
		Credentials: filepath.Join(scratch, "examples", "plugin-tool", "credentials.yaml"),
	})
	ctx := context.Background()
	task, err := x.Client.BeginTask(ctx, client.TaskOptions{Purpose: "sign a report"})
	if err != nil {
		t.Fatal(err)
	}
	ws := filepath.Join(x.Data, "workspaces", task.GetId())
	if err := os.MkdirAll(ws, 0o700); err != nil {
		t.Fatal(err)
	}
	data := []byte("quarterly report\n")
	// World-readable: as root, the executor runs plugins as nobody.
	if err := os.WriteFile(filepath.Join(ws, "report.txt"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	submit := func(args string, opts ...client.SubmitOption) *airlockv1.Outcome {
		t.Helper()
		out, err := x.Client.Submit(ctx, "file.sign", args, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	in := client.WithTask(task.GetId())
	for range 2 { // the second call is served by the task's warm process
		out := submit(`{"path": "report.txt"}`, in)
		var got Out
		if out.GetStatus() != airlockv1.Status_STATUS_OK || json.Unmarshal([]byte(out.GetOutput()), &got) != nil || got != want(data, testKey) {
			t.Fatalf("file.sign: %v, want output %+v", out, want(data, testKey))
		}
	}
	out := submit(`{"path": "../../keys"}`, in)
	if out.GetStatus() != airlockv1.Status_STATUS_FAILED || out.GetError().GetCode() != "tool_error" ||
		!strings.HasPrefix(out.GetError().GetMessage(), "invalid_path: ") {
		t.Fatalf("path out of the workspace: %v", out)
	}
	out = submit(`{"path": "report.txt"}`)
	if out.GetStatus() != airlockv1.Status_STATUS_INVALID || out.GetError().GetCode() != "task_required" {
		t.Fatalf("no task: %v", out)
	}
	if _, err := x.Client.EndTask(ctx, task.GetId(), "done"); err != nil {
		t.Fatal(err)
	}
	if err := x.Stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(x.Log.String(), testKey) {
		t.Fatal("the signing key is in the executor's log")
	}
}
