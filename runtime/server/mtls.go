package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/credentials"

	"github.com/airlock-dev/airlock/runtime/identity"
)

// MTLSHandshakeTimeout bounds a connection's mTLS handshake on the TCP
// listener.
const MTLSHandshakeTimeout = 10 * time.Second

type mtlsListener struct {
	lis   net.Listener
	src   identity.Source
	creds credentials.TransportCredentials
	id    string
}

func (m *mtlsListener) close() {
	_ = m.src.Close()
}

// openMTLS opens the SVID source and listens on the TCP address (already
// checked by CheckListenAddr).
func openMTLS(ctx context.Context, o Options, z *identity.Authorizer, log zerolog.Logger) (_ *mtlsListener, err error) {
	src, err := identity.OpenSource(ctx, o.SVID)
	if err != nil {
		return nil, fmt.Errorf("--listen %s: %w", o.Listen, err)
	}
	defer func() {
		if err != nil {
			_ = src.Close()
		}
	}()
	id, err := src.ID()
	if err != nil {
		return nil, fmt.Errorf("read the executor's SVID: %w", err)
	}
	lis, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w: pass another --listen address", o.Listen, err)
	}
	if o.ListenPublic {
		log.Warn().Str("listen", lis.Addr().String()).Msg("--listen-public: the mTLS listener may be reachable from other machines")
	}
	log.Info().Str("listen", lis.Addr().String()).Str("spiffe_id", id.String()).
		Strs("allow_trust_domains", o.Allow.TrustDomains).Strs("allow_id_patterns", o.Allow.Patterns).Msg("mtls listener ready")
	return &mtlsListener{lis: lis, src: src, creds: identity.ServerCredentials(src, z, log), id: id.String()}, nil
}

// CheckListenAddr refuses a listen address that is not loopback unless
// public is set. A host name must resolve to loopback addresses only; an
// empty host (":8443") means every interface and is not loopback.
func CheckListenAddr(ctx context.Context, addr string, public bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--listen %q: %w: write HOST:PORT, like 127.0.0.1:8443", addr, err)
	}
	if public {
		return nil
	}
	refuse := func(why string) error {
		return fmt.Errorf("--listen %s: %s; to serve other machines pass --listen-public as well", addr, why)
	}
	if host == "" {
		return refuse("an empty host listens on every interface, not only loopback")
	}
	if ip := net.ParseIP(host); ip != nil {
		if !ip.IsLoopback() {
			return refuse(host + " is not a loopback address")
		}
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupIPAddr(rctx, host)
	if err != nil {
		return fmt.Errorf("--listen %s: resolve %s: %w", addr, host, err)
	}
	if len(addrs) == 0 {
		return errors.New("--listen " + addr + ": " + host + " resolves to no address")
	}
	for _, a := range addrs {
		if !a.IP.IsLoopback() {
			return refuse(host + " resolves to " + a.IP.String() + ", which is not loopback")
		}
	}
	return nil
}
