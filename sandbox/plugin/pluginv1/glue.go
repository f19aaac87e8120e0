package pluginv1

import (
	"context"

	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// The go-plugin handshake of protocol version 1. Both sides must agree on
// all three values: the executor refuses a plugin that does not, and a
// plugin started by anything but the executor exits with a message.
const (
	ProtocolVersion  = 1
	MagicCookieKey   = "AIRLOCK_PLUGIN"
	MagicCookieValue = "airlock-tool-v1"
	// PluginName is the name of the one plugin a tool process serves.
	PluginName = "tool"
)

// Message size bounds of the protocol. The executor caps arguments at 1 MiB
// and outputs at 64 MiB (manifest limits); both sides add Slack for the
// rest of the message (credentials, paths, the error text).
const (
	MaxInputBytes  = 4 << 20
	MaxOutputBytes = 64 << 20
	Slack          = 1 << 20
	// MaxErrorBytes bounds CallResponse.error as the executor keeps it.
	MaxErrorBytes = 16 << 10
)

// Handshake is the go-plugin handshake of protocol version 1.
var Handshake = goplugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   MagicCookieKey,
	MagicCookieValue: MagicCookieValue,
}

// GRPCPlugin is the go-plugin glue of the Tool service: a plugin process
// serves Impl; the executor gets a ToolClient. net/rpc is not supported.
type GRPCPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
	// Impl is the tool, on the plugin side only.
	Impl ToolServer
}

var _ goplugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers Impl on the plugin's gRPC server.
func (p *GRPCPlugin) GRPCServer(_ *goplugin.GRPCBroker, s *grpc.Server) error {
	RegisterToolServer(s, p.Impl)
	return nil
}

// GRPCClient returns a ToolClient over the plugin connection.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *goplugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewToolClient(c), nil
}
