// Command airlock is the airlock executor and its command-line client.
// Run `airlock --help` for the subcommands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/airlock-dev/airlock/internal/cli"
	"github.com/airlock-dev/airlock/internal/isolate"
)

func main() {
	// First: in an isolated plugin process this becomes the sandbox's init
	// and never returns.
	isolate.Init()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.NewMain().Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
