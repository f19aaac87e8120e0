package server

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/airlock-dev/airlock/runtime/executor"
	"github.com/airlock-dev/airlock/runtime/identity"
)

// StreamAudit calls are bounded per caller and in all; a closed stream
// gives its slot back.
func TestAuditStreamsBounded(t *testing.T) {
	s := &auditService{}
	var releases []func()
	for range MaxAuditStreamsPerCaller {
		r, err := s.openStream("spiffe://airlock.local/uid/0")
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	if _, err := s.openStream("spiffe://airlock.local/uid/0"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("one caller opened more than %d streams: %v", MaxAuditStreamsPerCaller, err)
	}
	releases[0]()
	if _, err := s.openStream("spiffe://airlock.local/uid/0"); err != nil {
		t.Fatalf("a released slot: %v", err)
	}
	for i := 0; s.total < MaxAuditStreams; i++ {
		if _, err := s.openStream(fmt.Sprintf("spiffe://example.org/ops/%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.openStream("spiffe://example.org/ops/late"); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("more than %d streams in all: %v", MaxAuditStreams, err)
	}
}

// Without --auditors the auditors are the local operators, the default
// approvers: the executor's own uid and root on the socket, nobody else.
func TestDefaultAuditorsAreTheLocalOperators(t *testing.T) {
	a, err := NewAuditors(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range executor.LocalOperators() {
		c, err := identity.Parse(p.String())
		if err != nil || !a.Allowed(c) {
			t.Errorf("%s is not an auditor (%v)", p, err)
		}
	}
	if !a.Allowed(identity.FromUID(0)) {
		t.Error("root is not an auditor")
	}
	for _, id := range []string{"spiffe://airlock.local/uid/4242424", "spiffe://airlock.local/agent/planner", "spiffe://example.org/uid/0"} {
		c, _ := identity.Parse(id)
		if a.Allowed(c) {
			t.Errorf("%s is an auditor by default", id)
		}
	}
}

// --auditors and --approvers parse alike: comma-separated values, every bad
// pattern named with its flag.
func TestAuditorsAndApproversParseAlike(t *testing.T) {
	a, err := NewAuditors([]string{"spiffe://example.org/ops/*, spiffe://example.org/sec/alice"})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"spiffe://example.org/ops/bob", "spiffe://example.org/sec/alice"} {
		if c, _ := identity.Parse(id); !a.Allowed(c) {
			t.Errorf("%s is not an auditor", id)
		}
	}
	if a.Allowed(identity.FromUID(0)) {
		t.Error("--auditors did not replace the local operators")
	}
	for flag, parse := range map[string]func([]string) error{
		"--auditors":  func(l []string) error { _, err := NewAuditors(l); return err },
		"--approvers": func(l []string) error { _, err := parseApprovers(l); return err },
	} {
		err := parse([]string{"not-a-spiffe-id,spiffe://example.org/ok", "also bad"})
		if err == nil || strings.Count(err.Error(), flag+":") != 2 {
			t.Errorf("%s: got %v, want both bad patterns named", flag, err)
		}
	}
}
