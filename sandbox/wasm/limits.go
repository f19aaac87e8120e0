package wasm

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// errOutputLimit is what a guest's write gets once its cap is reached.
var errOutputLimit = errors.New("output limit reached")

// cappedBuffer keeps at most limit bytes. The first write past the limit
// records the overflow and calls stop, which cancels the instance's context
// so the guest is ended promptly instead of being allowed to keep writing.
type cappedBuffer struct {
	mu       sync.Mutex
	buf      []byte
	limit    int
	exceeded bool
	stop     func()
}

// Write implements io.Writer.
func (c *cappedBuffer) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.exceeded {
		return 0, errOutputLimit
	}
	room := c.limit - len(c.buf)
	if len(p) <= room {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	c.buf = append(c.buf, p[:room]...)
	c.exceeded = true
	if c.stop != nil {
		c.stop()
	}
	return room, errOutputLimit
}

// result returns the kept bytes and whether the limit was exceeded.
func (c *cappedBuffer) result() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf, c.exceeded
}

// memoryGuard is the linear-memory allocator of one instance. The runtime
// lets memory grow up to wazero's maximum so that every memory.grow reaches
// Reallocate; the guard refuses (memory.grow returns -1) any size past the
// manifest's limit and records that it did. That makes "the guest hit its
// memory limit" an observation rather than a guess from the exit code.
type memoryGuard struct {
	limit   uint64 // bytes
	refused atomic.Bool
	peak    atomic.Uint64
}

var _ experimental.MemoryAllocator = (*memoryGuard)(nil)

// Allocate implements experimental.MemoryAllocator.
func (g *memoryGuard) Allocate(capacity, _ uint64) experimental.LinearMemory {
	if capacity > g.limit {
		capacity = g.limit
	}
	return &guardedMemory{guard: g, buf: make([]byte, 0, capacity)}
}

// guardedMemory is a linear memory that never grows past its guard's limit.
type guardedMemory struct {
	guard   *memoryGuard
	buf     []byte
	started bool
}

// Reallocate implements experimental.LinearMemory.
func (m *guardedMemory) Reallocate(size uint64) []byte {
	if size > m.guard.limit {
		m.guard.refused.Store(true)
		if m.started {
			return nil // memory.grow returns -1 to the guest
		}
		// The initial allocation (the declared minimum) cannot fail without
		// crashing wazero. Prepare refuses modules whose minimum is over the
		// limit, and Run fails the call with KindMemory if this ever happens.
	}
	m.started = true
	if size > m.guard.peak.Load() {
		m.guard.peak.Store(size)
	}
	if size <= uint64(cap(m.buf)) {
		m.buf = m.buf[:size]
		return m.buf
	}
	// Grow like append does, but never reserve past the limit.
	c := max(size, min(uint64(cap(m.buf))*2, m.guard.limit))
	grown := make([]byte, size, c)
	copy(grown, m.buf)
	m.buf = grown
	return m.buf
}

// Free implements experimental.LinearMemory.
func (m *guardedMemory) Free() { m.buf = nil }
