package executor

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
)

// One caller holds at most MaxWatchStreamsPerCaller watches; callers that
// are not approvers hold at most MaxWatchStreams-watchReserved in all, so
// an approver still gets a watch when planners took every slot they may;
// a released slot is reusable.
func TestWatchSlotsBounded(t *testing.T) {
	st := &approvalState{watches: map[string]int{}}
	exhausted := func(err error) bool {
		var ae *ApprovalError
		return errors.As(err, &ae) && ae.Code == codes.ResourceExhausted
	}
	var releases []func()
	for i := range MaxWatchStreamsPerCaller {
		r, err := st.openWatch("spiffe://airlock.local/agent/a", false)
		if err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
		releases = append(releases, r)
	}
	if _, err := st.openWatch("spiffe://airlock.local/agent/a", false); !exhausted(err) {
		t.Fatalf("a caller opened more than %d watches: %v", MaxWatchStreamsPerCaller, err)
	}
	releases[0]()
	r, err := st.openWatch("spiffe://airlock.local/agent/a", false)
	if err != nil {
		t.Fatalf("a released slot: %v", err)
	}
	releases[0] = r
	// Many planners fill the slots planners may take.
	for i := 0; st.watchPlanners < MaxWatchStreams-watchReserved; i++ {
		if _, err := st.openWatch(fmt.Sprintf("spiffe://airlock.local/agent/p%d", i/MaxWatchStreamsPerCaller), false); err != nil {
			t.Fatalf("planner watch %d: %v", i, err)
		}
	}
	if _, err := st.openWatch("spiffe://airlock.local/agent/late", false); !exhausted(err) {
		t.Fatalf("planners took a reserved slot: %v", err)
	}
	for i := range watchReserved {
		if _, err := st.openWatch(fmt.Sprintf("spiffe://airlock.local/human/h%d", i/MaxWatchStreamsPerCaller), true); err != nil {
			t.Fatalf("approver watch %d with planners at their bound: %v", i, err)
		}
	}
	if _, err := st.openWatch("spiffe://airlock.local/human/late", true); !exhausted(err) {
		t.Fatalf("more than %d watches in all: %v", MaxWatchStreams, err)
	}
	if st.watchTotal != MaxWatchStreams {
		t.Fatalf("%d watches counted, want %d", st.watchTotal, MaxWatchStreams)
	}
}
