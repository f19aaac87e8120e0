// Package credentials issues short-lived, task-scoped credentials from the
// sources an operator configures, records each one as a lease and revokes
// leases at their source when their task ends.
//
// A Source issues one credential for one call of a tool in a task:
//
//   - static: a value from a file or an environment variable of the
//     executor, for development. Revoke does nothing.
//   - jwt: a short-lived ES256 JWT the executor signs itself (audience,
//     subject = the caller's SPIFFE ID, task, tool and scopes). Verifiers
//     get the public keys from Handler and ask the RFC 7662
//     introspection endpoint whether a token is still active: Revoke makes
//     it inactive.
//   - oauth2: an OAuth 2.0 client-credentials grant with the scope narrowed
//     to what the tool's manifest declares and the source allows; Revoke
//     uses RFC 7009 token revocation.
//   - spiffe-jwt: a JWT-SVID for an audience from the SPIFFE Workload API.
//     JWT-SVIDs cannot be revoked: Revoke does nothing and the SVID's short
//     lifetime (set by the SPIRE server) bounds it.
//
// Sources are built from the operator's credentials file by Load. A Leaser
// wraps a Registry and a store.Store: it issues credentials as leases
// (stored, with what the source needs to revoke them sealed under a key
// kept outside the database) and revokes them per task, or on restart.
//
// Credential values are never logged, never stored in the audit log and
// never put in errors.
package credentials

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Source types.
const (
	TypeStatic    = "static"
	TypeJWT       = "jwt"
	TypeOAuth2    = "oauth2"
	TypeSPIFFEJWT = "spiffe-jwt"
)

// ErrSource wraps every failure of a credential source to issue or revoke.
var ErrSource = errors.New("credential source failed")

// IssueRequest is what a source needs to issue one credential.
type IssueRequest struct {
	// LeaseID identifies the lease the credential becomes; sources that
	// mint tokens use it as the token id (JWT jti). Set by the Leaser.
	LeaseID        string
	TaskID         string
	Tool           string
	CallerSPIFFEID string
	// Scopes are the scopes the tool's manifest declares for this
	// credential. Sources narrow them to what they allow.
	Scopes []string
	// Audience overrides the source's configured audience when non-empty.
	Audience string
	// NotAfter is the latest expiry the credential may have: the task's
	// expiry. Required.
	NotAfter time.Time
}

// Credential is one issued credential.
type Credential struct {
	// Value is the secret itself: a token or password. Never log it.
	Value string
	// ExpiresAt is when the credential stops working at its source (or the
	// NotAfter it was issued under, for sources that cannot express one).
	ExpiresAt time.Time
	// LeaseID is the lease the credential belongs to.
	LeaseID string
	// SourceRef is what Revoke needs (a token id, or the token itself for
	// OAuth 2.0). It is sealed before it is stored and never logged.
	SourceRef string
	// Scopes are the scopes actually granted, when the source knows them.
	Scopes []string
}

// String hides the value, so that a Credential printed by mistake leaks
// nothing.
func (c *Credential) String() string {
	if c == nil {
		return "<nil credential>"
	}
	return fmt.Sprintf("credential{lease %s, expires %s}", c.LeaseID, c.ExpiresAt.UTC().Format(time.RFC3339))
}

// Source issues and revokes credentials. Implementations are safe for
// concurrent use.
type Source interface {
	// Issue issues one credential for req. It fails closed: on any error no
	// credential is returned, and a credential the source issued but could
	// not hand back is revoked.
	Issue(ctx context.Context, req IssueRequest) (*Credential, error)
	// Revoke makes cred stop working at the source. Only LeaseID,
	// ExpiresAt and SourceRef need to be set. Revoking twice is not an
	// error.
	Revoke(ctx context.Context, cred *Credential) error
	// Name is the source's name in the operator's configuration.
	Name() string
}

// checkRequest validates the fields every source relies on.
func checkRequest(source string, req IssueRequest, now time.Time) error {
	switch {
	case req.NotAfter.IsZero():
		return fmt.Errorf("credential source %q: issue: NotAfter is not set: pass the task's expiry", source)
	case !req.NotAfter.After(now):
		return fmt.Errorf("credential source %q: issue: NotAfter %s is not in the future: the task has expired", source, req.NotAfter.UTC().Format(time.RFC3339))
	case req.TaskID == "":
		return fmt.Errorf("credential source %q: issue: TaskID is empty", source)
	}
	return nil
}
