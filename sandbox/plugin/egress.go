package plugin

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/sandbox/plugin/egressproxy"
)

// Each process of a tool granted network gets its own egress proxy on a
// socket in its socket directory, bound to one call's egress at a time.
func init() {
	serveEgress = func(ctx context.Context, path string, log zerolog.Logger) (egressProxy, error) {
		return egressproxy.Serve(ctx, path, nil, log)
	}
}
