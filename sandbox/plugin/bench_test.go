package plugin

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/sandbox"
)

func benchTool(b *testing.B, unisolated bool) *tool {
	b.Helper()
	be, err := New(context.Background(), Config{Unisolated: unisolated, Logger: zerolog.Nop(), TempDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = be.Close(context.Background()) })
	st, err := be.Prepare(context.Background(), testManifest(b, testTool, nil))
	if err != nil {
		b.Fatal(err)
	}
	return st.(*tool)
}

// BenchmarkCall is one call on a warm process: the plugin protocol's round
// trip (gRPC over a unix socket with mTLS) plus the tool's JSON.
func BenchmarkCall(b *testing.B) {
	for _, mode := range []struct {
		name       string
		unisolated bool
	}{{"isolated", false}, {"unisolated", true}} {
		b.Run(mode.name, func(b *testing.B) {
			tl := benchTool(b, mode.unisolated)
			c := &sandbox.Call{Input: input("echo", "hello", 0)}
			if _, err := tl.Run(context.Background(), c); err != nil {
				b.Skipf("plugin does not run here: %v", err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := tl.Run(context.Background(), c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStart is a call on a fresh process: verify, start, handshake,
// call, kill.
func BenchmarkStart(b *testing.B) {
	for _, mode := range []struct {
		name       string
		unisolated bool
	}{{"isolated", false}, {"unisolated", true}} {
		b.Run(mode.name, func(b *testing.B) {
			tl := benchTool(b, mode.unisolated)
			c := &sandbox.Call{Input: input("echo", "hello", 0)}
			if _, err := tl.Run(context.Background(), c); err != nil {
				b.Skipf("plugin does not run here: %v", err)
			}
			b.ResetTimer()
			for b.Loop() {
				tl.reapIdle(time.Now().Add(time.Hour))
				if _, err := tl.Run(context.Background(), c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
