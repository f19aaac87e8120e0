package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/airlock-dev/airlock/internal/testenv"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/planner-api/client"
)

// The two tools measured: a tiny one written in C and a Go-built one.
var cases = []struct {
	name, tool, module, args string
}{
	{"textwc", "text.wc", "tools/textwc/textwc.wasm", `{"text":"the quick brown fox\njumps over the lazy dog"}`},
	{"jsonquery", "json.query", "build/wasm/jsonquery.wasm", `{"filter":".a","input":{"a":1}}`},
}

// BenchmarkCall compares, for each tool, the whole pipeline over the unix
// socket (path=pipeline: gRPC, identity, schema, policy, audit commit of
// two events, fresh instance, output check) with the bare baseline
// (path=bare: plain wazero instantiating and running the same module in
// one process). `benchstat -col /path` prints the ratio.
func BenchmarkCall(b *testing.B) {
	root := testenv.Root(b)
	start := func(sync string) *testenv.Executor {
		return testenv.Start(b, testenv.Options{
			Manifests: testenv.BundledManifests(b),
			Policies:  filepath.Join(root, "manifests", "policies"),
			StoreSync: sync,
			Quiet:     true,
		})
	}
	// pipeline: the default, every commit fsynced (synchronous=full);
	// pipeline-syncnormal: commits reach the WAL without an fsync.
	executors := []struct {
		path string
		x    *testenv.Executor
	}{{"pipeline", start("full")}, {"pipeline-syncnormal", start("normal")}}
	ctx := context.Background()
	for _, c := range cases {
		b.Run("tool="+c.name+"/path=bare", func(b *testing.B) {
			benchBare(b, filepath.Join(root, c.module), c.tool, c.args)
		})
		for _, e := range executors {
			b.Run("tool="+c.name+"/path="+e.path, func(b *testing.B) {
				lat := make([]time.Duration, 0, b.N)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					t0 := time.Now()
					out, err := e.x.Client.Submit(ctx, c.tool, c.args)
					lat = append(lat, time.Since(t0))
					if err != nil {
						b.Fatal(err)
					}
					if out.GetStatus() != airlockv1.Status_STATUS_OK {
						b.Fatalf("%s: %v %v", c.tool, out.GetStatus(), out.GetError())
					}
				}
				b.StopTimer()
				reportPercentiles(b, lat)
			})
		}
	}
}

// benchBare is the baseline: no airlock code at all.
func benchBare(b *testing.B, module, argv0, args string) {
	ctx := context.Background()
	bin, err := os.ReadFile(module)
	if err != nil {
		b.Fatal(err)
	}
	cache, err := wazero.NewCompilationCacheWithDir(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCompilationCache(cache).WithCloseOnContextDone(true))
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	compiled, err := r.CompileModule(ctx, bin)
	if err != nil {
		b.Fatal(err)
	}
	in := []byte(args)
	var out bytes.Buffer
	// One base config: NewModuleConfig seeds a fake random source, which
	// costs more than instantiating a tiny module.
	base := wazero.NewModuleConfig().WithName("").WithArgs(argv0)
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		out.Reset()
		mod, err := r.InstantiateModule(ctx, compiled, base.WithStdin(bytes.NewReader(in)).WithStdout(&out))
		if err != nil {
			b.Fatal(err)
		}
		_ = mod.Close(ctx)
		lat = append(lat, time.Since(t0))
		if out.Len() == 0 {
			b.Fatal("no output")
		}
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkThroughput submits allowed intents of the tiny tool from 1 and
// from 64 concurrent callers; every intent's two audit events are
// committed (synchronous=full) before its reply. It reports intents/s.
func BenchmarkThroughput(b *testing.B) {
	root := testenv.Root(b)
	for _, sync := range []string{"full", "normal"} {
		x := testenv.Start(b, testenv.Options{
			Manifests: testenv.BundledManifests(b),
			Policies:  filepath.Join(root, "manifests", "policies"),
			StoreSync: sync,
			Quiet:     true,
		})
		for _, conc := range []int{1, 64} {
			throughput(b, x, "sync="+sync+"/conc="+strconv.Itoa(conc), conc)
		}
	}
}

func throughput(b *testing.B, x *testenv.Executor, name string, conc int) {
	c := cases[0]
	{
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			var next atomic.Int64
			var failed atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for w := 0; w < conc; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						out, err := x.Client.Submit(ctx, c.tool, c.args)
						if err != nil || out.GetStatus() != airlockv1.Status_STATUS_OK {
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			b.StopTimer()
			if f := failed.Load(); f > 0 {
				b.Fatalf("%d intents failed", f)
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "intents/s")
		})
	}
}

// BenchmarkFloor measures what every intent pays before airlock does any
// work: a gRPC round trip over the same unix socket (the health check).
func BenchmarkFloor(b *testing.B) {
	root := testenv.Root(b)
	x := testenv.Start(b, testenv.Options{
		Manifests: testenv.BundledManifests(b),
		Policies:  filepath.Join(root, "manifests", "policies"),
		Quiet:     true,
	})
	conn, err := grpc.NewClient("unix:"+x.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	h := healthpb.NewHealthClient(conn)
	ctx := context.Background()
	b.Run("path=grpc-roundtrip", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := h.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

const benchIP = "93.184.216.34"

// BenchmarkCredentials is the cost of credentials per call: http.fetch to
// a loopback API, without a credential (path=plain) and with a static
// credential leased for the call, recorded, injected host-side and
// registered for redaction (path=credential). `benchstat -col /path`
// prints the ratio.
func BenchmarkCredentials(b *testing.B) {
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"ok":true}`)
	}))
	defer api.Close()
	pool := api.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	eg := testenv.LoopbackEgress(b, api.Listener.Addr().String(), benchIP, pool, map[string]string{"api.example.com": benchIP})

	b.Setenv("AIRLOCK_BENCH_TOKEN", "bench-token-0123456789abcdef0123456789")
	dir := b.TempDir()
	root := testenv.Root(b)
	fetch := filepath.Join(root, "build", "wasm", "httpfetch.wasm")
	sum := testenv.SHA256File(b, fetch)
	creds := filepath.Join(dir, "credentials.yaml")
	write(b, creds, "apiVersion: airlock.dev/v1\nkind: Credentials\nsources:\n  - {name: tok, type: static, env: AIRLOCK_BENCH_TOKEN}\n")
	manifest := func(name, credBlock string) {
		write(b, filepath.Join(dir, "m", name+".yaml"), fmt.Sprintf(`apiVersion: airlock.dev/v1
kind: Tool
metadata: {name: %s, version: 1.0.0, description: bench}
spec:
  runtime:
    wasm: {module: %q, sha256: %q}
  input: {type: object}
  output: {type: object}
  capabilities:
    network:
      - {host: api.example.com, methods: [GET]}
%s  limits: {memory: 64MiB, timeout: 10s, output: 1MiB}
  risk: low
`, name, fetch, sum, credBlock))
	}
	manifest("api.plain", "")
	manifest("api.cred", `    credentials:
      - name: api
        source: tok
        inject: {http: {host: api.example.com, header: Authorization, format: "Bearer {{token}}"}}
`)
	x := testenv.Start(b, testenv.Options{
		Manifests: filepath.Join(dir, "m"), Policies: testenv.Policy(b, "allow", testenv.AllowAll),
		Egress: eg, Credentials: creds, Quiet: true,
	})
	ctx := context.Background()
	task, err := x.Client.BeginTask(ctx, client.TaskOptions{Purpose: "bench", TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct{ path, tool string }{{"plain", "api.plain"}, {"credential", "api.cred"}} {
		b.Run("path="+c.path, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				out, err := x.Client.Submit(ctx, c.tool, `{"url":"https://api.example.com/v1"}`, client.WithTask(task.GetId()))
				if err != nil || out.GetStatus() != airlockv1.Status_STATUS_OK {
					b.Fatalf("%s: %v %v", c.tool, err, out.GetError())
				}
			}
		})
	}
}

func write(tb testing.TB, path, body string) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		tb.Fatal(err)
	}
}
