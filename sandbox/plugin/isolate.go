package plugin

import (
	"context"
	"errors"
	"os/exec"

	"github.com/airlock-dev/airlock/internal/isolate"
)

// isolatedCommand builds the isolated process of s (internal/isolate): the
// binary is opened, hashed against the pin and executed by descriptor.
func isolatedCommand(ctx context.Context, s spawnSpec, accept []string) (*exec.Cmd, func(), error) {
	layers := make([]isolate.Layer, 0, len(accept))
	for _, a := range accept {
		l, err := isolate.ParseLayer(a)
		if err != nil {
			return nil, nil, err
		}
		layers = append(layers, l)
	}
	return isolate.Command(ctx, isolate.Spec{
		Binary: s.Binary, SHA256: s.SHA256, Args: s.Args, Env: s.Env,
		Workspace: s.Workspace, SocketDir: s.SocketDir,
		Limits: isolate.Limits{
			AddressSpace: s.Limits.addressSpace, FileSize: s.Limits.fileSize,
			OpenFiles: s.Limits.openFiles, Processes: s.Limits.processes, CPUTime: s.Limits.cpuTime,
		},
		Accept: layers,
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

// checkAccept refuses a name that is not an isolation layer.
func checkAccept(accept []string) error {
	for _, a := range accept {
		if _, err := isolate.ParseLayer(a); err != nil {
			return err
		}
	}
	return nil
}
