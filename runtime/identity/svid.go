package identity

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/credentials"
)

// DefaultWorkloadAPITimeout bounds the wait for the first X.509-SVID from
// the Workload API.
const DefaultWorkloadAPITimeout = 30 * time.Second

// SVIDConfig says where a workload's X.509-SVID and trust bundles come
// from: the SPIFFE Workload API (WorkloadAPI) or files (CertFile, KeyFile,
// Bundles), for development with `airlock dev ca`. Exactly one of the two
// must be set.
type SVIDConfig struct {
	// WorkloadAPI is the Workload API address: unix:///path, tcp://ip:port,
	// or a plain socket path.
	WorkloadAPI string
	// CertFile holds the SVID's certificate chain (PEM, leaf first);
	// KeyFile its private key (PEM, PKCS#8).
	CertFile, KeyFile string
	// Bundles are trust bundle files (PEM CA certificates), each written
	// [TRUST_DOMAIN=]PATH; without a trust domain, a bundle is the bundle
	// of the SVID's own trust domain.
	Bundles []string
	// Timeout bounds the wait for the first SVID from the Workload API
	// (default DefaultWorkloadAPITimeout).
	Timeout time.Duration
}

// Source supplies an X.509-SVID and the trust bundles that verify peers.
// Close releases it (the Workload API stream).
type Source interface {
	x509svid.Source
	x509bundle.Source
	// ID is the SPIFFE ID of the current SVID.
	ID() (spiffeid.ID, error)
	Close() error
}

// OpenSource opens the SVID source c describes. With the Workload API it
// waits (at most c.Timeout) for the first SVID; with files it loads and
// checks them now: the SVID must be unexpired and verify against its own
// trust domain's bundle.
func OpenSource(ctx context.Context, c SVIDConfig) (Source, error) {
	files := c.CertFile != "" || c.KeyFile != "" || len(c.Bundles) > 0
	switch {
	case files && c.WorkloadAPI != "":
		return nil, errors.New("pass either a Workload API socket (--spiffe-socket) or SVID files (--svid-cert, --svid-key, --svid-bundle), not both")
	case files:
		return loadFileSource(c)
	case c.WorkloadAPI != "":
		return openWorkloadSource(ctx, c)
	default:
		return nil, errors.New("no SVID source: pass --spiffe-socket (or set SPIFFE_ENDPOINT_SOCKET) or --svid-cert, --svid-key and --svid-bundle")
	}
}

// WorkloadAPIAddr normalises a Workload API address: a plain path becomes
// unix://path.
func WorkloadAPIAddr(a string) string {
	if strings.HasPrefix(a, "/") {
		return "unix://" + a
	}
	return a
}

type workloadSource struct{ *workloadapi.X509Source }

func (w workloadSource) ID() (spiffeid.ID, error) {
	s, err := w.GetX509SVID()
	if err != nil {
		return spiffeid.ID{}, err
	}
	return s.ID, nil
}

func openWorkloadSource(ctx context.Context, c SVIDConfig) (Source, error) {
	addr := WorkloadAPIAddr(c.WorkloadAPI)
	if err := workloadapi.ValidateAddress(addr); err != nil {
		return nil, fmt.Errorf("workload api address %q: %w: write unix:///path/to/agent.sock", c.WorkloadAPI, err)
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultWorkloadAPITimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(addr)))
	if err != nil {
		// The source retries until its deadline and keeps the reason to
		// itself: one direct fetch says why (no entry, agent down).
		fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer fcancel()
		if _, ferr := workloadapi.FetchX509SVID(fctx, workloadapi.WithAddr(addr)); ferr != nil {
			err = fmt.Errorf("%w (the workload api says: %v)", err, ferr)
		}
		return nil, fmt.Errorf("get an X.509-SVID from the workload api at %s: %w: is the SPIRE agent running, and is there a registration entry for this process?", addr, err)
	}
	return workloadSource{src}, nil
}

type fileSource struct {
	svid    *x509svid.SVID
	bundles *x509bundle.Set
}

func (f *fileSource) GetX509SVID() (*x509svid.SVID, error) { return f.svid, nil }
func (f *fileSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return f.bundles.GetX509BundleForTrustDomain(td)
}
func (f *fileSource) ID() (spiffeid.ID, error) { return f.svid.ID, nil }
func (f *fileSource) Close() error             { return nil }

func loadFileSource(c SVIDConfig) (Source, error) {
	if c.CertFile == "" || c.KeyFile == "" || len(c.Bundles) == 0 {
		return nil, errors.New("SVID files need all of --svid-cert, --svid-key and --svid-bundle (see `airlock dev ca issue`)")
	}
	svid, err := x509svid.Load(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("load the SVID from %s and %s: %w", c.CertFile, c.KeyFile, err)
	}
	set := x509bundle.NewSet()
	for _, b := range c.Bundles {
		td := svid.ID.TrustDomain()
		p := b
		if name, file, ok := strings.Cut(b, "="); ok {
			t, err := spiffeid.TrustDomainFromString(name)
			if err != nil {
				return nil, fmt.Errorf("--svid-bundle %q: trust domain %q: %w", b, name, err)
			}
			td, p = t, file
		}
		if set.Has(td) {
			return nil, fmt.Errorf("--svid-bundle %q: a bundle for trust domain %s was given twice", b, td)
		}
		bundle, err := x509bundle.Load(td, p)
		if err != nil {
			return nil, fmt.Errorf("load the trust bundle %s: %w", p, err)
		}
		set.Add(bundle)
	}
	if !set.Has(svid.ID.TrustDomain()) {
		return nil, fmt.Errorf("no trust bundle for the SVID's own trust domain %s: pass --svid-bundle PATH", svid.ID.TrustDomain())
	}
	now := time.Now()
	leaf := svid.Certificates[0]
	if now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("the SVID in %s (%s) expired at %s: issue a new one (airlock dev ca issue)", c.CertFile, svid.ID, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if _, _, err := x509svid.Verify(svid.Certificates, set); err != nil {
		return nil, fmt.Errorf("the SVID in %s does not verify against its trust bundle: %w: pass the bundle of the CA that issued it", c.CertFile, err)
	}
	return &fileSource{svid: svid, bundles: set}, nil
}

// SVIDAuthInfo is the AuthInfo of an mTLS peer whose X.509-SVID was
// verified against the trust bundle and admitted by the authorizer during
// the handshake.
type SVIDAuthInfo struct {
	credentials.TLSInfo
	// SpiffeID is the peer's SPIFFE ID, from its certificate's URI SAN.
	SpiffeID string
}

// AuthType implements credentials.AuthInfo.
func (SVIDAuthInfo) AuthType() string { return "spiffe-x509" }

// svidCreds wrap TLS credentials configured by go-spiffe (which verify the
// peer's SVID and run the authorizer in the handshake) and attach the peer's
// SPIFFE ID to the connection.
type svidCreds struct {
	credentials.TransportCredentials
	log *zerolog.Logger // server side: refused handshakes are logged
}

// ServerCredentials returns gRPC server transport credentials for mTLS
// with X.509-SVIDs: the server presents src's SVID, requires a client
// certificate, verifies it against src's bundles and admits it only if z
// does. The peer's SPIFFE ID is then what FromContext returns. log
// receives a warning for every refused handshake, with the peer address
// and why (no certificate, untrusted chain, ID not admitted).
func ServerCredentials(src Source, z *Authorizer, log zerolog.Logger) credentials.TransportCredentials {
	cfg := tlsconfig.MTLSServerConfig(src, src, z.TLS())
	return svidCreds{TransportCredentials: credentials.NewTLS(cfg), log: &log}
}

// ClientCredentials returns gRPC client transport credentials for mTLS
// with X.509-SVIDs: the client presents src's SVID and accepts only a
// server whose SVID verifies against src's bundles and is admitted by
// authorize (see ServerAuthorizer).
func ClientCredentials(src Source, authorize tlsconfig.Authorizer) credentials.TransportCredentials {
	cfg := tlsconfig.MTLSClientConfig(src, src, authorize)
	return svidCreds{TransportCredentials: credentials.NewTLS(cfg)}
}

// ServerAuthorizer is what a client accepts as the server: the SPIFFE ID or
// Pattern serverID, or, when it is empty, any ID in the client's own trust
// domain.
func ServerAuthorizer(src Source, serverID string) (tlsconfig.Authorizer, error) {
	if serverID != "" {
		p, err := ParsePattern(serverID)
		if err != nil {
			return nil, fmt.Errorf("--server-id: %w", err)
		}
		return PatternAuthorizer(p), nil
	}
	id, err := src.ID()
	if err != nil {
		return nil, fmt.Errorf("read the client's own SVID: %w", err)
	}
	return tlsconfig.AuthorizeMemberOf(id.TrustDomain()), nil
}

func (c svidCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, ai, err := c.wrap(c.TransportCredentials.ServerHandshake(raw))
	if err != nil && c.log != nil {
		c.log.Warn().Str("remote", raw.RemoteAddr().String()).Err(err).Msg("mtls handshake refused")
	}
	return conn, ai, err
}

func (c svidCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.wrap(c.TransportCredentials.ClientHandshake(ctx, authority, raw))
}

func (c svidCreds) wrap(conn net.Conn, ai credentials.AuthInfo, err error) (net.Conn, credentials.AuthInfo, error) {
	if err != nil {
		return nil, nil, err
	}
	fail := func(err error) (net.Conn, credentials.AuthInfo, error) {
		conn.Close()
		return nil, nil, err
	}
	ti, ok := ai.(credentials.TLSInfo)
	if !ok {
		return fail(fmt.Errorf("mtls handshake returned %T, not TLS", ai))
	}
	certs := ti.State.PeerCertificates
	if len(certs) == 0 {
		return fail(errors.New("the peer presented no certificate"))
	}
	id, err := x509svid.IDFromCert(certs[0])
	if err != nil {
		return fail(fmt.Errorf("the peer certificate is not an X.509-SVID: %w", err))
	}
	return conn, SVIDAuthInfo{TLSInfo: ti, SpiffeID: id.String()}, nil
}

func (c svidCreds) Clone() credentials.TransportCredentials {
	return svidCreds{TransportCredentials: c.TransportCredentials.Clone(), log: c.log}
}

var (
	_ credentials.TransportCredentials = svidCreds{}
	_ Source                           = (*fileSource)(nil)
	_ Source                           = workloadSource{}
)
