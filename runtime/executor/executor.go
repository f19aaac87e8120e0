// Package executor is the intent pipeline: resolve the tool, validate the
// arguments, decide with policy, audit the decision, run the tool in its
// sandbox, check its output, audit the execution, and reply. Every step
// fails closed: an error yields a denial or a failure with a clear reason,
// never an unchecked execution or an unaudited result.
package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/credentials"
	"github.com/airlock-dev/airlock/runtime/egress"
	"github.com/airlock-dev/airlock/runtime/identity"
	"github.com/airlock-dev/airlock/runtime/manifest"
	"github.com/airlock-dev/airlock/runtime/policy"
	"github.com/airlock-dev/airlock/runtime/redact"
	"github.com/airlock-dev/airlock/runtime/store"
	"github.com/airlock-dev/airlock/sandbox"
)

// Defaults of Config.
const (
	DefaultTaskTTL = time.Hour
	MaxTaskTTL     = 24 * time.Hour
	// MaxErrorMessage bounds the tool error text returned to the planner.
	MaxErrorMessage = 4 << 10
	// maxLogString bounds any string placed in a log line.
	maxLogString = 1 << 10
)

// Config configures an Executor. Every field but Logger, ExecutorID and the
// TTLs is required.
type Config struct {
	// Tools are the loaded, validated manifests.
	Tools []*manifest.Manifest
	// Policy decides intents.
	Policy *policy.Engine
	// Backend prepares and runs the tools.
	Backend sandbox.Backend
	// Store holds tasks, intents and the audit chain. The executor commits
	// through a group committer; it does not close the store.
	Store store.Store
	// DataDir holds the task workspaces (DataDir/workspaces/<task>).
	DataDir string
	// Logger receives one line per audit event. Default: no logging.
	Logger *zerolog.Logger
	// ExecutorID names this executor in audit events and in the
	// idempotency keys it reserves (serve --executor-id). Default: the
	// hostname and a random suffix, new on every start. An id set by the
	// operator must be unique among the executors sharing a store and may
	// stay the same across restarts: a restarted executor then settles at
	// once, as interrupted, the intents its previous run reserved an
	// idempotency key for and left without an outcome.
	ExecutorID string
	// Egress performs the HTTP requests of tools granted network. Required
	// when a tool is granted network.
	Egress *egress.Client
	// Credentials are the operator's credential sources. Required when a
	// tool declares credentials; leases are sealed with a key kept in
	// DataDir/keys.
	Credentials *credentials.Registry
	// SoleExecutor says no other executor writes the store (serve with the
	// embedded SQLite store under its data directory): a call of a task
	// this executor has cached then trusts the cache, which is the truth,
	// instead of reading the task from the store again, and the audit
	// chain is not followed for tasks ended elsewhere. False (the default,
	// and the PostgreSQL store) reads the task on every call, so that a
	// task ended on another executor is refused at once, and follows the
	// chain to cancel its calls here.
	SoleExecutor bool
	// LeaseKey seals lease revocation references. Every executor sharing
	// one store must use the same key (serve --lease-key-file), so that
	// each can revoke the leases the others issued. Nil: a key of this
	// executor alone, kept in DataDir/keys.
	LeaseKey *credentials.Sealer
	// DefaultTaskTTL applies when BeginTask asks for none (default 1h);
	// MaxTaskTTL caps what it asks for (default 24h).
	DefaultTaskTTL, MaxTaskTTL time.Duration
	// ApprovalTTL is how long a pending approval waits for an operator
	// (default 1h), never past its task's expiry.
	ApprovalTTL time.Duration
	// ApprovalWaitMax caps how long Submit (approval_wait) and GetIntent
	// (wait) wait for a decision (default 5m).
	ApprovalWaitMax time.Duration
	// ApprovalPoll is how often the approvals loop runs approved intents
	// nobody waits for and expires pending approvals (default 500ms).
	ApprovalPoll time.Duration
	// ApprovalStaleClaim is how old a claim of an approved intent may grow
	// before the loop decides its executor died mid-run and records the
	// intent failed (code interrupted) instead of running it again
	// (default 15m, and at least twice the longest tool timeout).
	ApprovalStaleClaim time.Duration
	// InterruptMargin is how long past its tool's timeout an intent whose
	// idempotency key is reserved may stay without an outcome before a
	// resubmission with the key settles it as interrupted (default 1m).
	// It covers what runs outside the tool's timeout (credential leases,
	// commits) and clock skew between executors sharing a store.
	InterruptMargin time.Duration
	// IdempotencyTTL is how long an idempotency key stays bound to its
	// intent (serve --idempotency-ttl; default 24h, or
	// IdempotencyTTLFloor when that is longer). Older records, and the
	// executor's outcome markers, are purged in the background in batches;
	// a key submitted again after its TTL starts a new intent. It must be
	// at least IdempotencyTTLFloor: at least MinIdempotencyTTL, and longer
	// than an intent can wait for approval and run (ApprovalTTL plus the
	// stale-claim time plus InterruptMargin), so that no key is purged
	// while its intent may still run.
	IdempotencyTTL time.Duration
	// Approvers are who may list every approval, approve and deny:
	// SPIFFE ID patterns (identity.ParsePattern). Nobody decides their own
	// intent's approval. Empty: LocalOperators (the executor's own uid and
	// root on the unix socket); other callers see only their own approvals.
	Approvers []identity.Pattern
}

// Executor runs the intent pipeline. It is safe for concurrent use.
type Executor struct {
	cfg       Config
	log       zerolog.Logger
	tools     map[string]*loadedTool
	toolOrder []string
	committer *store.Committer
	wsRoot    string

	leaser *credentials.Leaser // nil without credential sources

	mu    sync.Mutex
	tasks map[string]*store.Task // cache of tasks seen; the store is the truth
	// taskCtx is canceled when its task ends, which cancels the task's
	// calls in flight.
	taskCtx map[string]*taskScope
	// openTasks counts each caller's open tasks begun since start.
	openTasks map[string]int

	stopReaper context.CancelFunc
	reaperDone chan struct{}

	approvals approvalState

	// runID names this run of the executor ("<ExecutorID>/run_..."): its
	// idempotency reservations and approval claims.
	runID string
	// inflight holds the intents of this run that reserved an idempotency
	// key and whose outcome is not stored yet (guarded by mu).
	inflight map[string]bool
}

type taskScope struct {
	ctx    context.Context
	cancel context.CancelFunc
	calls  sync.WaitGroup // the task's calls in flight
}

type loadedTool struct {
	m      *manifest.Manifest
	run    sandbox.Tool
	policy policy.Tool
	proto  *airlockv1.Tool
	ws     bool // grants the workspace
	// sideEffects: the tool can change something outside its instance
	// (a writable workspace, the network, credentials).
	sideEffects bool
	// needsTask: a workspace or credentials, which live as long as a task.
	needsTask bool
	// egress is bound to the tool's network rules (nil: no network).
	egress *egress.Binding
}

// New prepares every tool and starts the executor. On error it releases
// whatever it had prepared. The error lists every tool that failed.
func New(ctx context.Context, cfg Config) (*Executor, error) {
	if cfg.Policy == nil || cfg.Backend == nil || cfg.Store == nil || cfg.DataDir == "" {
		return nil, errors.New("executor config needs Policy, Backend, Store and DataDir")
	}
	if cfg.DefaultTaskTTL <= 0 {
		cfg.DefaultTaskTTL = DefaultTaskTTL
	}
	if cfg.MaxTaskTTL <= 0 {
		cfg.MaxTaskTTL = MaxTaskTTL
	}
	if cfg.ExecutorID == "" {
		cfg.ExecutorID = DefaultExecutorID()
	}
	if cfg.InterruptMargin <= 0 {
		cfg.InterruptMargin = DefaultInterruptMargin
	}
	if err := resolveIdempotencyTTL(&cfg); err != nil {
		return nil, err
	}
	if len(cfg.Approvers) == 0 {
		// Deny by default: without --approvers only the local operators
		// decide, never another planner.
		cfg.Approvers = LocalOperators()
	}
	log := zerolog.Nop()
	if cfg.Logger != nil {
		log = *cfg.Logger
	}
	e := &Executor{
		cfg:       cfg,
		log:       log,
		tools:     make(map[string]*loadedTool, len(cfg.Tools)),
		tasks:     make(map[string]*store.Task),
		taskCtx:   make(map[string]*taskScope),
		openTasks: make(map[string]int),
		runID:     clip(cfg.ExecutorID, 200) + "/" + newID("run"),
		inflight:  make(map[string]bool),
	}
	e.wsRoot = filepath.Join(cfg.DataDir, "workspaces")
	if err := os.MkdirAll(e.wsRoot, 0o700); err != nil {
		return nil, fmt.Errorf("create workspace root %s: %w: check the --data directory", e.wsRoot, err)
	}
	// Prepare (verify and compile) the tools in parallel: a cold compile of
	// a Go-built module takes seconds.
	prepared := make([]sandbox.Tool, len(cfg.Tools))
	errs := make([]error, len(cfg.Tools))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, m := range cfg.Tools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			prepared[i], errs[i] = cfg.Backend.Prepare(ctx, m)
		}()
	}
	wg.Wait()
	var problems []string
	for i, m := range cfg.Tools {
		name := m.Metadata.Name
		if errs[i] != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", m.File, errs[i]))
			continue
		}
		t := prepared[i]
		var err error
		if _, dup := e.tools[name]; dup {
			problems = append(problems, fmt.Sprintf("%s: tool %q is defined twice", m.File, name))
			_ = t.Close(ctx)
			continue
		}
		lt := &loadedTool{m: m, run: t}
		var readOnly bool
		lt.ws, readOnly = m.GrantsWorkspace()
		caps := m.Spec.Capabilities
		lt.sideEffects = (lt.ws && !readOnly) || len(caps.Network) > 0 || len(caps.Credentials) > 0 || m.Spec.Runtime.Wasm == nil
		lt.needsTask = lt.ws || len(caps.Credentials) > 0
		if perr := e.checkGrants(lt); perr != "" {
			problems = append(problems, fmt.Sprintf("%s: %s", m.File, perr))
			_ = t.Close(ctx)
			continue
		}
		if lt.policy, err = policy.ToolFromManifest(m); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", m.File, err))
			_ = t.Close(ctx)
			continue
		}
		lt.proto = &airlockv1.Tool{
			Name: name, Version: m.Metadata.Version, Description: m.Metadata.Description,
			Risk: string(m.Spec.Risk), InputSchema: string(m.Spec.Input), OutputSchema: string(m.Spec.Output),
			Owner: m.Metadata.Owner, Labels: m.Metadata.Labels, Digest: m.Digest(),
		}
		e.tools[name] = lt
		e.toolOrder = append(e.toolOrder, name)
	}
	if len(problems) > 0 {
		e.closeTools(ctx)
		return nil, fmt.Errorf("cannot load tools:\n%s", strings.Join(problems, "\n"))
	}
	sort.Strings(e.toolOrder)
	e.committer = store.NewCommitter(cfg.Store, store.CommitterOptions{})
	if cfg.Credentials != nil {
		sealer, err := e.leaseSealer()
		if err != nil {
			e.closeTools(ctx)
			return nil, fmt.Errorf("credential lease key: %w", err)
		}
		e.leaser, err = credentials.NewLeaser(credentials.LeaserOptions{
			Registry: cfg.Credentials, Store: cfg.Store, Commit: e.committer.Commit, Sealer: sealer,
			Executor: cfg.ExecutorID, Logger: log,
		})
		if err != nil {
			e.closeTools(ctx)
			return nil, err
		}
		// Leases a previous run left due (a crash, a restart) are revoked now.
		if n, err := e.leaser.RevokeDue(ctx); err != nil {
			log.Error().Err(err).Msg("could not revoke every lease left due by a previous run; retrying periodically")
		} else if n > 0 {
			log.Info().Int("leases", n).Msg("revoked leases left due by a previous run")
		}
	}
	rctx, cancel := context.WithCancel(context.Background())
	e.stopReaper = cancel
	e.reaperDone = make(chan struct{})
	go e.reapExpiredTasks(rctx)
	e.startApprovals()
	return e, nil
}

// closeTools releases every prepared tool.
func (e *Executor) closeTools(ctx context.Context) {
	for _, t := range e.tools {
		_ = t.run.Close(ctx)
	}
}

// checkGrants checks that the executor can provide what the tool is
// granted, binding its network rules. It returns a problem, or "".
func (e *Executor) checkGrants(lt *loadedTool) string {
	caps := lt.m.Spec.Capabilities
	if len(caps.Network) > 0 {
		if e.cfg.Egress == nil {
			return fmt.Sprintf("tool %s is granted network but the executor has no egress client", lt.m.Metadata.Name)
		}
		b, err := e.cfg.Egress.Bind(caps.Network, nil)
		if err != nil {
			return fmt.Sprintf("tool %s: network rules: %v", lt.m.Metadata.Name, err)
		}
		lt.egress = b
	}
	files := map[string]bool{}
	for _, cr := range caps.Credentials {
		if e.cfg.Credentials == nil {
			return fmt.Sprintf("tool %s declares credential %q but no credential sources are configured: pass --credentials FILE", lt.m.Metadata.Name, cr.Name)
		}
		if _, err := e.cfg.Credentials.Source(cr.Source); err != nil {
			return fmt.Sprintf("tool %s, credential %q: %v", lt.m.Metadata.Name, cr.Name, err)
		}
		switch {
		case cr.Inject.File != nil:
			if msg := checkCredFile(cr.Inject.File.Path, files); msg != "" {
				return fmt.Sprintf("tool %s, credential %q: %s", lt.m.Metadata.Name, cr.Name, msg)
			}
		case cr.Inject.HTTP != nil && lt.egress == nil:
			return fmt.Sprintf("tool %s, credential %q: http injection needs a network grant for host %s", lt.m.Metadata.Name, cr.Name, cr.Inject.HTTP.Host)
		}
	}
	return ""
}

// Close stops the executor: it flushes the audit committer and releases the
// prepared tools. In-flight calls must have finished (the server drains
// them first).
func (e *Executor) Close(ctx context.Context) error {
	e.stopApprovals()
	e.stopReaper()
	<-e.reaperDone
	err := e.committer.Close(ctx)
	for _, t := range e.tools {
		if cerr := t.run.Close(ctx); cerr != nil && err == nil {
			err = cerr
		}
	}
	return err
}

// ListTools returns every loaded tool, sorted by name.
func (e *Executor) ListTools() []*airlockv1.Tool {
	out := make([]*airlockv1.Tool, 0, len(e.toolOrder))
	for _, n := range e.toolOrder {
		out = append(out, e.tools[n].proto)
	}
	return out
}

// outcomeError builds the error part of an outcome.
func outcomeError(code, msg, field string) *airlockv1.Error {
	return &airlockv1.Error{Code: code, Message: msg, Field: field}
}

// Submit runs one intent through the pipeline and returns its outcome. It
// returns a Go error only when the outcome could not be recorded; the
// outcome is then a failure that was not released to the caller.
func (e *Executor) Submit(ctx context.Context, caller identity.Caller, req *airlockv1.SubmitRequest) *airlockv1.Outcome {
	start := time.Now()
	c := &call{
		e: e, caller: caller, req: req, start: start,
		out: &airlockv1.Outcome{IntentId: newID("int"), TaskId: req.GetTaskId(), Tool: req.GetTool()},
	}
	if oerr := checkIdempotencyKey(req.GetIdempotencyKey()); oerr != nil {
		c.reject(ctx, airlockv1.Status_STATUS_INVALID, oerr)
		return c.out
	}
	if key := req.GetIdempotencyKey(); key != "" {
		rec, err := e.cfg.Store.Idempotency(ctx, caller.SpiffeID, key)
		switch {
		case err == nil:
			return e.replay(ctx, caller, req, rec)
		case !errors.Is(err, store.ErrNotFound):
			c.fail(airlockv1.Status_STATUS_FAILED, outcomeError("store_unavailable",
				"the idempotency key could not be looked up, so nothing ran: "+err.Error(), ""))
			return c.out
		}
	}
	c.run(ctx)
	if c.idemConflict {
		// Another submission with the same key won the reservation.
		rec, err := e.cfg.Store.Idempotency(ctx, caller.SpiffeID, req.GetIdempotencyKey())
		if err != nil {
			c.fail(airlockv1.Status_STATUS_FAILED, outcomeError("store_unavailable",
				"the idempotency key was taken concurrently and its record could not be read: "+err.Error(), ""))
			return c.out
		}
		return e.replay(ctx, caller, req, rec)
	}
	if c.out.Status == airlockv1.Status_STATUS_PENDING_APPROVAL && c.approvalNew != nil {
		if w := e.waitBound(req.GetApprovalWait()); w > 0 {
			return e.waitDecision(ctx, caller, c.out, w)
		}
	}
	return c.out
}

// call is one intent in flight.
type call struct {
	e      *Executor
	caller identity.Caller
	req    *airlockv1.SubmitRequest
	start  time.Time
	out    *airlockv1.Outcome

	tool       *loadedTool
	task       *store.Task
	pending    *audit.Event // a decision event committed with the execution
	red        *redact.Redactor
	credDir    string // host directory of file-injected credentials ("" none)
	argsDigest string
	decision   *policy.Decision

	// idem is the idempotency reservation, committed with the first batch
	// that commits before the tool can run; nil once committed or when
	// there is no key. idemConflict: the key was taken concurrently.
	idem         *store.IdempotencyRecord
	idemConflict bool
	// reserved: the idempotency key was reserved ahead of the outcome, so
	// the outcome claims the intent's outcome marker (outcomeMarker): of it
	// and a resubmission settling the intent as interrupted, one wins.
	reserved bool
	// approvalNew is the pending approval this intent creates.
	approvalNew *store.Approval
	// claimed is the approval this call runs under, claimed by this
	// executor; its outcome moves it claimed -> done.
	claimed *store.Approval
}

func (c *call) run(ctx context.Context) {
	e := c.e
	// 2. resolve: exact name, no folding, no trimming.
	t, ok := e.tools[c.req.GetTool()]
	if !ok {
		c.reject(ctx, airlockv1.Status_STATUS_INVALID, outcomeError("unknown_tool",
			fmt.Sprintf("unknown tool %q: tool names are exact (case and spaces matter); list them with `airlock tools`", clip(c.req.GetTool(), 200)), ""))
		return
	}
	c.tool = t

	// The task, when named: it must exist, belong to the caller and be open.
	if id := c.req.GetTaskId(); id != "" {
		task, oerr, status := e.taskFor(ctx, c.caller, id)
		if oerr != nil {
			c.reject(ctx, status, oerr)
			return
		}
		c.task = task
	}
	if t.needsTask && c.task == nil {
		c.reject(ctx, airlockv1.Status_STATUS_INVALID, outcomeError("task_required",
			fmt.Sprintf("tool %s works within a task (its workspace or credentials live as long as the task): begin a task (`airlock task begin`) and pass its id", t.m.Metadata.Name), "task_id"))
		return
	}

	// 3. validate: bounded before parsing, then the input schema.
	args, err := t.m.ValidateArgs([]byte(c.req.GetArguments()))
	if err != nil {
		var ae *manifest.ArgsError
		if errors.As(err, &ae) {
			c.reject(ctx, airlockv1.Status_STATUS_INVALID, outcomeError(ae.Code, ae.Message, ae.Field))
		} else {
			c.reject(ctx, airlockv1.Status_STATUS_INVALID, outcomeError("invalid_arguments", err.Error(), ""))
		}
		return
	}
	// One canonical encoding serves the audit digest and the tool's stdin.
	canonical := manifest.Canonical(args)
	sum := sha256.Sum256(canonical)
	c.argsDigest = hex.EncodeToString(sum[:])
	if key := c.req.GetIdempotencyKey(); key != "" {
		c.idem = &store.IdempotencyRecord{
			Caller: c.caller.SpiffeID, Key: key, IntentID: c.out.IntentId, TaskID: c.req.GetTaskId(),
			Tool: t.m.Metadata.Name, ArgsSHA256: c.argsDigest, CreatedAt: c.start.UTC(), Executor: e.runID,
		}
	}

	// 4. decide.
	d := c.decide(ctx, args, nil)
	if d.Effect == policy.RequireApproval {
		// 5. approve: a pending approval bound to these exact arguments.
		c.requireApproval(ctx, canonical)
		return
	}
	if d.Effect != policy.Allow {
		c.reject(ctx, airlockv1.Status_STATUS_DENIED, outcomeError("denied", d.Message, ""))
		return
	}
	c.execute(ctx, canonical)
}

// decide evaluates policy for the call (step 4) and records the decision
// in the outcome. approval is nil on the first decision; the re-check of
// an approved intent passes its approval.
func (c *call) decide(ctx context.Context, args any, approval *policy.Approval) policy.Decision {
	e, t := c.e, c.tool
	in := &policy.Input{
		Caller:  policy.Caller{SpiffeID: c.caller.SpiffeID, TrustDomain: c.caller.TrustDomain, Path: c.caller.Path},
		Tool:    t.policy,
		Args:    args,
		Request: policy.Request{ID: c.out.IntentId, Time: c.start.UTC(), Justification: c.req.GetJustification()},
	}
	if c.task != nil {
		c.e.mu.Lock() // CallCount changes under the lock
		in.Task = policy.Task{
			ID: c.task.ID, Purpose: c.task.Purpose, Sensitivity: c.task.Sensitivity, Labels: c.task.Labels,
			StartedAt: c.task.StartedAt, ExpiresAt: c.task.ExpiresAt, CallCount: c.task.CallCount,
		}
		c.e.mu.Unlock()
	}
	in.Approval = approval
	d := e.cfg.Policy.Decide(ctx, in)
	c.decision = &d
	c.out.Decision = &airlockv1.Decision{Effect: effectProto(d.Effect), Rules: d.Rules, Message: d.Message}
	return d
}

// execute runs an allowed intent: it records the decision (with the
// idempotency reservation) before anything with side effects can happen,
// leases credentials, runs the tool and records its outcome (steps 4b-9).
func (c *call) execute(ctx context.Context, canonical []byte) {
	e, t := c.e, c.tool

	// 4b. A tool that can change something outside its instance runs only
	// once its decision is durable. A tool that cannot (no writable
	// workspace, no network, no credentials) has nothing to record ahead:
	// its decision commits with its execution, before the reply, in one
	// transaction.
	// An idempotency key is reserved by the same commit, before the tool
	// can run: a concurrent submission with the key runs nothing.
	ev := c.event(audit.TypeDecision)
	if t.sideEffects || c.idem != nil {
		b := &store.Batch{Events: []*audit.Event{ev}}
		if c.idem != nil {
			b.Idempotency = []*store.IdempotencyRecord{c.idem}
			// In flight from before the reservation is durable until
			// after the outcome is (or cannot be): a resubmission that
			// finds the key reserved, no outcome and the intent not in
			// flight here knows it was abandoned.
			e.setInflight(c.out.IntentId, true)
			defer e.setInflight(c.out.IntentId, false)
		}
		if err := e.commit(ctx, b); err != nil {
			if c.idem != nil && errors.Is(err, store.ErrConflict) {
				c.idemConflict = true
				return
			}
			c.fail(airlockv1.Status_STATUS_FAILED, outcomeError("audit_unavailable",
				"the decision could not be recorded, so the tool did not run: "+err.Error(), ""))
			return
		}
		c.reserved = c.idem != nil
		c.idem = nil
		e.logEvent(ev)
	} else {
		c.pending = ev
	}

	// 7. execute, canceled when the task ends.
	if c.task != nil {
		tctx, stop, ok := e.underTask(ctx, c.task)
		if !ok {
			c.finish(ctx, airlockv1.Status_STATUS_INVALID, outcomeError("task_ended",
				fmt.Sprintf("task %s ended before the call could run: begin a new task", c.task.ID), "task_id"), "")
			return
		}
		defer stop()
		ctx = tctx
	}
	// The tool gets the canonical form of what was validated, so that it
	// cannot read something else (a duplicate key, say) than policy saw.
	sc := &sandbox.Call{Input: canonical, Env: t.m.Spec.Capabilities.Env}
	if t.egress != nil {
		sc.Egress = t.egress
	}
	// 6. credentials: leased for this call, recorded before they exist.
	if len(t.m.Spec.Capabilities.Credentials) > 0 {
		defer c.removeFiles()
		if oerr := c.inject(ctx, sc); oerr != nil {
			c.finish(ctx, airlockv1.Status_STATUS_FAILED, oerr, "")
			return
		}
	}
	if c.task != nil {
		sc.TaskID = c.task.ID
		if t.ws {
			dir, werr := e.workspace(c.task.ID)
			if werr != nil {
				c.finish(ctx, airlockv1.Status_STATUS_FAILED, outcomeError("internal", werr.Error(), ""), "")
				return
			}
			sc.Workspace = dir
		}
	}
	e.log.Debug().Str("intent", c.out.IntentId).Str("tool", t.m.Metadata.Name).Msg("running")
	res, rerr := t.run.Run(ctx, sc)
	if rerr != nil {
		status, oerr := sandboxFailure(rerr)
		if oerr.Code == string(sandbox.KindCanceled) && c.taskEnded() {
			oerr.Message = fmt.Sprintf("task %s ended while the call was running", c.task.ID)
		}
		c.finish(ctx, status, oerr, "")
		return
	}
	// 8. sanitize: no injected secret leaves, in any recognizable form.
	if c.red != nil {
		res.Output = c.red.Redact(res.Output)
	}

	// 8. sanitize: JSON, bounded, the output schema.
	if _, err := t.m.ValidateOutput(res.Output); err != nil {
		code, field := "invalid_output", ""
		var ae *manifest.ArgsError
		if errors.As(err, &ae) {
			code, field = ae.Code, ae.Field
		}
		c.finish(ctx, airlockv1.Status_STATUS_FAILED, outcomeError(code,
			fmt.Sprintf("tool %s returned output that airlock refused: %s", t.m.Metadata.Name, errMessage(err)), field), "")
		return
	}
	c.finish(ctx, airlockv1.Status_STATUS_OK, nil, string(res.Output))
}

func errMessage(err error) string {
	var ae *manifest.ArgsError
	if errors.As(err, &ae) {
		return ae.Message
	}
	return err.Error()
}

// sandboxFailure maps a run error to an outcome status and error.
func sandboxFailure(err error) (airlockv1.Status, *airlockv1.Error) {
	var se *sandbox.Error
	if !errors.As(err, &se) {
		return airlockv1.Status_STATUS_FAILED, outcomeError("internal", err.Error(), "")
	}
	msg := se.Message
	if se.Kind == sandbox.KindExit {
		stderr := strings.TrimSpace(string(se.Stderr))
		if stderr != "" {
			msg = stderr
		} else if msg == "" {
			msg = fmt.Sprintf("the tool exited with status %d", se.ExitCode)
		}
		msg = clip(msg, MaxErrorMessage)
	}
	status := airlockv1.Status_STATUS_FAILED
	if se.Kind == sandbox.KindTimeout {
		status = airlockv1.Status_STATUS_TIMEOUT
	}
	return status, outcomeError(string(se.Kind), msg, "")
}

// reject ends an intent that did not run: invalid or denied. Its decision
// event and the intent record commit together.
func (c *call) reject(ctx context.Context, status airlockv1.Status, oerr *airlockv1.Error) {
	c.finishWith(ctx, audit.TypeDecision, status, oerr, "")
}

// finish ends an intent that ran (or tried to): its execution event.
func (c *call) finish(ctx context.Context, status airlockv1.Status, oerr *airlockv1.Error, output string) {
	c.finishWith(ctx, audit.TypeExecution, status, oerr, output)
}

func (c *call) finishWith(ctx context.Context, typ string, status airlockv1.Status, oerr *airlockv1.Error, output string) {
	if c.red != nil && oerr != nil {
		oerr.Message = c.red.RedactString(oerr.Message)
	}
	c.out.Status = status
	c.out.Error = oerr
	c.out.Output = output
	ev := c.event(typ)
	c.out.AuditEventId = ev.ID
	c.out.Duration = durationpb.New(time.Since(c.start))
	ev.DurationUS = time.Since(c.start).Microseconds()
	rec, err := proto.Marshal(c.out)
	if err != nil {
		c.fail(airlockv1.Status_STATUS_FAILED, outcomeError("internal", "encode outcome: "+err.Error(), ""))
		return
	}
	events := []*audit.Event{ev}
	if c.pending != nil {
		events = []*audit.Event{c.pending, ev}
	}
	b := &store.Batch{
		Events: events,
		Intents: []*store.Intent{{
			ID: c.out.IntentId, TaskID: c.req.GetTaskId(), Caller: c.caller.SpiffeID, Tool: c.req.GetTool(),
			Status: status.Name(), Created: c.start.UTC(), Outcome: rec,
		}},
	}
	counted := c.task != nil && status != airlockv1.Status_STATUS_PENDING_APPROVAL
	if counted {
		b.CallCounts = map[string]int64{c.task.ID: 1}
	}
	if c.idem != nil {
		b.Idempotency = []*store.IdempotencyRecord{c.idem}
	}
	if c.approvalNew != nil {
		b.Approvals = []*store.Approval{c.approvalNew}
	}
	if c.reserved {
		b.Idempotency = append(b.Idempotency, outcomeMarker(c.caller.SpiffeID, c.out.IntentId, c.argsDigest))
	}
	if c.claimed != nil {
		b.ApprovalChanges = []*store.ApprovalChange{{
			ID: c.claimed.ID, From: []store.ApprovalState{store.ApprovalClaimed}, To: store.ApprovalDone,
			At: time.Now().UTC(), IntentStatus: status.Name(),
		}}
	}
	// The record must outlive a caller that hung up.
	if err := c.e.commit(context.WithoutCancel(ctx), b); err != nil {
		if c.idem != nil && errors.Is(err, store.ErrConflict) {
			c.idemConflict = true
			return
		}
		if c.reserved && errors.Is(err, store.ErrConflict) {
			c.settledElsewhere(ctx, events)
			return
		}
		c.fail(airlockv1.Status_STATUS_FAILED, outcomeError("audit_unavailable",
			"the outcome could not be recorded, so it is withheld: "+err.Error(), ""))
		return
	}
	c.idem = nil
	if counted {
		c.e.mu.Lock()
		c.task.CallCount++
		c.e.mu.Unlock()
	}
	if c.pending != nil {
		c.e.logEvent(c.pending)
	}
	c.e.logEvent(ev)
}

// fail replaces the outcome with an unrecorded failure (the store is down).
func (c *call) fail(status airlockv1.Status, oerr *airlockv1.Error) {
	c.e.log.Error().Str("intent", c.out.IntentId).Str("code", oerr.Code).Str("error", clip(oerr.Message, maxLogString)).Msg("intent failed closed")
	c.out.Status = status
	c.out.Error = oerr
	c.out.Output = ""
	c.out.AuditEventId = ""
	c.out.Duration = durationpb.New(time.Since(c.start))
}

// event builds the audit event of this intent.
func (c *call) event(typ string) *audit.Event {
	ev := &audit.Event{
		ID: newID("evt"), Time: time.Now().UTC(), Type: typ, Executor: c.e.cfg.ExecutorID,
		Caller: c.caller.SpiffeID, TaskID: c.req.GetTaskId(), IntentID: c.out.IntentId,
		ArgsSHA256: c.argsDigest,
	}
	if c.out.Status != airlockv1.Status_STATUS_UNSPECIFIED {
		ev.Status = c.out.Status.Name()
	}
	if c.tool != nil {
		ev.Tool = &audit.ToolRef{Name: c.tool.m.Metadata.Name, Version: c.tool.m.Metadata.Version, Digest: c.tool.m.Digest()}
	} else {
		ev.Tool = &audit.ToolRef{Name: clip(c.req.GetTool(), 200)}
	}
	if c.decision != nil {
		ev.Decision = &audit.Decision{Effect: string(c.decision.Effect), Rules: c.decision.Rules, Message: clip(c.decision.Message, maxLogString)}
	}
	if c.out.Error != nil {
		ev.Error = &audit.ErrorInfo{Code: c.out.Error.Code, Message: clip(c.out.Error.Message, MaxErrorMessage), Field: c.out.Error.Field}
	}
	if j := c.req.GetJustification(); j != "" {
		ev.Details = map[string]any{"justification": clip(j, maxLogString)}
	}
	if id := c.out.GetApprovalId(); id != "" {
		if ev.Details == nil {
			ev.Details = map[string]any{}
		}
		ev.Details["approval_id"] = id
	}
	if typ == audit.TypeExecution && c.out.Output != "" {
		sum := sha256.Sum256([]byte(c.out.Output))
		if ev.Details == nil {
			ev.Details = map[string]any{}
		}
		ev.Details["output_bytes"] = len(c.out.Output)
		ev.Details["output_sha256"] = hex.EncodeToString(sum[:])
	}
	return ev
}

func (e *Executor) commit(ctx context.Context, b *store.Batch) error {
	if err := e.committer.Commit(ctx, b); err != nil {
		return fmt.Errorf("audit store: %w", err)
	}
	return nil
}

// logEvent mirrors a committed audit event to the log.
func (e *Executor) logEvent(ev *audit.Event) {
	l := e.log.Info().Int64("seq", ev.Seq).Str("event", ev.ID).Str("type", ev.Type).Str("caller", ev.Caller)
	for _, f := range [...][2]string{{"intent", ev.IntentID}, {"task", ev.TaskID}, {"status", ev.Status}} {
		if f[1] != "" {
			l = l.Str(f[0], f[1])
		}
	}
	if ev.Tool != nil {
		l = l.Str("tool", ev.Tool.Name)
	}
	if ev.Decision != nil {
		l = l.Str("effect", ev.Decision.Effect).Strs("rules", ev.Decision.Rules)
	}
	if ev.Error != nil {
		l = l.Str("code", ev.Error.Code).Str("error", clip(ev.Error.Message, maxLogString))
	}
	if ev.DurationUS > 0 {
		l = l.Int64("duration_us", ev.DurationUS)
	}
	l.Str("hash", ev.Hash).Msg("audit")
}

func effectProto(e policy.Effect) airlockv1.Effect {
	switch e {
	case policy.Allow:
		return airlockv1.Effect_EFFECT_ALLOW
	case policy.Deny:
		return airlockv1.Effect_EFFECT_DENY
	case policy.RequireApproval:
		return airlockv1.Effect_EFFECT_REQUIRE_APPROVAL
	}
	return airlockv1.Effect_EFFECT_UNSPECIFIED
}

// clip bounds a string for logs and messages, keeping it valid UTF-8.
func clip(s string, n int) string {
	if len(s) <= n {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
