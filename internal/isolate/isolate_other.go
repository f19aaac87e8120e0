//go:build !linux

package isolate

import (
	"context"
	"errors"
	"os"
	"os/exec"
)

// ExitInitFailed is the exit status of an isolated process whose init
// failed before the plugin started.
const ExitInitFailed = 125

// PluginDir is where the init puts the plugin binary inside the sandbox.
const PluginDir = "/run/airlock/plugin"

var errUnsupported = errors.New("isolate: native plugins run only on Linux, where the executor can isolate them")

func command(context.Context, Spec) (*exec.Cmd, func(), error) { return nil, nil, errUnsupported }

func initMain() {}

func probe() Report {
	r := Report{Available: map[Layer]bool{}, Missing: map[Layer]string{}}
	for _, l := range Layers {
		r.Missing[l] = "not Linux"
	}
	return r
}

func sandboxIDs() (int, int) { return os.Getuid(), os.Getgid() }
