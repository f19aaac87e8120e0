package credentials

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// OAuth 2.0 bounds.
const (
	// maxTokenResponse bounds a token endpoint's response body.
	maxTokenResponse = 64 << 10
	// DefaultOAuth2Timeout bounds one request to the token or revocation
	// endpoint.
	DefaultOAuth2Timeout = 10 * time.Second
)

// OAuth2Options configures NewOAuth2.
type OAuth2Options struct {
	// TokenURL is the token endpoint. Required. https, or http to a
	// loopback address (for local development and tests).
	TokenURL string
	// RevokeURL is the RFC 7009 revocation endpoint. Required: a token that
	// cannot be revoked at task end is refused at configuration.
	RevokeURL string
	// ClientID and ClientSecret authenticate the executor (HTTP Basic,
	// client_secret_basic). Required.
	ClientID     string
	ClientSecret string
	// Scopes are the scopes this source may grant. Required: a request gets
	// the scopes its manifest declares intersected with these, and fails if
	// that is empty.
	Scopes []string
	// Audience, when set, is sent as the "audience" parameter (Hydra and
	// Auth0 honour it). A request's Audience overrides it.
	Audience string
	// Timeout bounds each HTTP request. Default DefaultOAuth2Timeout.
	Timeout time.Duration
	// Client is the HTTP client. Default: a client with Timeout that
	// follows no redirects.
	Client *http.Client
	// Logger receives issue and revoke messages (lease ids, never tokens).
	Logger zerolog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// OAuth2 is a source that obtains tokens with the client-credentials grant
// (RFC 6749 section 4.4) and revokes them with RFC 7009.
type OAuth2 struct {
	name string
	opts OAuth2Options
	hc   *http.Client
	log  zerolog.Logger
	now  func() time.Time
}

var _ Source = (*OAuth2)(nil)

// NewOAuth2 returns an OAuth 2.0 client-credentials source.
func NewOAuth2(name string, opts OAuth2Options) (*OAuth2, error) {
	for _, u := range []struct{ field, v string }{{"tokenURL", opts.TokenURL}, {"revokeURL", opts.RevokeURL}} {
		if err := checkEndpoint(u.v); err != nil {
			return nil, fmt.Errorf("oauth2 credential source %q: %s: %w", name, u.field, err)
		}
	}
	switch {
	case opts.ClientID == "":
		return nil, fmt.Errorf("oauth2 credential source %q: clientID is required", name)
	case opts.ClientSecret == "":
		return nil, fmt.Errorf("oauth2 credential source %q: the client secret is empty: set clientSecretFile or clientSecretEnv", name)
	case len(opts.Scopes) == 0:
		return nil, fmt.Errorf("oauth2 credential source %q: scopes is required: list the scopes this source may grant", name)
	}
	for _, s := range opts.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\n\"\\") {
			return nil, fmt.Errorf("oauth2 credential source %q: scope %q is not a valid OAuth 2.0 scope token", name, s)
		}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultOAuth2Timeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	hc := opts.Client
	if hc == nil {
		hc = &http.Client{Timeout: opts.Timeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	return &OAuth2{name: name, opts: opts, hc: hc, log: opts.Logger, now: opts.Now}, nil
}

// checkEndpoint accepts an absolute https URL, or http to a loopback host.
func checkEndpoint(raw string) error {
	if raw == "" {
		return fmt.Errorf("is required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", raw, err)
	}
	if u.User != nil || u.Fragment != "" || u.Host == "" {
		return fmt.Errorf("%q must be an absolute URL with a host and without user info or fragment", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		h := u.Hostname()
		if ip := net.ParseIP(h); h == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("%q uses http to a host that is not loopback: use https", raw)
	}
	return fmt.Errorf("%q: scheme must be https", raw)
}

// Name returns the source's name.
func (o *OAuth2) Name() string { return o.name }

// NarrowScopes returns the scopes of requested that allowed contains, in
// requested's order, without duplicates.
func NarrowScopes(requested, allowed []string) []string {
	var out []string
	for _, s := range requested {
		if slices.Contains(allowed, s) && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

type tokenResponse struct {
	AccessToken string      `json:"access_token"`
	TokenType   string      `json:"token_type"`
	ExpiresIn   json.Number `json:"expires_in"`
	Scope       string      `json:"scope"`
	Error       string      `json:"error"`
	ErrorDesc   string      `json:"error_description"`
}

// Issue requests a token with the narrowed scope. If the server grants a
// scope beyond what was asked, the token is revoked and Issue fails.
func (o *OAuth2) Issue(ctx context.Context, req IssueRequest) (*Credential, error) {
	now := o.now()
	if err := checkRequest(o.name, req, now); err != nil {
		return nil, err
	}
	scopes := NarrowScopes(req.Scopes, o.opts.Scopes)
	if len(scopes) == 0 {
		return nil, fmt.Errorf("oauth2 credential source %q: none of the scopes the manifest declares (%s) is allowed by the source (%s): declare an allowed scope in the tool's manifest",
			o.name, strings.Join(req.Scopes, " "), strings.Join(o.opts.Scopes, " "))
	}
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {strings.Join(scopes, " ")}}
	if aud := cmp.Or(req.Audience, o.opts.Audience); aud != "" {
		form.Set("audience", aud)
	}
	resp, err := o.post(ctx, o.opts.TokenURL, form)
	if err != nil {
		return nil, fmt.Errorf("oauth2 credential source %q: token request: %w: %w", o.name, err, ErrSource)
	}
	defer drain(resp.Body)
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse+1))
	if err != nil {
		return nil, fmt.Errorf("oauth2 credential source %q: read token response: %w: %w", o.name, err, ErrSource)
	}
	if len(body) > maxTokenResponse {
		return nil, fmt.Errorf("oauth2 credential source %q: token response is larger than %d bytes: %w", o.name, maxTokenResponse, ErrSource)
	}
	var tr tokenResponse
	jerr := json.Unmarshal(body, &tr)
	if resp.StatusCode != http.StatusOK {
		// The error fields of RFC 6749 5.2 hold no secret; the body might, so
		// it is not quoted.
		msg := ""
		if jerr == nil && tr.Error != "" {
			msg = ": " + tr.Error
			if tr.ErrorDesc != "" {
				msg += " (" + truncate(tr.ErrorDesc, 200) + ")"
			}
		}
		return nil, fmt.Errorf("oauth2 credential source %q: token endpoint answered %d%s: check the client id, secret and allowed scopes: %w", o.name, resp.StatusCode, msg, ErrSource)
	}
	if jerr != nil {
		return nil, fmt.Errorf("oauth2 credential source %q: token response is not JSON: %w", o.name, ErrSource)
	}
	if tr.AccessToken == "" {
		return nil, fmt.Errorf("oauth2 credential source %q: token response has no access_token: %w", o.name, ErrSource)
	}
	cred := &Credential{Value: tr.AccessToken, LeaseID: req.LeaseID, SourceRef: tr.AccessToken, Scopes: scopes, ExpiresAt: req.NotAfter}
	// From here on, failing must revoke the token the server issued.
	fail := func(err error) (*Credential, error) {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.opts.Timeout)
		defer cancel()
		if rerr := o.Revoke(rctx, cred); rerr != nil {
			o.log.Error().Err(rerr).Str("source", o.name).Str("lease", req.LeaseID).Msg("could not revoke a token refused after issue")
		}
		return nil, err
	}
	if !strings.EqualFold(tr.TokenType, "bearer") {
		return fail(fmt.Errorf("oauth2 credential source %q: token type %q is not Bearer: %w", o.name, truncate(tr.TokenType, 40), ErrSource))
	}
	if tr.Scope != "" {
		granted := strings.Fields(tr.Scope)
		for _, g := range granted {
			if !slices.Contains(scopes, g) {
				return fail(fmt.Errorf("oauth2 credential source %q: the server granted scope %q beyond the requested %q: refused: %w", o.name, truncate(g, 80), strings.Join(scopes, " "), ErrSource))
			}
		}
		cred.Scopes = granted
	}
	if tr.ExpiresIn != "" {
		secs, err := tr.ExpiresIn.Int64()
		if err != nil || secs <= 0 {
			return fail(fmt.Errorf("oauth2 credential source %q: expires_in %q is not a positive whole number: %w", o.name, truncate(string(tr.ExpiresIn), 20), ErrSource))
		}
		if exp := now.Add(time.Duration(min(secs, 1<<31)) * time.Second); exp.Before(cred.ExpiresAt) {
			cred.ExpiresAt = exp
		}
	}
	o.log.Debug().Str("source", o.name).Str("lease", req.LeaseID).Strs("scopes", cred.Scopes).Time("expires", cred.ExpiresAt).Msg("oauth2 token issued")
	return cred, nil
}

// Revoke revokes the access token with RFC 7009. The server answers 200
// also for a token that is already invalid, so revoking twice succeeds.
func (o *OAuth2) Revoke(ctx context.Context, cred *Credential) error {
	if cred == nil || cred.SourceRef == "" {
		return fmt.Errorf("oauth2 credential source %q: revoke: no token", o.name)
	}
	resp, err := o.post(ctx, o.opts.RevokeURL, url.Values{"token": {cred.SourceRef}, "token_type_hint": {"access_token"}})
	if err != nil {
		return fmt.Errorf("oauth2 credential source %q: revoke lease %s: %w: %w", o.name, cred.LeaseID, err, ErrSource)
	}
	drain(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("oauth2 credential source %q: revoke lease %s: revocation endpoint answered %d: %w", o.name, cred.LeaseID, resp.StatusCode, ErrSource)
	}
	o.log.Debug().Str("source", o.name).Str("lease", cred.LeaseID).Msg("oauth2 token revoked")
	return nil
}

// post sends a form with client_secret_basic authentication. Errors never
// carry the form (it may hold a token).
func (o *OAuth2) post(ctx context.Context, endpoint string, form url.Values) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, o.opts.Timeout)
	r, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		cancel()
		return nil, err
	}
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Accept", "application/json")
	// RFC 6749 2.3.1: form-encode the id and secret before Basic.
	r.SetBasicAuth(url.QueryEscape(o.opts.ClientID), url.QueryEscape(o.opts.ClientSecret))
	resp, err := o.hc.Do(r)
	if err != nil {
		cancel()
		var ue *url.Error
		if errors.As(err, &ue) {
			return nil, fmt.Errorf("%s %s: %w", ue.Op, endpoint, ue.Err)
		}
		return nil, err
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
