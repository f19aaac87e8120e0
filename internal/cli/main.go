// Package cli implements the airlock command line. Commands only parse
// flags and call into the runtime and client packages.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit statuses of airlock. `airlock call` maps outcomes to them.
const (
	ExitOK      = 0
	ExitFail    = 1 // a command failed (lint problems, verify failures, ...)
	ExitUsage   = 2 // bad usage, or the executor could not be reached
	ExitDenied  = 3
	ExitPending = 4
	ExitFailed  = 5 // failed or timeout
	ExitInvalid = 6
)

// ExitError carries an exit status out of a command.
type ExitError struct {
	Code int
	Err  error // printed to stderr when non-nil
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

func usageErr(format string, a ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, a...)}
}

// Main is the airlock program with its standard streams.
type Main struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Getenv reads the environment (os.Getenv by default).
	Getenv func(string) string
}

// NewMain returns a Main on the process's streams.
func NewMain() *Main {
	return &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
}

// Run runs the command line args and returns the exit status.
func (m *Main) Run(ctx context.Context, args []string) int {
	root := m.rootCommand()
	root.SetArgs(args)
	root.SetIn(m.Stdin)
	root.SetOut(m.Stdout)
	root.SetErr(m.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if ee.Err != nil {
			fmt.Fprintf(m.Stderr, "airlock: %v\n", ee.Err)
		}
		return ee.Code
	}
	fmt.Fprintf(m.Stderr, "airlock: %v\n", err)
	// cobra's own errors (unknown flag or command) are usage errors.
	return ExitUsage
}

func (m *Main) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "airlock",
		Short: "airlock runs an AI agent's tool calls as checked, sandboxed, audited transactions",
		Long: `airlock stands between an agent's planner and the world. A planner submits an
intent (a tool name and JSON arguments); airlock validates it, decides with CEL
policy, runs the tool in a WebAssembly sandbox with only the capabilities its
manifest grants, and records every step in a hash-chained audit log.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		m.serveCommand(),
		m.callCommand(),
		m.toolsCommand(),
		m.taskCommand(),
		m.intentCommand(),
		m.approvalsCommand(),
		m.manifestCommand(),
		m.policyCommand(),
		m.auditCommand(),
		m.devCommand(),
		m.versionCommand(),
	)
	return root
}

func (m *Main) env(key, def string) string {
	if m.Getenv != nil {
		if v := m.Getenv(key); v != "" {
			return v
		}
	}
	return def
}
