package credentials_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/runtime/credentials"
)

// BenchmarkJWTIssue measures minting one ES256 JWT (the per-call cost of a
// jwt source) and revoking it.
func BenchmarkJWTIssue(b *testing.B) {
	j, err := credentials.NewJWT("ci", credentials.JWTOptions{Issuer: "airlock", Audience: "ci.example.org"})
	if err != nil {
		b.Fatal(err)
	}
	na := time.Now().Add(time.Hour)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		c, err := j.Issue(ctx, credentials.IssueRequest{LeaseID: fmt.Sprintf("lse_%d", i), TaskID: "tsk_1", Tool: "t",
			CallerSPIFFEID: "spiffe://airlock.local/agent/a", Scopes: []string{"a", "b"}, NotAfter: na})
		if err != nil {
			b.Fatal(err)
		}
		if err := j.Revoke(ctx, c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSeal measures sealing and opening one revocation reference.
func BenchmarkSeal(b *testing.B) {
	s, err := credentials.LoadOrCreateSealer(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ref := []byte("at_0123456789abcdef0123456789abcdef")
	b.ReportAllocs()
	for b.Loop() {
		sealed, err := s.Seal("lse_1", ref)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Open("lse_1", sealed); err != nil {
			b.Fatal(err)
		}
	}
}
