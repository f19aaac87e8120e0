package plugin

import (
	"context"
	"errors"
	"os/exec"

	"github.com/airlock-dev/airlock/internal/isolate"
)

// isolatedCommand builds the isolated process of s (internal/isolate): the
// binary is opened, hashed against the pin and executed by descriptor.
// accept are the layers the operator accepts missing.
func isolatedCommand(ctx context.Context, s spawnSpec, accept []isolate.Layer) (*exec.Cmd, func(), error) {
	return isolate.Command(ctx, isolate.Spec{
		Binary: s.Binary, SHA256: s.SHA256, Args: s.Args, Env: s.Env,
		Workspace: s.Workspace, SocketDir: s.SocketDir, Limits: s.Limits, Accept: accept,
	})
}

// asDigestMismatch reports whether err is the isolation layer's refusal of
// a binary whose digest is not the pin, with the digest it found.
func asDigestMismatch(err error) (string, bool) {
	var pe *isolate.PinError
	if errors.As(err, &pe) {
		return pe.Got, true
	}
	return "", false
}

// parseAccept parses the operator's accepted layer names, refusing a name
// that is not an isolation layer.
func parseAccept(accept []string) ([]isolate.Layer, error) {
	layers := make([]isolate.Layer, 0, len(accept))
	for _, a := range accept {
		l, err := isolate.ParseLayer(a)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
	}
	return layers, nil
}
