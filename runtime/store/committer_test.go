package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/ids"
	"github.com/airlock-dev/airlock/runtime/audit"
	"github.com/airlock-dev/airlock/runtime/store"
	"github.com/airlock-dev/airlock/runtime/store/sqlite"
)

// gated wraps the real SQLite store so a test can hold a transaction in
// flight: every Commit signals entered and then waits for a release token.
type gated struct {
	store.Store
	entered chan int // the number of batches of each transaction
	release chan struct{}
}

func (g *gated) Commit(ctx context.Context, bs []*store.Batch) error {
	g.entered <- len(bs)
	<-g.release
	return g.Store.Commit(ctx, bs)
}

func setup(t *testing.T, opts store.CommitterOptions) (*sqlite.Store, *gated, *store.Committer) {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "airlock.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	now := time.Now()
	if err := s.Commit(context.Background(), []*store.Batch{{Tasks: []*store.Task{{ID: "tsk_1", Caller: "c", StartedAt: now, ExpiresAt: now.Add(time.Hour)}}}}); err != nil {
		t.Fatal(err)
	}
	g := &gated{Store: s, entered: make(chan int, 100), release: make(chan struct{}, 100)}
	c := store.NewCommitter(g, opts)
	t.Cleanup(func() {
		for range 100 {
			select {
			case g.release <- struct{}{}:
			default:
			}
		}
		_ = c.Close(context.Background())
	})
	return s, g, c
}

func batch(taskID string) *store.Batch {
	id := ids.New("int")
	return &store.Batch{
		Events:     []*audit.Event{{Type: audit.TypeDecision, TaskID: taskID, IntentID: id}, {Type: audit.TypeExecution, TaskID: taskID, IntentID: id}},
		Intents:    []*store.Intent{{ID: id, TaskID: taskID, Status: "ok"}},
		CallCounts: map[string]int64{taskID: 1},
	}
}

// commitAsync starts Commit and returns a channel with its result.
func commitAsync(ctx context.Context, c *store.Committer, b *store.Batch) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- c.Commit(ctx, b) }()
	return ch
}

func waitQueued(t *testing.T, c *store.Committer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.Queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("queued = %d, want %d", c.Queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func committed(t *testing.T, s *sqlite.Store, b *store.Batch) bool {
	t.Helper()
	_, err := s.Intent(context.Background(), b.Intents[0].ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func TestCommitterGroupsWhileInFlight(t *testing.T) {
	ctx := context.Background()
	s, g, c := setup(t, store.CommitterOptions{})
	first := batch("tsk_1")
	r0 := commitAsync(ctx, c, first)
	if n := <-g.entered; n != 1 {
		t.Fatalf("first transaction has %d batches", n)
	}
	var rest []*store.Batch
	var results []<-chan error
	for range 10 {
		b := batch("tsk_1")
		rest = append(rest, b)
		results = append(results, commitAsync(ctx, c, b))
	}
	waitQueued(t, c, 10)
	g.release <- struct{}{}
	if err := <-r0; err != nil {
		t.Fatal(err)
	}
	if n := <-g.entered; n != 10 {
		t.Fatalf("second transaction has %d batches, want all 10 queued", n)
	}
	g.release <- struct{}{}
	for _, r := range results {
		if err := <-r; err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range rest {
		if !committed(t, s, b) || b.Events[1].Seq == 0 {
			t.Fatal("batch not committed")
		}
	}
	if rep := store.Verify(ctx, s); !rep.OK() || rep.Count != 22 {
		t.Fatalf("verify: %s", rep)
	}
}

func TestCommitterRespectsMaxBatch(t *testing.T) {
	ctx := context.Background()
	_, g, c := setup(t, store.CommitterOptions{MaxBatch: 3})
	r0 := commitAsync(ctx, c, batch("tsk_1"))
	<-g.entered
	var results []<-chan error
	for range 7 {
		results = append(results, commitAsync(ctx, c, batch("tsk_1")))
	}
	waitQueued(t, c, 7)
	for range 4 {
		g.release <- struct{}{}
	}
	sizes := []int{<-g.entered, <-g.entered, <-g.entered}
	if sizes[0] != 3 || sizes[1] != 3 || sizes[2] != 1 {
		t.Fatalf("transaction sizes %v, want [3 3 1]", sizes)
	}
	for _, r := range append(results, r0) {
		if err := <-r; err != nil {
			t.Fatal(err)
		}
	}
}

func TestCommitterFailsWholeTransaction(t *testing.T) {
	ctx := context.Background()
	s, g, c := setup(t, store.CommitterOptions{})
	r0 := commitAsync(ctx, c, batch("tsk_1"))
	<-g.entered
	good1, bad, good2 := batch("tsk_1"), batch("tsk_missing"), batch("tsk_1")
	results := []<-chan error{commitAsync(ctx, c, good1)}
	waitQueued(t, c, 1)
	results = append(results, commitAsync(ctx, c, bad))
	waitQueued(t, c, 2)
	results = append(results, commitAsync(ctx, c, good2))
	waitQueued(t, c, 3)
	g.release <- struct{}{}
	g.release <- struct{}{}
	if err := <-r0; err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if err := <-r; err == nil {
			t.Fatalf("batch %d of a failed transaction reported success", i)
		}
	}
	for _, b := range []*store.Batch{good1, bad, good2} {
		if committed(t, s, b) {
			t.Fatal("batch of a failed transaction was committed")
		}
	}
	// The committer keeps working after a failure.
	g.release <- struct{}{}
	after := batch("tsk_1")
	if err := c.Commit(ctx, after); err != nil {
		t.Fatal(err)
	}
	if after.Events[0].Seq != 3 {
		t.Fatalf("seq after failed transaction = %d, want 3", after.Events[0].Seq)
	}
}

func TestCommitterCanceledWhileQueued(t *testing.T) {
	ctx := context.Background()
	s, g, c := setup(t, store.CommitterOptions{})
	r0 := commitAsync(ctx, c, batch("tsk_1"))
	<-g.entered
	cctx, cancel := context.WithCancel(ctx)
	b := batch("tsk_1")
	r := commitAsync(cctx, c, b)
	waitQueued(t, c, 1)
	cancel()
	if err := <-r; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	g.release <- struct{}{}
	if err := <-r0; err != nil {
		t.Fatal(err)
	}
	// Drive one more transaction through so the abandoned one was seen.
	g.release <- struct{}{}
	if err := c.Commit(ctx, batch("tsk_1")); err != nil {
		t.Fatal(err)
	}
	if committed(t, s, b) {
		t.Fatal("batch whose context was canceled before hand-over was committed")
	}
	if err := c.Commit(cctx, batch("tsk_1")); !errors.Is(err, context.Canceled) {
		t.Fatalf("commit with canceled ctx: %v", err)
	}
}

func TestCommitterWaitsOnceHandedOver(t *testing.T) {
	ctx := context.Background()
	s, g, c := setup(t, store.CommitterOptions{})
	cctx, cancel := context.WithCancel(ctx)
	b := batch("tsk_1")
	r := commitAsync(cctx, c, b)
	<-g.entered // b is in the transaction now
	cancel()
	select {
	case err := <-r:
		t.Fatalf("commit returned %v while its transaction was in flight", err)
	case <-time.After(20 * time.Millisecond):
	}
	g.release <- struct{}{}
	if err := <-r; err != nil {
		t.Fatalf("handed-over batch: %v", err)
	}
	if !committed(t, s, b) {
		t.Fatal("handed-over batch not committed")
	}
}

func TestCommitterCloseFlushes(t *testing.T) {
	ctx := context.Background()
	s, g, c := setup(t, store.CommitterOptions{})
	r0 := commitAsync(ctx, c, batch("tsk_1"))
	<-g.entered
	var bs []*store.Batch
	var results []<-chan error
	for range 5 {
		b := batch("tsk_1")
		bs = append(bs, b)
		results = append(results, commitAsync(ctx, c, b))
	}
	waitQueued(t, c, 5)
	closed := make(chan error, 1)
	go func() { closed <- c.Close(ctx) }()
	g.release <- struct{}{}
	g.release <- struct{}{}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	for _, r := range append(results, r0) {
		if err := <-r; err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range bs {
		if !committed(t, s, b) {
			t.Fatal("queued batch not flushed by Close")
		}
	}
	if err := c.Commit(ctx, batch("tsk_1")); !errors.Is(err, store.ErrCommitterClosed) {
		t.Fatalf("commit after close: %v", err)
	}
}

func TestCommitterConcurrentStress(t *testing.T) {
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "airlock.db"), sqlite.Options{Synchronous: "normal"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	if err := s.Commit(ctx, []*store.Batch{{Tasks: []*store.Task{{ID: "tsk_1", StartedAt: now}}}}); err != nil {
		t.Fatal(err)
	}
	c := store.NewCommitter(s, store.CommitterOptions{MaxBatch: 16})
	var wg sync.WaitGroup
	var mu sync.Mutex
	okCount := 0
	for i := range 64 {
		wg.Go(func() {
			for j := range 8 {
				cctx, cancel := context.WithCancel(ctx)
				if (i+j)%5 == 0 {
					cancel() // some callers give up at once
				}
				err := c.Commit(cctx, batch("tsk_1"))
				cancel()
				if err == nil {
					mu.Lock()
					okCount++
					mu.Unlock()
				} else if !errors.Is(err, context.Canceled) {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := c.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rep := store.Verify(ctx, s)
	if !rep.OK() || rep.Count != int64(2*okCount) {
		t.Fatalf("chain: %s (ok commits %d)", rep, okCount)
	}
	task, err := s.Task(ctx, "tsk_1")
	if err != nil || task.CallCount != int64(okCount) {
		t.Fatalf("call count %v, want %d (%v)", task, okCount, err)
	}
}

// panicky panics on its first Commit and then behaves.
type panicky struct {
	store.Store
	once sync.Once
}

func (p *panicky) Commit(ctx context.Context, bs []*store.Batch) error {
	p.once.Do(func() { panic("boom") })
	return p.Store.Commit(ctx, bs)
}

func TestCommitterSurvivesStorePanic(t *testing.T) {
	ctx := context.Background()
	s, _, _ := setup(t, store.CommitterOptions{})
	c := store.NewCommitter(&panicky{Store: s}, store.CommitterOptions{})
	defer c.Close(ctx)
	b := batch("tsk_1")
	if err := c.Commit(ctx, b); err == nil || !strings.Contains(err.Error(), "panicked") {
		t.Fatalf("err = %v", err)
	}
	if committed(t, s, b) {
		t.Fatal("batch committed despite panic")
	}
	if err := c.Commit(ctx, batch("tsk_1")); err != nil {
		t.Fatalf("committer dead after panic: %v", err)
	}
}

// TestCommitterGuardedBatchAlone: a guarded batch goes into a transaction
// of its own, so its conflict fails only its caller; the batches queued
// before and after it commit.
func TestCommitterGuardedBatchAlone(t *testing.T) {
	ctx := context.Background()
	s, g, c := setup(t, store.CommitterOptions{})
	idem := func(key string) *store.Batch {
		b := batch("tsk_1")
		b.Idempotency = []*store.IdempotencyRecord{{Caller: "spiffe://example.org/a", Key: key, IntentID: b.Intents[0].ID, TaskID: "tsk_1"}}
		return b
	}
	taken := idem("k1")
	r0 := commitAsync(ctx, c, taken)
	if n := <-g.entered; n != 1 {
		t.Fatalf("first transaction has %d batches", n)
	}
	good1, dup, good2, other := batch("tsk_1"), idem("k1"), batch("tsk_1"), idem("k2")
	var results []<-chan error
	for i, b := range []*store.Batch{good1, dup, good2, other} {
		results = append(results, commitAsync(ctx, c, b))
		waitQueued(t, c, i+1)
	}
	for range 5 {
		g.release <- struct{}{}
	}
	if err := <-r0; err != nil {
		t.Fatal(err)
	}
	// good1 | dup alone | good2 | other alone.
	sizes := []int{<-g.entered, <-g.entered, <-g.entered, <-g.entered}
	if sizes[0] != 1 || sizes[1] != 1 || sizes[2] != 1 || sizes[3] != 1 {
		t.Fatalf("transaction sizes %v, want [1 1 1 1]", sizes)
	}
	for i, r := range results {
		err := <-r
		if i == 1 {
			if !errors.Is(err, store.ErrConflict) || !strings.Contains(err.Error(), `"k1"`) {
				t.Fatalf("duplicate idempotency key: err = %v, want ErrConflict naming the key", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("batch %d failed with the guarded batch: %v", i, err)
		}
	}
	for i, b := range []*store.Batch{good1, good2, other} {
		if !committed(t, s, b) {
			t.Fatalf("batch %d not committed", i)
		}
	}
	if committed(t, s, dup) || dup.Events[0].Seq != 0 {
		t.Fatal("the conflicting batch was committed")
	}
	if rep := store.Verify(ctx, s); !rep.OK() || rep.Count != 8 {
		t.Fatalf("verify: %s", rep)
	}
}

// TestCommitterGuardedFirstClosesGroup: a guarded batch that starts a
// group is not joined by the batches queued behind it.
func TestCommitterGuardedFirstClosesGroup(t *testing.T) {
	ctx := context.Background()
	_, g, c := setup(t, store.CommitterOptions{})
	r0 := commitAsync(ctx, c, batch("tsk_1"))
	<-g.entered
	guarded := batch("tsk_1")
	guarded.Idempotency = []*store.IdempotencyRecord{{Caller: "c", Key: "k", IntentID: guarded.Intents[0].ID}}
	results := []<-chan error{commitAsync(ctx, c, guarded)}
	waitQueued(t, c, 1)
	for i := range 3 {
		results = append(results, commitAsync(ctx, c, batch("tsk_1")))
		waitQueued(t, c, i+2)
	}
	for range 3 {
		g.release <- struct{}{}
	}
	if err := <-r0; err != nil {
		t.Fatal(err)
	}
	if sizes := []int{<-g.entered, <-g.entered}; sizes[0] != 1 || sizes[1] != 3 {
		t.Fatalf("transaction sizes %v, want [1 3]", sizes)
	}
	for _, r := range results {
		if err := <-r; err != nil {
			t.Fatal(err)
		}
	}
}
