// Package identity establishes who is calling: a SPIFFE ID taken from the
// connection, never from a request field.
//
// On the unix socket the caller is the peer process's user, read from the
// kernel (SO_PEERCRED), as spiffe://airlock.local/uid/<uid>. On the mTLS
// listener the caller is the SPIFFE ID of the peer's X.509-SVID, verified
// against the trust bundle and admitted by an Authorizer in the handshake
// (ServerCredentials).
package identity

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// LocalTrustDomain is the trust domain of callers identified by the kernel.
const LocalTrustDomain = "airlock.local"

// Caller is an authenticated SPIFFE identity.
type Caller struct {
	SpiffeID    string
	TrustDomain string
	Path        string
}

// Parse parses a SPIFFE ID of the form spiffe://trust-domain/path.
func Parse(id string) (Caller, error) {
	rest, ok := strings.CutPrefix(id, "spiffe://")
	if !ok {
		return Caller{}, fmt.Errorf("spiffe id %q must start with spiffe://", id)
	}
	td, path, _ := strings.Cut(rest, "/")
	if td == "" {
		return Caller{}, fmt.Errorf("spiffe id %q has no trust domain", id)
	}
	for _, c := range td {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return Caller{}, fmt.Errorf("spiffe id %q: trust domain may hold only lowercase letters, digits, '.', '-' and '_'", id)
		}
	}
	if path != "" {
		for _, seg := range strings.Split(path, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return Caller{}, fmt.Errorf("spiffe id %q has an empty, '.' or '..' path segment", id)
			}
		}
		path = "/" + path
	}
	return Caller{SpiffeID: id, TrustDomain: td, Path: path}, nil
}

// FromUID is the identity of a local process running as uid.
func FromUID(uid uint32) Caller {
	c, _ := Parse("spiffe://" + LocalTrustDomain + "/uid/" + strconv.FormatUint(uint64(uid), 10))
	return c
}

// PeerCredAuthInfo is the AuthInfo of a unix socket peer.
type PeerCredAuthInfo struct {
	credentials.CommonAuthInfo
	UID uint32
	GID uint32
	PID int32
}

// AuthType implements credentials.AuthInfo.
func (PeerCredAuthInfo) AuthType() string { return "peercred" }

// peerCreds are server transport credentials for unix sockets: they read
// the peer's uid from the kernel and send no bytes, so any plaintext gRPC
// client (grpcurl -plaintext -unix) can connect.
type peerCreds struct{}

// PeerCredentials returns server transport credentials that identify unix
// socket peers by their kernel credentials. Connections on other socket
// types are refused.
func PeerCredentials() credentials.TransportCredentials { return peerCreds{} }

var _ credentials.TransportCredentials = peerCreds{}

func (peerCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("peer credentials are server-side only")
}

func (peerCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return nil, nil, fmt.Errorf("peer credentials need a unix socket, got %T", conn)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("read peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, nil, fmt.Errorf("read peer credentials: %w", err)
	}
	if serr != nil {
		return nil, nil, fmt.Errorf("read peer credentials: %w", serr)
	}
	return conn, PeerCredAuthInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		UID:            cred.Uid, GID: cred.Gid, PID: cred.Pid,
	}, nil
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}
func (p peerCreds) Clone() credentials.TransportCredentials { return p }
func (peerCreds) OverrideServerName(string) error           { return nil }

// FromContext returns the caller of a gRPC request from its peer's
// AuthInfo. It fails when the connection carries no identity.
func FromContext(ctx context.Context) (Caller, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return Caller{}, errors.New("the connection carries no identity")
	}
	switch ai := p.AuthInfo.(type) {
	case PeerCredAuthInfo:
		return FromUID(ai.UID), nil
	case SVIDAuthInfo:
		c, err := Parse(ai.SpiffeID)
		if err != nil {
			return Caller{}, fmt.Errorf("peer certificate: %w", err)
		}
		return c, nil
	default:
		return Caller{}, fmt.Errorf("unsupported authentication %q", p.AuthInfo.AuthType())
	}
}
