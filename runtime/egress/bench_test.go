package egress_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/airlock-dev/airlock/runtime/egress"
	"github.com/airlock-dev/airlock/runtime/manifest"
)

// benchNet resolves every name to ipAPI and dials only the loopback server.
type benchNet struct{ addr string }

func (n benchNet) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return []netip.Addr{netip.MustParseAddr(ipAPI)}, nil
}

func (n benchNet) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if addr != ipAPI+":80" {
		return nil, fmt.Errorf("bench dialer: %s refused", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", n.addr)
}

// BenchmarkDo measures one allowed request over loopback (a fresh
// connection each time, as the client keeps none), with and without an
// injected credential.
func BenchmarkDo(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	nw := benchNet{addr: srv.Listener.Addr().String()}
	c := egress.New(egress.Config{Resolver: nw, Dialer: nw, AllowCredentialsOverHTTP: true})
	rules := []manifest.NetworkRule{{Host: "api.test", Schemes: []string{"http"}, Paths: []string{"/v1/**"}}}
	for _, bc := range []struct {
		name   string
		inject []egress.Injection
	}{
		{"plain", nil},
		{"credential", []egress.Injection{{CredentialName: "c", Host: "api.test", Header: "Authorization", Value: "Bearer x"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bind, err := c.Bind(rules, bc.inject)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bind.Do(context.Background(), egress.Request{URL: "http://api.test/v1/items"}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
