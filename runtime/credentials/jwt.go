package credentials

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/rs/zerolog"
)

// JWT defaults and bounds.
const (
	DefaultJWTTTL = 5 * time.Minute
	MaxJWTTTL     = time.Hour
	// DefaultMaxActive bounds the JWTs one source tracks as active at once.
	DefaultMaxActive = 100_000
	// maxIntrospectBody bounds an introspection request body.
	maxIntrospectBody = 16 << 10
)

// Paths served by JWT.Handler.
const (
	JWKSPath       = "/.well-known/jwks.json"
	IntrospectPath = "/introspect"
)

// JWTOptions configures NewJWT.
type JWTOptions struct {
	// Issuer is the iss claim. Required.
	Issuer string
	// Audience is the aud claim unless the request names one. Required.
	Audience string
	// TTL is the lifetime of a token, capped by the request's NotAfter.
	// Default DefaultJWTTTL; at most MaxJWTTTL.
	TTL time.Duration
	// KeyFile is a PEM file (mode 0600) with a P-256 private key, PKCS#8 or
	// SEC 1. Empty: a key is generated at start, so tokens minted before a
	// restart no longer verify after it.
	KeyFile string
	// MaxActive bounds the tokens tracked as active; Issue fails closed
	// when it is reached. Default DefaultMaxActive.
	MaxActive int
	// Logger receives issue and revoke messages (lease ids, never tokens).
	Logger zerolog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// JWT is a source that mints ES256 JWTs signed by the executor.
//
// Claims: iss, aud, sub (the caller's SPIFFE ID), iat, nbf, exp (at most
// TTL from now and never after the task's expiry), jti (the lease id),
// task, tool and scope (space-separated, RFC 8693 style).
//
// How verifiers learn of revocation: Handler serves the public keys at
// JWKSPath and an RFC 7662 introspection endpoint at IntrospectPath. A
// token is active only while this source has it on record as issued, not
// revoked and not expired: Revoke (at task end) makes it inactive at once,
// and after a restart every earlier token is inactive (the record is kept
// in memory only, which fails closed). A verifier that checks only the
// signature against the JWKS accepts a revoked token until its exp, which
// is why the TTL is short; verifiers that must honour revocation at once
// introspect.
type JWT struct {
	name     string
	issuer   string
	audience string
	ttl      time.Duration
	max      int
	log      zerolog.Logger
	now      func() time.Time

	key    *ecdsa.PrivateKey
	kid    string
	signer jose.Signer
	jwks   []byte // the public JSON Web Key Set, serialized

	mu     sync.Mutex
	active map[string]time.Time // jti -> exp
}

var _ Source = (*JWT)(nil)

// NewJWT returns a JWT source.
func NewJWT(name string, opts JWTOptions) (*JWT, error) {
	switch {
	case opts.Issuer == "":
		return nil, fmt.Errorf("jwt credential source %q: issuer is required", name)
	case opts.Audience == "":
		return nil, fmt.Errorf("jwt credential source %q: audience is required", name)
	case opts.TTL < 0 || opts.TTL > MaxJWTTTL:
		return nil, fmt.Errorf("jwt credential source %q: ttl %s is not between 0 and %s", name, opts.TTL, MaxJWTTTL)
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultJWTTTL
	}
	if opts.MaxActive <= 0 {
		opts.MaxActive = DefaultMaxActive
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var key *ecdsa.PrivateKey
	var err error
	if opts.KeyFile != "" {
		if key, err = loadECKey(opts.KeyFile); err != nil {
			return nil, fmt.Errorf("jwt credential source %q: %w", name, err)
		}
	} else if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		return nil, fmt.Errorf("jwt credential source %q: generate key: %w", name, err)
	}
	pub := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.ES256), Use: "sig"}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("jwt credential source %q: key thumbprint: %w", name, err)
	}
	pub.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: pub.KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("jwt credential source %q: signer: %w", name, err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	if err != nil {
		return nil, fmt.Errorf("jwt credential source %q: serialize JWKS: %w", name, err)
	}
	return &JWT{name: name, issuer: opts.Issuer, audience: opts.Audience, ttl: opts.TTL, max: opts.MaxActive,
		log: opts.Logger, now: opts.Now, key: key, kid: pub.KeyID, signer: signer, jwks: jwks,
		active: map[string]time.Time{}}, nil
}

// loadECKey reads a P-256 private key from a PEM file of mode 0600.
func loadECKey(path string) (*ecdsa.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s is readable by group or others (mode %s): chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("key file %s holds no PEM block: write a P-256 private key in PEM", path)
	}
	var key any
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("key file %s: PEM block %q is not a private key: want EC PRIVATE KEY or PRIVATE KEY", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("key file %s: the key is not a P-256 ECDSA key (ES256 needs one)", path)
	}
	return ec, nil
}

// Name returns the source's name.
func (j *JWT) Name() string { return j.name }

// KeyID returns the kid of the signing key, as published in the JWKS.
func (j *JWT) KeyID() string { return j.kid }

// jwtClaims are the private claims airlock adds.
type jwtClaims struct {
	Task  string `json:"task"`
	Tool  string `json:"tool,omitempty"`
	Scope string `json:"scope,omitempty"`
}

// Issue mints a token for req. req.LeaseID becomes the jti and must be set.
func (j *JWT) Issue(_ context.Context, req IssueRequest) (*Credential, error) {
	now := j.now()
	if err := checkRequest(j.name, req, now); err != nil {
		return nil, err
	}
	if req.LeaseID == "" {
		return nil, fmt.Errorf("jwt credential source %q: issue: LeaseID is empty: issue through a Leaser", j.name)
	}
	if req.CallerSPIFFEID == "" {
		return nil, fmt.Errorf("jwt credential source %q: issue: the caller's SPIFFE ID is empty: it is the token's subject", j.name)
	}
	aud := j.audience
	if req.Audience != "" {
		aud = req.Audience
	}
	exp := now.Add(j.ttl)
	if req.NotAfter.Before(exp) {
		exp = req.NotAfter
	}
	// JWT times are whole seconds: round exp down so it never passes
	// NotAfter.
	exp = exp.Truncate(time.Second)
	if !exp.After(now) {
		return nil, fmt.Errorf("jwt credential source %q: issue: the task expires in less than a second", j.name)
	}
	std := jwt.Claims{
		Issuer:    j.issuer,
		Subject:   req.CallerSPIFFEID,
		Audience:  jwt.Audience{aud},
		Expiry:    jwt.NewNumericDate(exp),
		NotBefore: jwt.NewNumericDate(now),
		IssuedAt:  jwt.NewNumericDate(now),
		ID:        req.LeaseID,
	}
	tok, err := jwt.Signed(j.signer).Claims(std).Claims(jwtClaims{Task: req.TaskID, Tool: req.Tool, Scope: strings.Join(req.Scopes, " ")}).Serialize()
	if err != nil {
		return nil, fmt.Errorf("jwt credential source %q: sign: %w: %w", j.name, err, ErrSource)
	}
	j.mu.Lock()
	if len(j.active) >= j.max {
		for id, e := range j.active {
			if !e.After(now) {
				delete(j.active, id)
			}
		}
	}
	if len(j.active) >= j.max {
		j.mu.Unlock()
		return nil, fmt.Errorf("jwt credential source %q: %d tokens are active, the most it tracks: end finished tasks or raise maxActive: %w", j.name, j.max, ErrSource)
	}
	j.active[req.LeaseID] = exp
	j.mu.Unlock()
	j.log.Debug().Str("source", j.name).Str("lease", req.LeaseID).Time("expires", exp).Msg("jwt minted")
	return &Credential{Value: tok, ExpiresAt: exp, LeaseID: req.LeaseID, SourceRef: req.LeaseID, Scopes: req.Scopes}, nil
}

// Revoke makes the token inactive at the introspection endpoint.
func (j *JWT) Revoke(_ context.Context, cred *Credential) error {
	if cred == nil || cred.SourceRef == "" {
		return fmt.Errorf("jwt credential source %q: revoke: no token id", j.name)
	}
	j.mu.Lock()
	delete(j.active, cred.SourceRef)
	j.mu.Unlock()
	j.log.Debug().Str("source", j.name).Str("lease", cred.LeaseID).Msg("jwt revoked")
	return nil
}

// Introspection is the RFC 7662 response of the introspection endpoint.
type Introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	Subject   string `json:"sub,omitempty"`
	Audience  string `json:"aud,omitempty"`
	Issuer    string `json:"iss,omitempty"`
	ExpiresAt int64  `json:"exp,omitempty"`
	IssuedAt  int64  `json:"iat,omitempty"`
	ID        string `json:"jti,omitempty"`
	Task      string `json:"task,omitempty"`
	Tool      string `json:"tool,omitempty"`
	TokenType string `json:"token_type,omitempty"`
}

// Introspect reports whether token is a token this source minted, with a
// valid signature, not expired and not revoked; if so, with its claims.
func (j *JWT) Introspect(token string) Introspection {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || len(tok.Headers) != 1 || tok.Headers[0].KeyID != j.kid {
		return Introspection{}
	}
	var std jwt.Claims
	var priv jwtClaims
	if err := tok.Claims(&j.key.PublicKey, &std, &priv); err != nil {
		return Introspection{}
	}
	now := j.now()
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: j.issuer, Time: now}, 0); err != nil {
		return Introspection{}
	}
	j.mu.Lock()
	exp, ok := j.active[std.ID]
	j.mu.Unlock()
	if !ok || !exp.After(now) {
		return Introspection{}
	}
	in := Introspection{Active: true, Scope: priv.Scope, Subject: std.Subject, Issuer: std.Issuer, ID: std.ID,
		Task: priv.Task, Tool: priv.Tool, TokenType: "Bearer"}
	if len(std.Audience) > 0 {
		in.Audience = std.Audience[0]
	}
	if std.Expiry != nil {
		in.ExpiresAt = int64(*std.Expiry)
	}
	if std.IssuedAt != nil {
		in.IssuedAt = int64(*std.IssuedAt)
	}
	return in
}

// JWKS returns the public JSON Web Key Set, serialized.
func (j *JWT) JWKS() []byte { return append([]byte(nil), j.jwks...) }

// Handler serves GET JWKSPath (the public keys) and POST IntrospectPath
// (RFC 7662: form field "token"; the answer is {"active":false} for any
// token that is not active, whatever the reason). Introspection callers are
// not authenticated: the answer reveals only the claims of a token the
// caller already holds. Mount it on a listener verifiers can reach.
func (j *JWT) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+JWKSPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "max-age=60")
		_, _ = w.Write(j.jwks)
	})
	mux.HandleFunc("POST "+IntrospectPath, func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxIntrospectBody)
		if err := r.ParseForm(); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "request body is not a form: send token=... as application/x-www-form-urlencoded", http.StatusBadRequest)
			return
		}
		token := r.PostForm.Get("token")
		if token == "" {
			http.Error(w, "form field token is required", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(j.Introspect(token))
	})
	return mux
}

// drain discards and closes a response body, bounded.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, 64<<10))
	_ = body.Close()
}
