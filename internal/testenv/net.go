package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/airlock-dev/airlock/runtime/egress"
)

// LoopbackNet is the resolver and dialer of tests that exercise egress: it
// answers names from Names and connects only to Routes, each an "ip:port"
// the executor may dial mapped to a test server on loopback. Asking it to
// dial anything else fails the test, so no packet can leave the machine
// even if an egress check under test were broken.
type LoopbackNet struct {
	TB     testing.TB
	Names  map[string]string // host name -> IP address answered
	Routes map[string]string // "ip:port" -> loopback address of a test server
}

// LookupNetIP implements egress.Resolver.
func (n *LoopbackNet) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if ip, ok := n.Names[host]; ok {
		return []netip.Addr{netip.MustParseAddr(ip)}, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// DialContext implements egress.Dialer.
func (n *LoopbackNet) DialContext(ctx context.Context, _, addr string) (net.Conn, error) {
	target, ok := n.Routes[addr]
	if !ok {
		n.TB.Errorf("asked to dial %s: only the loopback test servers may be reached", addr)
		return nil, fmt.Errorf("test dialer: %s is not a test server", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", target)
}

// LoopbackEgress is an egress client that reaches one TLS test server at
// server (its loopback address) as ip:443, trusting roots; names are what
// the resolver answers (the server's own names should map to ip).
func LoopbackEgress(tb testing.TB, server, ip string, roots *x509.CertPool, names map[string]string) *egress.Client {
	n := &LoopbackNet{TB: tb, Names: names, Routes: map[string]string{ip + ":443": server}}
	return egress.New(egress.Config{Resolver: n, Dialer: n, TLSConfig: &tls.Config{RootCAs: roots}})
}
