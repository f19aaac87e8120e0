package wasmtest

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
)

// TestModulesAreValid compiles every canned module with wazero, and checks
// the broken ones do not compile.
func TestModulesAreValid(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	valid := map[string][]byte{
		"echo": Echo(), "startloop": StartLoop(), "spin": Spin(), "env.evil": ImportEnvEvil(),
		"airlock": ImportAirlockHTTP(), "grow": GrowForever(), "recurse": Recurse(), "flood": Flood(64),
		"minmemory": MinMemory(3), "reactor": Reactor(), "noentry": NoEntry(),
	}
	for name, bin := range valid {
		if _, err := r.CompileModule(ctx, bin); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, bin := range map[string][]byte{"garbage": Garbage(), "truncated": Truncated()} {
		if _, err := r.CompileModule(ctx, bin); err == nil {
			t.Errorf("%s compiled", name)
		}
	}
}

func TestSLEB(t *testing.T) {
	for v, want := range map[int64]string{0: "\x00", -1: "\x7f", 63: "\x3f", 64: "\xc0\x00", -65: "\xbf\x7f", 65536: "\x80\x80\x04"} {
		if got := string(SLEB(nil, v)); got != want {
			t.Errorf("SLEB(%d) = %q, want %q", v, got, want)
		}
	}
}
