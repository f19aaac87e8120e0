package credentials

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// JWTSVIDFetcher fetches JWT-SVIDs. *workloadapi.Client implements it.
type JWTSVIDFetcher interface {
	FetchJWTSVID(ctx context.Context, params jwtsvid.Params) (*jwtsvid.SVID, error)
}

var _ JWTSVIDFetcher = (*workloadapi.Client)(nil)

// SPIFFEJWTOptions configures NewSPIFFEJWT.
type SPIFFEJWTOptions struct {
	// Audience is the aud of the JWT-SVID unless the request names one.
	// Required.
	Audience string
	// Subject, when set, picks which of the executor's identities the
	// JWT-SVID is for (spiffe://...). Default: the Workload API's default.
	Subject string
	// Socket is the Workload API address ("unix:///run/spire/agent.sock").
	// Default: the SPIFFE_ENDPOINT_SOCKET environment variable.
	Socket string
	// Fetcher replaces the Workload API client (tests). When set, Socket is
	// ignored.
	Fetcher JWTSVIDFetcher
	// Logger receives issue messages (lease ids, never tokens).
	Logger zerolog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// SPIFFEJWT is a source that hands out JWT-SVIDs from the SPIFFE Workload
// API. The SVID's subject is the executor's own SPIFFE ID (the Workload API
// serves only the identities of the workload that asks), not the caller's.
//
// JWT-SVIDs cannot be revoked: Revoke does nothing, and a JWT-SVID stays
// valid at verifiers until its exp even after the task ends. Its lifetime
// is set by the SPIRE server (jwt_svid_ttl, default 5 minutes): keep it
// short for sources used by tools. The lease's expiry is the earlier of the
// SVID's and the task's.
type SPIFFEJWT struct {
	name    string
	aud     string
	subject spiffeid.ID
	socket  string
	log     zerolog.Logger
	now     func() time.Time

	mu      sync.Mutex
	fetcher JWTSVIDFetcher
	client  *workloadapi.Client // owned, when dialled by this source
}

var _ Source = (*SPIFFEJWT)(nil)

// NewSPIFFEJWT returns a spiffe-jwt source. It does not dial the Workload
// API until the first Issue.
func NewSPIFFEJWT(name string, opts SPIFFEJWTOptions) (*SPIFFEJWT, error) {
	if opts.Audience == "" {
		return nil, fmt.Errorf("spiffe-jwt credential source %q: audience is required", name)
	}
	s := &SPIFFEJWT{name: name, aud: opts.Audience, socket: opts.Socket, log: opts.Logger, now: opts.Now, fetcher: opts.Fetcher}
	if opts.Subject != "" {
		id, err := spiffeid.FromString(opts.Subject)
		if err != nil {
			return nil, fmt.Errorf("spiffe-jwt credential source %q: subject %q: %w", name, opts.Subject, err)
		}
		s.subject = id
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s, nil
}

// Name returns the source's name.
func (s *SPIFFEJWT) Name() string { return s.name }

func (s *SPIFFEJWT) getFetcher(ctx context.Context) (JWTSVIDFetcher, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fetcher != nil {
		return s.fetcher, nil
	}
	var opts []workloadapi.ClientOption
	if s.socket != "" {
		opts = append(opts, workloadapi.WithAddr(s.socket))
	}
	c, err := workloadapi.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("spiffe-jwt credential source %q: connect to the Workload API: %w: check --spiffe-socket or SPIFFE_ENDPOINT_SOCKET", s.name, err)
	}
	s.client, s.fetcher = c, c
	return c, nil
}

// Issue fetches a JWT-SVID for the audience.
func (s *SPIFFEJWT) Issue(ctx context.Context, req IssueRequest) (*Credential, error) {
	now := s.now()
	if err := checkRequest(s.name, req, now); err != nil {
		return nil, err
	}
	f, err := s.getFetcher(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrSource)
	}
	aud := cmp.Or(req.Audience, s.aud)
	svid, err := f.FetchJWTSVID(ctx, jwtsvid.Params{Audience: aud, Subject: s.subject})
	if err != nil {
		return nil, fmt.Errorf("spiffe-jwt credential source %q: fetch JWT-SVID for audience %q: %w: %w", s.name, aud, err, ErrSource)
	}
	if svid == nil || svid.Marshal() == "" {
		return nil, fmt.Errorf("spiffe-jwt credential source %q: the Workload API returned no JWT-SVID: %w", s.name, ErrSource)
	}
	if !slices.Contains(svid.Audience, aud) {
		return nil, fmt.Errorf("spiffe-jwt credential source %q: the JWT-SVID is not for audience %q: %w", s.name, aud, ErrSource)
	}
	if !svid.Expiry.After(now) {
		return nil, fmt.Errorf("spiffe-jwt credential source %q: the JWT-SVID has already expired: %w", s.name, ErrSource)
	}
	exp := svid.Expiry
	if req.NotAfter.Before(exp) {
		exp = req.NotAfter
	}
	s.log.Debug().Str("source", s.name).Str("lease", req.LeaseID).Str("spiffe_id", svid.ID.String()).Time("svid_expires", svid.Expiry).Msg("jwt-svid fetched")
	return &Credential{Value: svid.Marshal(), ExpiresAt: exp, LeaseID: req.LeaseID}, nil
}

// Revoke does nothing: JWT-SVIDs cannot be revoked; their short lifetime
// bounds them.
func (s *SPIFFEJWT) Revoke(context.Context, *Credential) error { return nil }

// Close closes the Workload API client if this source dialled one.
func (s *SPIFFEJWT) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		return nil
	}
	err := s.client.Close()
	s.client, s.fetcher = nil, nil
	return err
}
