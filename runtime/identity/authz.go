package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
)

// Pattern matches SPIFFE IDs. It is written like a SPIFFE ID whose path
// segments may be globs: spiffe://example.org/agent/* matches
// spiffe://example.org/agent/summariser but not .../agent/a/b. Within a
// segment, '*', '?' and '[...]' mean what they mean to path.Match. A last
// segment "**" matches one or more remaining segments. The trust domain is
// matched exactly: it may hold no glob.
type Pattern struct {
	raw         string
	trustDomain string
	segs        []string
}

// ParsePattern parses and checks a Pattern.
func ParsePattern(p string) (Pattern, error) {
	rest, ok := strings.CutPrefix(p, "spiffe://")
	if !ok {
		return Pattern{}, fmt.Errorf("spiffe id pattern %q must start with spiffe://", p)
	}
	td, pth, _ := strings.Cut(rest, "/")
	if _, err := spiffeid.TrustDomainFromString(td); err != nil || td == "" {
		return Pattern{}, fmt.Errorf("spiffe id pattern %q: the trust domain %q is not a valid trust domain name (globs are not allowed there)", p, td)
	}
	if pth == "" {
		return Pattern{}, fmt.Errorf("spiffe id pattern %q has no path: to admit a whole trust domain use --allow-trust-domain %s", p, td)
	}
	segs := strings.Split(pth, "/")
	for i, s := range segs {
		if s == "" || s == "." || s == ".." {
			return Pattern{}, fmt.Errorf("spiffe id pattern %q has an empty, '.' or '..' path segment", p)
		}
		if s == "**" {
			if i != len(segs)-1 {
				return Pattern{}, fmt.Errorf("spiffe id pattern %q: \"**\" may only be the last segment", p)
			}
			continue
		}
		if _, err := path.Match(s, ""); err != nil {
			return Pattern{}, fmt.Errorf("spiffe id pattern %q: segment %q: %w", p, s, err)
		}
	}
	return Pattern{raw: p, trustDomain: td, segs: segs}, nil
}

// String returns the pattern as written.
func (p Pattern) String() string { return p.raw }

// Match reports whether id matches the pattern.
func (p Pattern) Match(id Caller) bool {
	if id.TrustDomain != p.trustDomain || id.Path == "" {
		return false
	}
	segs := strings.Split(strings.TrimPrefix(id.Path, "/"), "/")
	for i, ps := range p.segs {
		if ps == "**" {
			return i < len(segs)
		}
		if i >= len(segs) {
			return false
		}
		if ok, err := path.Match(ps, segs[i]); err != nil || !ok {
			return false
		}
	}
	return len(segs) == len(p.segs)
}

// Allow says which mTLS peers are admitted: a peer is admitted when its
// SPIFFE ID is in one of TrustDomains or matches one of Patterns. Neither
// given admits no one. Whatever the lists say, IDs under
// spiffe://airlock.local/uid/ are refused on mTLS: that namespace belongs to
// callers identified by the kernel on the unix socket, and a certificate
// must not be able to pose as one.
type Allow struct {
	TrustDomains []string
	Patterns     []string
}

// Authorizer checks peer SPIFFE IDs against an Allow. It is immutable and
// safe for concurrent use.
type Authorizer struct {
	tds      map[string]bool
	patterns []Pattern
}

// NewAuthorizer compiles an Allow. It fails when the Allow admits no one
// or holds a malformed trust domain or pattern.
func NewAuthorizer(a Allow) (*Authorizer, error) {
	z := &Authorizer{tds: map[string]bool{}}
	var errs []error
	for _, td := range a.TrustDomains {
		t, err := spiffeid.TrustDomainFromString(td)
		if err != nil || strings.Contains(td, "/") {
			errs = append(errs, fmt.Errorf("allowed trust domain %q: write a trust domain name like example.org", td))
			continue
		}
		z.tds[t.Name()] = true
	}
	for _, s := range a.Patterns {
		p, err := ParsePattern(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		z.patterns = append(z.patterns, p)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(z.tds) == 0 && len(z.patterns) == 0 {
		return nil, errors.New("no mTLS peer is allowed: pass --allow-trust-domain or --allow-id-pattern")
	}
	return z, nil
}

// Authorize returns nil when the peer id is admitted.
func (z *Authorizer) Authorize(id string) error {
	c, err := Parse(id)
	if err != nil {
		return err
	}
	if c.TrustDomain == LocalTrustDomain && strings.HasPrefix(c.Path, "/uid/") {
		return fmt.Errorf("spiffe id %s is reserved for local callers on the unix socket and is never accepted over mTLS", id)
	}
	if z.tds[c.TrustDomain] {
		return nil
	}
	for _, p := range z.patterns {
		if p.Match(c) {
			return nil
		}
	}
	return fmt.Errorf("spiffe id %s is not in an allowed trust domain and matches no allowed pattern", id)
}

// TLS returns the Authorizer as a go-spiffe tlsconfig.Authorizer, which
// runs during the handshake after the chain was verified against the
// trust bundle.
func (z *Authorizer) TLS() tlsconfig.Authorizer {
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		return z.Authorize(id.String())
	}
}

// PatternAuthorizer returns a tlsconfig.Authorizer admitting only IDs that
// match p: a client uses it to check the server it dials.
func PatternAuthorizer(p Pattern) tlsconfig.Authorizer {
	return func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		c, err := Parse(id.String())
		if err != nil {
			return err
		}
		if !p.Match(c) {
			return fmt.Errorf("server spiffe id %s does not match %s: check --server-id", id, p)
		}
		return nil
	}
}
