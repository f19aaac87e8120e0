package credentials

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/airlock-dev/airlock/internal/ids"
	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/runtime/store"
)

// Audit event types the Leaser writes.
const (
	EventIssue  = "credential.issue"
	EventRevoke = "credential.revoke"
)

// LeasePrefix is the id prefix of leases (ids.New(LeasePrefix)).
const LeasePrefix = "lse"

// duePage is how many due leases RevokeDue handles per store read.
const duePage = 500

// LeaserOptions configures NewLeaser.
type LeaserOptions struct {
	// Registry holds the sources. Required.
	Registry *Registry
	// Store reads leases. Required.
	Store store.Store
	// Commit commits one batch. Default: Store.Commit of that batch alone.
	// Pass a store.Committer's Commit to share transactions with the
	// executor.
	Commit func(context.Context, *store.Batch) error
	// Sealer seals revocation references. Required.
	Sealer *Sealer
	// Executor is written into audit events.
	Executor string
	// RevokeTimeout bounds revoking one lease at its source. Default 10s.
	RevokeTimeout time.Duration
	// Logger receives lease ids and source names, never values.
	Logger zerolog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Leaser issues credentials as leases and revokes them at their sources.
// It is safe for concurrent use.
type Leaser struct {
	// retry holds the leases whose revocation failed, with when to try
	// again: RevokeDue backs off on them (10s doubling to 1h) and reads past
	// them, so a lease that keeps failing neither starves the others nor
	// writes an audit event every pass.
	mu    sync.Mutex
	retry map[string]retryState

	reg     *Registry
	st      store.Store
	commit  func(context.Context, *store.Batch) error
	sealer  *Sealer
	exec    string
	timeout time.Duration
	log     zerolog.Logger
	now     func() time.Time
}

// NewLeaser returns a Leaser.
func NewLeaser(opts LeaserOptions) (*Leaser, error) {
	switch {
	case opts.Registry == nil:
		return nil, errors.New("credentials leaser: Registry is required")
	case opts.Store == nil:
		return nil, errors.New("credentials leaser: Store is required")
	case opts.Sealer == nil:
		return nil, errors.New("credentials leaser: Sealer is required: use LoadOrCreateSealer(DATA/keys)")
	}
	l := &Leaser{reg: opts.Registry, st: opts.Store, commit: opts.Commit, sealer: opts.Sealer, exec: opts.Executor,
		timeout: opts.RevokeTimeout, log: opts.Logger, now: opts.Now}
	if l.commit == nil {
		l.commit = func(ctx context.Context, b *store.Batch) error { return opts.Store.Commit(ctx, []*store.Batch{b}) }
	}
	if l.timeout <= 0 {
		l.timeout = 10 * time.Second
	}
	if l.now == nil {
		l.now = time.Now
	}
	return l, nil
}

// CallRequest asks for the credentials of one call.
type CallRequest struct {
	TaskID   string
	IntentID string
	Tool     string
	// ToolVersion goes into the audit event.
	ToolVersion string
	// Caller is the caller's SPIFFE ID.
	Caller string
	// NotAfter is the task's expiry; no lease outlives it. Required.
	NotAfter time.Time
	// Credentials are the credentials the tool's manifest declares.
	Credentials []manifest.Credential
}

// Issued is one credential issued for a call.
type Issued struct {
	// Name is the credential's name in the manifest; it labels redactions.
	Name      string
	Source    string
	LeaseID   string
	ExpiresAt time.Time
	Scopes    []string
	// Inject is how the manifest says to inject it.
	Inject manifest.Inject
	// Value is the secret. Inject it as the manifest says and register it
	// with the call's redactor; never log it or put it in an error.
	Value string
}

// String hides the value.
func (i Issued) String() string {
	return fmt.Sprintf("credential %s from %s (lease %s)", i.Name, i.Source, i.LeaseID)
}

// IssueCall issues every credential req declares, all or nothing: the
// leases and one EventIssue audit event (names, sources, lease ids and
// expiries; never values) are committed before any value is returned, so a
// crash after the values are used still leaves leases to revoke. If any
// credential fails, those already issued are revoked and nothing is
// returned.
func (l *Leaser) IssueCall(ctx context.Context, req CallRequest) ([]Issued, error) {
	if len(req.Credentials) == 0 {
		return nil, nil
	}
	if req.TaskID == "" || req.NotAfter.IsZero() {
		return nil, errors.New("issue credentials: the task id and the task's expiry are required")
	}
	now := l.now()
	var (
		out    []Issued
		creds  []*Credential
		srcs   []Source
		leases []*store.Lease
	)
	undo := func(cause error) ([]Issued, error) {
		for i, c := range creds {
			l.revokeAtSource(ctx, srcs[i], c)
		}
		return nil, cause
	}
	for _, mc := range req.Credentials {
		src, err := l.reg.Source(mc.Source)
		if err != nil {
			return undo(fmt.Errorf("credential %q of tool %s: %w", mc.Name, req.Tool, err))
		}
		leaseID := ids.New(LeasePrefix)
		c, err := src.Issue(ctx, IssueRequest{LeaseID: leaseID, TaskID: req.TaskID, Tool: req.Tool, CallerSPIFFEID: req.Caller,
			Scopes: mc.Scopes, NotAfter: req.NotAfter})
		if err != nil {
			return undo(fmt.Errorf("credential %q of tool %s: %w", mc.Name, req.Tool, err))
		}
		c.LeaseID = leaseID
		creds, srcs = append(creds, c), append(srcs, src)
		exp := c.ExpiresAt
		if exp.IsZero() || exp.After(req.NotAfter) {
			exp = req.NotAfter
		}
		sealed, err := l.sealer.Seal(leaseID, []byte(c.SourceRef))
		if err != nil {
			return undo(fmt.Errorf("credential %q of tool %s: %w", mc.Name, req.Tool, err))
		}
		leases = append(leases, &store.Lease{ID: leaseID, TaskID: req.TaskID, Tool: req.Tool, Source: src.Name(),
			Credential: mc.Name, IssuedAt: now, ExpiresAt: exp, Ref: sealed})
		out = append(out, Issued{Name: mc.Name, Source: src.Name(), LeaseID: leaseID, ExpiresAt: exp, Scopes: c.Scopes,
			Inject: mc.Inject, Value: c.Value})
	}
	details := make([]any, len(out))
	for i, is := range out {
		d := map[string]any{"name": is.Name, "source": is.Source, "lease_id": is.LeaseID,
			"expires_at": is.ExpiresAt.UTC().Format(time.RFC3339)}
		if len(is.Scopes) > 0 {
			d["scopes"] = is.Scopes
		}
		details[i] = d
	}
	ev := &audit.Event{Type: EventIssue, Executor: l.exec, Caller: req.Caller, TaskID: req.TaskID, IntentID: req.IntentID,
		Tool: &audit.ToolRef{Name: req.Tool, Version: req.ToolVersion}, Status: "ok", Details: map[string]any{"leases": details}}
	if err := l.commit(ctx, &store.Batch{Events: []*audit.Event{ev}, Leases: leases}); err != nil {
		return undo(fmt.Errorf("record credential leases of tool %s: %w", req.Tool, err))
	}
	for _, is := range out {
		l.log.Info().Str("task", req.TaskID).Str("tool", req.Tool).Str("credential", is.Name).Str("source", is.Source).
			Str("lease", is.LeaseID).Time("expires", is.ExpiresAt).Msg("credential leased")
	}
	return out, nil
}

// revokeAtSource revokes a credential that was never recorded, logging a
// failure (the value never left: nothing else can be done).
func (l *Leaser) revokeAtSource(ctx context.Context, src Source, c *Credential) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.timeout)
	defer cancel()
	if err := src.Revoke(rctx, c); err != nil {
		l.log.Error().Err(err).Str("source", src.Name()).Str("lease", c.LeaseID).Msg("could not revoke an unrecorded credential: it expires at its source")
	}
}

// RevokeTask revokes every open lease of the task at its source and
// records the revocations with one EventRevoke audit event. It returns how
// many were revoked. Leases that fail to revoke stay open (RevokeDue
// retries them once the task has ended) and are named in the error.
func (l *Leaser) RevokeTask(ctx context.Context, taskID, reason string) (int, error) {
	leases, err := l.st.OpenLeases(ctx, taskID)
	if err != nil {
		return 0, fmt.Errorf("revoke leases of task %s: %w", taskID, err)
	}
	n, _, err := l.revoke(ctx, leases, reason)
	return n, err
}

type retryState struct {
	next  time.Time
	delay time.Duration
}

// Backoff of leases whose revocation fails.
const (
	retryFirst = 10 * time.Second
	retryMax   = time.Hour
	// dueMaxPage bounds one read of due leases (the stores' MaxPage).
	dueMaxPage = 10000
)

// RevokeDue revokes every lease due for revocation: of ended or expired
// tasks, expired leases, and leases of tasks the store does not know. Run
// it at start (leases left by a crash or restart) and periodically. A lease
// whose revocation failed is retried with backoff; the others are not held
// up by it.
func (l *Leaser) RevokeDue(ctx context.Context) (int, error) {
	total := 0
	var errs []error
	for {
		l.mu.Lock()
		backingOff := len(l.retry)
		l.mu.Unlock()
		page := min(duePage+backingOff, dueMaxPage)
		leases, err := l.st.LeasesDue(ctx, l.now(), page)
		if err != nil {
			return total, fmt.Errorf("revoke due leases: %w", err)
		}
		now := l.now()
		var ready []*store.Lease
		l.mu.Lock()
		for _, ls := range leases {
			if r, ok := l.retry[ls.ID]; !ok || !now.Before(r.next) {
				ready = append(ready, ls)
			}
		}
		l.mu.Unlock()
		n, failed, err := l.revoke(ctx, ready, "due")
		total += n
		if err != nil {
			errs = append(errs, err)
		}
		l.mu.Lock()
		if l.retry == nil {
			l.retry = map[string]retryState{}
		}
		for _, ls := range ready {
			delete(l.retry, ls.ID)
		}
		for _, id := range failed {
			r := l.retry[id]
			r.delay = min(max(2*r.delay, retryFirst), retryMax)
			r.next = now.Add(r.delay)
			l.retry[id] = r
		}
		l.mu.Unlock()
		// Done when the store has no more, or when this page only held
		// leases that are backing off or failed again (reading it again
		// would return the same ones).
		if len(leases) < page || n == 0 {
			return total, errors.Join(errs...)
		}
	}
}

// revoke revokes leases at their sources and records it; it returns how
// many were revoked and the ids of those that failed.
func (l *Leaser) revoke(ctx context.Context, leases []*store.Lease, reason string) (int, []string, error) {
	if len(leases) == 0 {
		return 0, nil, nil
	}
	revoked := map[string]time.Time{}
	var (
		errs      []error
		done      []any
		failed    []any
		failedIDs []string
		taskIDs   = map[string]bool{}
	)
	for _, ls := range leases {
		err := l.revokeOne(ctx, ls)
		if err != nil {
			errs = append(errs, err)
			failed = append(failed, map[string]any{"lease_id": ls.ID, "name": ls.Credential, "source": ls.Source, "error": truncate(err.Error(), 300)})
			failedIDs = append(failedIDs, ls.ID)
			l.log.Warn().Err(err).Str("task", ls.TaskID).Str("lease", ls.ID).Str("source", ls.Source).Msg("lease not revoked: will retry")
			continue
		}
		revoked[ls.ID] = l.now()
		taskIDs[ls.TaskID] = true
		done = append(done, map[string]any{"lease_id": ls.ID, "name": ls.Credential, "source": ls.Source})
	}
	ev := &audit.Event{Type: EventRevoke, Executor: l.exec, Details: map[string]any{"reason": reason}}
	if len(taskIDs) == 1 || len(leases) > 0 && len(done) == 0 {
		ev.TaskID = leases[0].TaskID
	}
	if len(done) > 0 {
		ev.Details["revoked"] = done
	}
	if len(failed) > 0 {
		ev.Details["failed"] = failed
		ev.Status = "error"
	} else {
		ev.Status = "ok"
	}
	if err := l.commit(ctx, &store.Batch{Events: []*audit.Event{ev}, RevokedLeases: revoked}); err != nil {
		// The sources have revoked them; the leases stay open in the store
		// and the next RevokeDue revokes them again (idempotent).
		all := failedIDs
		for id := range revoked {
			all = append(all, id)
		}
		return 0, all, errors.Join(append(errs, fmt.Errorf("record lease revocations: %w", err))...)
	}
	for id := range revoked {
		l.log.Info().Str("lease", id).Str("reason", reason).Msg("lease revoked")
	}
	return len(revoked), failedIDs, errors.Join(errs...)
}

func (l *Leaser) revokeOne(ctx context.Context, ls *store.Lease) error {
	src, err := l.reg.Source(ls.Source)
	if err != nil {
		return fmt.Errorf("lease %s: %w", ls.ID, err)
	}
	ref, err := l.sealer.Open(ls.ID, ls.Ref)
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	if err := src.Revoke(rctx, &Credential{LeaseID: ls.ID, ExpiresAt: ls.ExpiresAt, SourceRef: string(ref)}); err != nil {
		return fmt.Errorf("lease %s: %w", ls.ID, err)
	}
	return nil
}
