package plugin

import (
	"context"
	"os"
	"strconv"

	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/sandbox/plugin/egressproxy"
)

// Each process of a tool granted network gets its own egress proxy on a
// socket in its socket directory, bound to one call's egress at a time.
func init() {
	serveEgress = func(ctx context.Context, path string, pid int, log zerolog.Logger) (egressProxy, error) {
		return egressproxy.ServePeers(ctx, path, nil, samePIDNamespace(pid), log)
	}
}

// samePIDNamespace approves the processes in the PID namespace of pid:
// the isolated plugin is PID 1 of a namespace of its own, so a host
// process of the same uid that opens the socket is refused.
func samePIDNamespace(pid int) egressproxy.PeerCheck {
	want, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
	return func(peer int32) bool {
		if err != nil || peer <= 0 {
			return false
		}
		got, gerr := os.Readlink("/proc/" + strconv.Itoa(int(peer)) + "/ns/pid")
		return gerr == nil && got == want
	}
}
