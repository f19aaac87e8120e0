package wasm_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/airlock-dev/airlock/internal/wasmtest"
	"github.com/airlock-dev/airlock/sandbox"
)

var benchInput = []byte(`{"filter":".a","input":{"a":[1,2,3],"b":"text"}}`)

// benchBare is the bare baseline: plain wazero, no airlock code, one fresh
// instance per op reading stdin and writing stdout.
func benchBare(b *testing.B, bin []byte) {
	ctx := context.Background()
	cache := wazero.NewCompilationCache()
	defer cache.Close(ctx)
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCompilationCache(cache))
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	compiled, err := r.CompileModule(ctx, bin)
	if err != nil {
		b.Fatal(err)
	}
	base := wazero.NewModuleConfig().WithName("")
	var out bytes.Buffer
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out.Reset()
		mod, err := r.InstantiateModule(ctx, compiled, base.WithStdin(bytes.NewReader(benchInput)).WithStdout(&out))
		if err != nil {
			b.Fatal(err)
		}
		_ = mod.Close(ctx)
		if out.Len() == 0 {
			b.Fatal("no output")
		}
	}
}

func benchRun(b *testing.B, tl sandbox.Tool) {
	ctx := context.Background()
	call := &sandbox.Call{Input: benchInput}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		res, err := tl.Run(ctx, call)
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Output) == 0 {
			b.Fatal("no output")
		}
	}
}

func goEchoBin(b *testing.B) []byte {
	path, err := wasmtest.BuildGoCached(filepath.Join("testdata", "echo"))
	if err != nil {
		b.Fatal(err)
	}
	bin, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	return bin
}

func BenchmarkBareEcho(b *testing.B) { benchBare(b, wasmtest.Echo()) }

func BenchmarkBareGo(b *testing.B) { benchBare(b, goEchoBin(b)) }

func BenchmarkRunEcho(b *testing.B) { benchRun(b, sharedEcho) }

func BenchmarkRunGo(b *testing.B) {
	bin := goEchoBin(b)
	dir := b.TempDir()
	path := filepath.Join(dir, "echo-go.wasm")
	if err := os.WriteFile(path, bin, 0o644); err != nil {
		b.Fatal(err)
	}
	tl, err := shared.Prepare(context.Background(), newManifest("echo-go", path, wasmtest.Sum(bin)))
	if err != nil {
		b.Fatal(err)
	}
	defer tl.Close(context.Background())
	benchRun(b, tl)
}

// BenchmarkRunEchoParallel runs the tiny tool from many goroutines.
func BenchmarkRunEchoParallel(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		call := &sandbox.Call{Input: benchInput}
		for pb.Next() {
			if _, err := sharedEcho.Run(ctx, call); err != nil {
				b.Fatal(err)
			}
		}
	})
}
