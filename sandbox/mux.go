package sandbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/airlock-dev/airlock/runtime/manifest"
)

// Mux is a Backend that prepares each tool with the backend of its
// manifest's runtime: Wasm for spec.runtime.wasm, Plugin for
// spec.runtime.plugin. A nil backend refuses the tools of its runtime.
type Mux struct {
	Wasm   Backend
	Plugin Backend
}

var (
	_ Backend   = (*Mux)(nil)
	_ TaskEnder = (*Mux)(nil)
)

// Prepare hands m to the backend of its runtime.
func (x *Mux) Prepare(ctx context.Context, m *manifest.Manifest) (Tool, error) {
	if m == nil {
		return nil, &Error{Kind: KindModule, Message: "no manifest"}
	}
	var b Backend
	var kind string
	switch rt := m.Spec.Runtime; {
	case rt.Wasm != nil && rt.Plugin == nil:
		b, kind = x.Wasm, "wasm"
	case rt.Plugin != nil && rt.Wasm == nil:
		b, kind = x.Plugin, "plugin"
	default:
		return nil, &Error{Kind: KindModule, Message: fmt.Sprintf("tool %s: spec.runtime needs exactly one of wasm or plugin", m.Metadata.Name)}
	}
	if b == nil {
		return nil, &Error{Kind: KindModule, Message: fmt.Sprintf("tool %s: this executor runs no %s tools", m.Metadata.Name, kind)}
	}
	return b.Prepare(ctx, m)
}

// EndTask passes a task's end to the backends that keep per-task state.
func (x *Mux) EndTask(taskID string) {
	for _, b := range []Backend{x.Wasm, x.Plugin} {
		if te, ok := b.(TaskEnder); ok {
			te.EndTask(taskID)
		}
	}
}

// Close closes both backends.
func (x *Mux) Close(ctx context.Context) error {
	var errs []error
	for _, b := range []Backend{x.Wasm, x.Plugin} {
		if b != nil {
			errs = append(errs, b.Close(ctx))
		}
	}
	return errors.Join(errs...)
}
