package executor

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/airlock-dev/airlock/internal/ids"
	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/identity"
	"github.com/airlock-dev/airlock/runtime/store"
)

// GetIntent returns the stored outcome of an intent of caller.
func (e *Executor) GetIntent(ctx context.Context, caller identity.Caller, id string) (*airlockv1.Outcome, error) {
	notFound := &TaskError{"not_found", fmt.Sprintf("intent %q not found", clip(id, 64))}
	if !ids.Valid("int", id) {
		return nil, notFound
	}
	in, err := e.cfg.Store.Intent(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, fmt.Errorf("load intent %s: %w", id, err)
	}
	if in.Caller != caller.SpiffeID {
		return nil, notFound
	}
	out := &airlockv1.Outcome{}
	if err := proto.Unmarshal(in.Outcome, out); err != nil {
		return nil, fmt.Errorf("decode stored outcome of intent %s: %w", id, err)
	}
	return out, nil
}
