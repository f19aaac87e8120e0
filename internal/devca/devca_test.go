package devca

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestInitIssueVerify(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	now := time.Now()
	if _, err := Init(dir, "example.org", now); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, CAKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode: %v %v", fi.Mode(), err)
	}
	if _, err := Init(dir, "example.org", now); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second init: %v", err)
	}
	ca, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ca.TrustDomain.Name() != "example.org" {
		t.Fatalf("trust domain %s", ca.TrustDomain)
	}
	s, err := ca.Issue("spiffe://example.org/agent/a", 0, now)
	if err != nil {
		t.Fatal(err)
	}
	if d := s.NotAfter.Sub(now); d != DefaultSVIDTTL {
		t.Fatalf("ttl %s", d)
	}
	out := filepath.Join(t.TempDir(), "a")
	cert, key, bundle, err := s.Write(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("svid key mode: %v %v", fi.Mode(), err)
	}
	svid, err := x509svid.Load(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := x509bundle.Load(spiffeid.RequireTrustDomainFromString("example.org"), bundle)
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := x509svid.Verify(svid.Certificates, b)
	if err != nil || id.String() != "spiffe://example.org/agent/a" {
		t.Fatalf("verify: %v %v", id, err)
	}
	// Not valid before it was issued (minus the skew allowance), nor after expiry.
	if _, _, err := x509svid.Verify(svid.Certificates, b, x509svid.WithTime(now.Add(DefaultSVIDTTL+time.Minute))); err == nil {
		t.Fatal("the SVID verifies after its expiry")
	}

	// Another CA's SVID does not verify against this bundle.
	other, err := Init(filepath.Join(t.TempDir(), "ca2"), "example.org", now)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := other.Issue("spiffe://example.org/agent/a", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	svid2, err := x509svid.Parse(s2.CertPEM, s2.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(svid2.Certificates, b); err == nil {
		t.Fatal("an SVID of another CA verifies")
	}
}

func TestIssueRefuses(t *testing.T) {
	now := time.Now()
	ca, err := Init(filepath.Join(t.TempDir(), "ca"), DefaultTrustDomain, now)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		id   string
		ttl  time.Duration
		want string
	}{
		"foreign trust domain": {"spiffe://example.org/agent/a", 0, "not in this CA's trust domain"},
		"no path":              {"spiffe://airlock.local", 0, "no path"},
		"not a spiffe id":      {"https://airlock.local/a", 0, "spiffe id"},
		"uid namespace":        {"spiffe://airlock.local/uid/0", 0, "local callers"},
		"ttl too long":         {"spiffe://airlock.local/agent/a", MaxSVIDTTL + time.Hour, "--ttl"},
		"negative ttl":         {"spiffe://airlock.local/agent/a", -time.Hour, "--ttl"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ca.Issue(c.id, c.ttl, now); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	if _, err := Init(t.TempDir(), "Not/AValid", now); err == nil {
		t.Fatal("a bad trust domain was accepted")
	}
}

func TestLoadRefusesAnOpenKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	if _, err := Init(dir, DefaultTrustDomain, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, CAKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("load with an open key: %v", err)
	}
}
