package identity_test

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/airlock-dev/airlock/internal/devca"
	"github.com/airlock-dev/airlock/runtime/identity"
)

func TestPatternMatch(t *testing.T) {
	cases := []struct {
		pattern, id string
		want        bool
	}{
		{"spiffe://example.org/agent/*", "spiffe://example.org/agent/a", true},
		{"spiffe://example.org/agent/*", "spiffe://example.org/agent/a/b", false},
		{"spiffe://example.org/agent/*", "spiffe://example.org/agent", false},
		{"spiffe://example.org/agent/*", "spiffe://other.org/agent/a", false},
		{"spiffe://example.org/agent/*", "spiffe://example.org.evil/agent/a", false},
		{"spiffe://example.org/agent/**", "spiffe://example.org/agent/a/b", true},
		{"spiffe://example.org/agent/**", "spiffe://example.org/agent", false},
		{"spiffe://example.org/agent/sum-?", "spiffe://example.org/agent/sum-1", true},
		{"spiffe://example.org/agent/a", "spiffe://example.org/agent/a", true},
		{"spiffe://example.org/agent/a", "spiffe://example.org/agent/ab", false},
		{"spiffe://example.org/*/a", "spiffe://example.org/x/a", true},
	}
	for _, c := range cases {
		p, err := identity.ParsePattern(c.pattern)
		if err != nil {
			t.Fatal(err)
		}
		id, err := identity.Parse(c.id)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Match(id); got != c.want {
			t.Errorf("%s matches %s: got %v, want %v", c.pattern, c.id, got, c.want)
		}
	}
	for _, bad := range []string{"example.org/a", "spiffe://*.org/a", "spiffe://example.org", "spiffe://example.org/**/a", "spiffe://example.org/[", "spiffe://example.org/a//b"} {
		if _, err := identity.ParsePattern(bad); err == nil {
			t.Errorf("pattern %q was accepted", bad)
		}
	}
}

func TestAuthorizer(t *testing.T) {
	if _, err := identity.NewAuthorizer(identity.Allow{}); err == nil {
		t.Fatal("an empty Allow was accepted")
	}
	if _, err := identity.NewAuthorizer(identity.Allow{TrustDomains: []string{"spiffe://x/y"}}); err == nil {
		t.Fatal("a bad trust domain was accepted")
	}
	z, err := identity.NewAuthorizer(identity.Allow{
		TrustDomains: []string{"partner.org"},
		Patterns:     []string{"spiffe://airlock.local/agent/*", "spiffe://airlock.local/uid/*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for id, ok := range map[string]bool{
		"spiffe://partner.org/anything/at/all": true,
		"spiffe://airlock.local/agent/a":       true,
		"spiffe://airlock.local/agent/a/b":     false,
		"spiffe://airlock.local/executor":      false,
		"spiffe://airlock.local/uid/0":         false, // reserved even though a pattern names it
		"spiffe://evil.org/agent/a":            false,
	} {
		if err := z.Authorize(id); (err == nil) != ok {
			t.Errorf("authorize %s: %v, want admitted=%v", id, err, ok)
		}
	}
}

// issue writes an SVID for id from ca and returns its SVIDConfig.
func issue(t *testing.T, ca *devca.CA, id string) identity.SVIDConfig {
	t.Helper()
	s, err := ca.Issue(id, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, key, bundle, err := s.Write(filepath.Join(t.TempDir(), "svid"))
	if err != nil {
		t.Fatal(err)
	}
	return identity.SVIDConfig{CertFile: cert, KeyFile: key, Bundles: []string{bundle}}
}

func open(t *testing.T, c identity.SVIDConfig) identity.Source {
	t.Helper()
	src, err := identity.OpenSource(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// handshake runs an mTLS handshake over an in-memory pipe and returns the
// caller the server sees, or the server's and client's errors.
func handshake(t *testing.T, server, client credentials.TransportCredentials) (identity.Caller, error, error) {
	t.Helper()
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	type res struct {
		ai  credentials.AuthInfo
		err error
	}
	done := make(chan res, 1)
	_ = sc.SetDeadline(time.Now().Add(10 * time.Second))
	go func() {
		_, ai, err := server.ServerHandshake(sc)
		if err != nil {
			sc.Close()
		}
		done <- res{ai, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, cerr := client.ClientHandshake(ctx, "airlock", cc)
	if cerr != nil {
		cc.Close()
	}
	// With TLS 1.3 the client finishes first; keep reading so that the
	// server's alert (or nothing) does not block on the synchronous pipe.
	go func() { _, _ = io.Copy(io.Discard, cc) }()
	r := <-done
	if r.err != nil {
		return identity.Caller{}, r.err, cerr
	}
	c, err := identity.FromContext(peer.NewContext(context.Background(), &peer.Peer{AuthInfo: r.ai}))
	return c, err, cerr
}

func TestMTLSHandshake(t *testing.T) {
	now := time.Now()
	ca, err := devca.Init(filepath.Join(t.TempDir(), "ca"), "airlock.local", now)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := devca.Init(filepath.Join(t.TempDir(), "ca2"), "evil.org", now)
	if err != nil {
		t.Fatal(err)
	}
	srv := open(t, issue(t, ca, "spiffe://airlock.local/executor"))
	z, err := identity.NewAuthorizer(identity.Allow{Patterns: []string{"spiffe://airlock.local/agent/*"}})
	if err != nil {
		t.Fatal(err)
	}
	serverCreds := identity.ServerCredentials(srv, z, zerolog.Nop())
	clientCreds := func(src identity.Source, serverID string) credentials.TransportCredentials {
		a, err := identity.ServerAuthorizer(src, serverID)
		if err != nil {
			t.Fatal(err)
		}
		return identity.ClientCredentials(src, a)
	}

	agent := open(t, issue(t, ca, "spiffe://airlock.local/agent/a"))
	c, serr, cerr := handshake(t, serverCreds, clientCreds(agent, ""))
	if serr != nil || cerr != nil || c.SpiffeID != "spiffe://airlock.local/agent/a" || c.Path != "/agent/a" {
		t.Fatalf("allowed agent: caller %+v, server %v, client %v", c, serr, cerr)
	}

	t.Run("client checks the server id", func(t *testing.T) {
		_, _, cerr := handshake(t, serverCreds, clientCreds(agent, "spiffe://airlock.local/other"))
		if cerr == nil || !strings.Contains(cerr.Error(), "does not match") {
			t.Fatalf("client accepted the wrong server: %v", cerr)
		}
	})
	t.Run("id outside the patterns", func(t *testing.T) {
		_, serr, _ := handshake(t, serverCreds, clientCreds(open(t, issue(t, ca, "spiffe://airlock.local/robot/x")), ""))
		if serr == nil || !strings.Contains(serr.Error(), "matches no allowed pattern") {
			t.Fatalf("server admitted an id outside the patterns: %v", serr)
		}
	})
	t.Run("foreign trust domain", func(t *testing.T) {
		cfg := issue(t, foreign, "spiffe://evil.org/agent/a")
		// The foreign client trusts our CA too, so only the server's check stops it.
		cfg.Bundles = append(cfg.Bundles, "airlock.local="+filepath.Join(ca.Dir, devca.CACertFile))
		_, serr, _ := handshake(t, serverCreds, clientCreds(open(t, cfg), "spiffe://airlock.local/executor"))
		if serr == nil || !strings.Contains(serr.Error(), "evil.org") {
			t.Fatalf("server admitted a foreign trust domain: %v", serr)
		}
	})
	t.Run("same trust domain name, other CA", func(t *testing.T) {
		rogue, err := devca.Init(filepath.Join(t.TempDir(), "rogue"), "airlock.local", now)
		if err != nil {
			t.Fatal(err)
		}
		// The rogue client trusts both CAs, so it accepts the server: only
		// the server's chain check can stop it.
		both := filepath.Join(t.TempDir(), "both.pem")
		var pem []byte
		for _, d := range []string{rogue.Dir, ca.Dir} {
			b, err := os.ReadFile(filepath.Join(d, devca.CACertFile))
			if err != nil {
				t.Fatal(err)
			}
			pem = append(pem, b...)
		}
		if err := os.WriteFile(both, pem, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := issue(t, rogue, "spiffe://airlock.local/agent/a")
		cfg.Bundles = []string{both}
		_, serr, _ := handshake(t, serverCreds, clientCreds(open(t, cfg), ""))
		if serr == nil || !strings.Contains(serr.Error(), "certificate signed by unknown authority") {
			t.Fatalf("server admitted an SVID from a CA outside its bundle: %v", serr)
		}
	})
}

func TestFromContextRefusesPlainTLS(t *testing.T) {
	// TLS without the SVID handshake (no bundle check, no authorizer)
	// carries no identity, whatever its certificate says.
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{}})
	if c, err := identity.FromContext(ctx); err == nil {
		t.Fatalf("plain TLS gave caller %+v", c)
	}
	if _, err := identity.FromContext(context.Background()); err == nil {
		t.Fatal("a context without a peer gave a caller")
	}
}
