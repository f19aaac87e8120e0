package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/airlock-dev/airlock/internal/isolate"
	"github.com/airlock-dev/airlock/internal/testenv"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/sandbox"
	"github.com/airlock-dev/airlock/sandbox/plugin"
	"github.com/airlock-dev/airlock/sandbox/plugin/pluginv1"
	"github.com/airlock-dev/airlock/sandbox/wasm"
	sdkplugin "github.com/airlock-dev/airlock/tools/sdk/plugin"
)

func TestMain(m *testing.M) {
	// The isolated plugin processes of BenchmarkPlugin start through this
	// test binary (internal/isolate).
	isolate.Init()
	os.Exit(m.Run())
}

// wcArgs is the call of every path of BenchmarkPlugin: text.wc's input.
const wcArgs = `{"text":"the quick brown fox\njumps over the lazy dog"}`

// wcWant is text.wc's answer to wcArgs.
const wcWant = `{"bytes":43,"words":9,"lines":1}`

// BenchmarkPlugin compares one text.wc call through the sandbox interface
// (sandbox.Tool.Run) on the paths a tool can take, all doing the same
// work on the same input:
//
//   - path=grpc-bare: the baseline, a bare gRPC round trip of the plugin
//     protocol's Call over a unix socket to the same Go function served in
//     this process (no process, no TLS, no isolation, no sandbox code);
//   - path=wasm: the C text.wc module in a fresh wazero instance;
//   - path=plugin-warm: the same logic as a native plugin (testdata/
//     wcplugin) on a warm, isolated process of the pool;
//   - path=plugin-cold: a fresh isolated process per call: pin check,
//     isolated start (namespaces, private root, binary copy, landlock,
//     seccomp), go-plugin handshake with AutoMTLS, and the first call
//     (killing it afterwards is not timed);
//   - path=plugin-warm-unisolated, plugin-cold-unisolated: the same
//     without OS isolation (Config.Unisolated), to show what it costs.
//
// `benchstat -col /path` prints the ratios.
func BenchmarkPlugin(b *testing.B) {
	root := testenv.Root(b)
	ctx := context.Background()
	bin := buildWCPlugin(b, root)

	b.Run("path=grpc-bare", func(b *testing.B) { benchBareGRPC(b) })

	b.Run("path=wasm", func(b *testing.B) {
		m, err := manifest.LoadFile(filepath.Join(root, "manifests", "tools", "text.wc.yaml"))
		if err != nil {
			b.Fatal(err)
		}
		be, err := wasm.New(ctx, wasm.Config{CacheDir: testenv.CacheDir()})
		if err != nil {
			b.Fatal(err)
		}
		defer be.Close(ctx)
		tool, err := be.Prepare(ctx, m)
		if err != nil {
			b.Fatal(err)
		}
		runCalls(b, tool, func(int) *sandbox.Call { return &sandbox.Call{Input: []byte(wcArgs)} }, nil)
	})

	isolated := len(isolate.Probe().Missing) == 0
	for _, iso := range []bool{true, false} {
		suffix := ""
		if !iso {
			suffix = "-unisolated"
		}
		run := func(name string, cold bool) {
			b.Run("path="+name+suffix, func(b *testing.B) {
				if iso && !isolated {
					b.Skipf("isolation layers missing here: %s", isolate.Probe())
				}
				be, err := plugin.New(ctx, plugin.Config{Unisolated: !iso, TempDir: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				defer be.Close(ctx)
				tool, err := be.Prepare(ctx, wcManifest(b, bin))
				if err != nil {
					b.Fatal(err)
				}
				ws := b.TempDir()
				call := func(i int) *sandbox.Call {
					task := "tsk_bench_warm"
					if cold {
						task = "tsk_bench_" + strconv.Itoa(i)
					}
					return &sandbox.Call{Input: []byte(wcArgs), TaskID: task, Workspace: ws}
				}
				var after func(i int)
				if cold {
					// Kill the process of the call, untimed: the next call
					// of another task starts a fresh one.
					after = func(i int) { be.EndTask("tsk_bench_" + strconv.Itoa(i)) }
				} else if _, err := tool.Run(ctx, call(0)); err != nil { // warm it
					b.Fatal(err)
				}
				runCalls(b, tool, call, after)
			})
		}
		run("plugin-warm", false)
		run("plugin-cold", true)
	}
}

// runCalls runs b.N calls of tool, checks each answer, and reports p50 and
// p99. after, when set, runs untimed after each call.
func runCalls(b *testing.B, tool sandbox.Tool, call func(i int) *sandbox.Call, after func(i int)) {
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := call(i)
		t0 := time.Now()
		res, err := tool.Run(ctx, c)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		if strings.TrimSpace(string(res.Output)) != wcWant {
			b.Fatalf("output %q, want %s", res.Output, wcWant)
		}
		if after != nil {
			b.StopTimer()
			after(i)
			b.StartTimer()
		}
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

// benchBareGRPC is the baseline: the plugin protocol's Call, same request,
// to the same function (tools/sdk/plugin.NewServer) served in this process
// over a unix socket, plaintext.
func benchBareGRPC(b *testing.B) {
	ctx := context.Background()
	sock := filepath.Join(b.TempDir(), "s")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	pluginv1.RegisterToolServer(srv, sdkplugin.NewServer(wcCount))
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	conn, err := grpc.NewClient("unix:"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := pluginv1.NewToolClient(conn)
	req := &pluginv1.CallRequest{Input: []byte(wcArgs), TaskId: "tsk_bench_warm", Workspace: "/workspace"}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		resp, err := c.Call(ctx, req)
		lat = append(lat, time.Since(t0))
		if err != nil {
			b.Fatal(err)
		}
		if strings.TrimSpace(string(resp.GetOutput())) != wcWant {
			b.Fatalf("output %q (%s), want %s", resp.GetOutput(), resp.GetError(), wcWant)
		}
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

// wcIn, wcOut and wcCount are testdata/wcplugin's function, for the
// in-process baseline.
type wcIn struct {
	Text string `json:"text"`
}

type wcOut struct {
	Bytes int `json:"bytes"`
	Words int `json:"words"`
	Lines int `json:"lines"`
}

func wcCount(_ context.Context, in wcIn) (wcOut, error) {
	return wcOut{Bytes: len(in.Text), Words: len(strings.FieldsFunc(in.Text, unicode.IsSpace)), Lines: strings.Count(in.Text, "\n")}, nil
}

// buildWCPlugin builds testdata/wcplugin into a temporary directory.
func buildWCPlugin(b *testing.B, root string) string {
	b.Helper()
	out := filepath.Join(b.TempDir(), "wcplugin")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./internal/bench/testdata/wcplugin")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build the wcplugin benchmark tool: %v\n%s", err, msg)
	}
	return out
}

// wcManifest is text.wc's manifest for the native wcplugin, granted the
// workspace so that its processes are pooled per task (the cold path
// starts one per call by changing task).
func wcManifest(b *testing.B, bin string) *manifest.Manifest {
	b.Helper()
	dir := b.TempDir()
	path := filepath.Join(dir, "text.wc.native.yaml")
	body := fmt.Sprintf(`apiVersion: airlock.dev/v1
kind: Tool
metadata: {name: text.wc.native, version: 1.0.0, description: "text.wc as a native plugin"}
spec:
  runtime:
    plugin: {command: %q, sha256: %q}
  input: {type: object, required: [text], properties: {text: {type: string}}}
  output: {type: object}
  capabilities: {filesystem: [{path: workspace, access: read-write}]}
  limits: {timeout: 10s, output: 4KiB, concurrency: 4}
  risk: low
`, bin, testenv.SHA256File(b, bin))
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		b.Fatal(err)
	}
	m, err := manifest.LoadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return m
}
