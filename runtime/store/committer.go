package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// ErrCommitterClosed is returned by Committer.Commit after Close.
var ErrCommitterClosed = errors.New("audit committer is closed")

// CommitterOptions configures a Committer. The zero value is valid.
type CommitterOptions struct {
	// MaxBatch is the most batches one transaction carries. Default 256.
	MaxBatch int
	// QueueSize is how many batches may wait for the next transaction before
	// Commit blocks (back-pressure). Default 4*MaxBatch.
	QueueSize int
	// TxTimeout bounds one transaction (Store.Commit). Default 30s.
	TxTimeout time.Duration
	// Logger receives commit failures. The zero value logs nothing, like
	// zerolog.Nop().
	Logger zerolog.Logger
}

// Committer is a group committer: it funnels concurrent Commit calls into
// as few store transactions as possible. While one transaction is in
// flight, every batch that arrives queues up and goes into the next one
// (at most MaxBatch batches), so the cost of a durable commit (fsync) is
// shared by all of them.
//
// Commit is fail-closed: if a transaction fails, every batch in it fails
// with the same error and none of it is committed. A guarded batch
// (Batch.Guarded: approvals, approval changes, idempotency records) is
// committed in a transaction of its own, after the batches queued before it,
// so that its ErrConflict fails only its own caller.
//
// The Committer does not own the Store: Close stops the Committer but does
// not close the Store.
type Committer struct {
	s        Store
	maxBatch int
	timeout  time.Duration
	log      zerolog.Logger

	queue   chan *request
	quit    chan struct{} // closed by Close
	stopped chan struct{} // closed when the loop has exited

	closeOnce sync.Once
}

// request states.
const (
	reqQueued    int32 = iota // waiting for a transaction
	reqHanded                 // taken into a transaction: its result will come
	reqAbandoned              // its caller gave up before it was taken
)

type request struct {
	ctx   context.Context
	batch *Batch
	state atomic.Int32
	done  chan error // buffered 1; written once for handed requests
}

// NewCommitter starts a group committer over s. Call Close to stop it.
func NewCommitter(s Store, opts CommitterOptions) *Committer {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4 * opts.MaxBatch
	}
	if opts.TxTimeout <= 0 {
		opts.TxTimeout = 30 * time.Second
	}
	c := &Committer{
		s:        s,
		maxBatch: opts.MaxBatch,
		timeout:  opts.TxTimeout,
		log:      opts.Logger,
		queue:    make(chan *request, opts.QueueSize),
		quit:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	go c.loop()
	return c
}

// Commit queues b for the next transaction and blocks until that
// transaction has committed (nil) or failed (its error). If ctx ends before
// b was taken into a transaction, b is not committed and Commit returns the
// context's error; once b was taken, Commit waits for the result, whatever
// ctx does, so a nil error always means durably committed and a non-nil
// error after hand-over means not committed.
func (c *Committer) Commit(ctx context.Context, b *Batch) error {
	if b == nil {
		return errors.New("commit audit batch: batch is nil")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("commit audit batch: %w", err)
	}
	select {
	case <-c.quit:
		return ErrCommitterClosed
	default:
	}
	r := &request{ctx: ctx, batch: b, done: make(chan error, 1)}
	select {
	case c.queue <- r:
	case <-ctx.Done():
		return fmt.Errorf("commit audit batch: %w", ctx.Err())
	case <-c.quit:
		return ErrCommitterClosed
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return fmt.Errorf("commit audit batch: %w", ctx.Err())
		}
		return <-r.done
	case <-c.stopped:
		// The loop exited; a request that slipped into the queue after the
		// final drain was never taken.
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return ErrCommitterClosed
		}
		return <-r.done
	}
}

// Queued returns how many batches are waiting for the next transaction
// (for metrics and tests).
func (c *Committer) Queued() int { return len(c.queue) }

// Close stops accepting batches, commits every batch already queued, and
// returns when that is done or ctx ends (then with ctx's error; the queued
// batches are still committed in the background).
func (c *Committer) Close(ctx context.Context) error {
	c.closeOnce.Do(func() { close(c.quit) })
	select {
	case <-c.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("close audit committer: queued batches still committing: %w", ctx.Err())
	}
}

func (c *Committer) loop() {
	defer close(c.stopped)
	group := make([]*request, 0, c.maxBatch)
	var held *request // a guarded batch that waits for a transaction of its own
	for {
		first := held
		held = nil
		if first == nil {
			select {
			case first = <-c.queue:
			case <-c.quit:
				// Flush what is queued, then stop.
				for {
					group, held = c.drain(group[:0], held)
					if len(group) == 0 && held == nil {
						return
					}
					if len(group) > 0 {
						c.run(group)
					}
				}
			}
		}
		group, held = c.drain(group[:0], first)
		if len(group) > 0 {
			c.run(group)
		}
	}
}

// drain takes first (if any) and then whatever is queued, up to maxBatch
// requests, skipping those whose callers already gave up. A guarded batch
// (Batch.Guarded) gets a transaction of its own: it ends the group when it
// comes first, and otherwise it is returned as held, still queued, to start
// the next group.
func (c *Committer) drain(group []*request, first *request) ([]*request, *request) {
	// take reports whether the group is closed after r.
	take := func(r *request) (closed bool, held *request) {
		if err := r.ctx.Err(); err != nil {
			if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
				r.done <- fmt.Errorf("commit audit batch: %w", err)
			}
			return false, nil
		}
		guarded := r.batch.Guarded()
		if guarded && len(group) > 0 {
			return true, r
		}
		if r.state.CompareAndSwap(reqQueued, reqHanded) {
			group = append(group, r)
			return guarded, nil
		}
		return false, nil
	}
	if first != nil {
		if closed, held := take(first); closed {
			return group, held
		}
	}
	for len(group) < c.maxBatch {
		select {
		case r := <-c.queue:
			if closed, held := take(r); closed {
				return group, held
			}
		default:
			return group, nil
		}
	}
	return group, nil
}

func (c *Committer) run(group []*request) {
	batches := make([]*Batch, len(group))
	for i, r := range group {
		batches[i] = r.batch
	}
	err := c.commit(batches)
	if err != nil {
		c.log.Error().Err(err).Int("batches", len(batches)).Msg("audit commit failed: every batch in the transaction is rejected")
		err = fmt.Errorf("commit audit batch: %w", err)
	}
	for _, r := range group {
		r.done <- err
	}
}

// commit runs one transaction, turning a panic in the store into an error
// so that waiters are answered and the committer keeps running.
func (c *Committer) commit(batches []*Batch) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("store panicked: %v", p)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	return c.s.Commit(ctx, batches)
}
