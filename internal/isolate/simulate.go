package isolate

import "sync"

var (
	// testMu guards testMissing, the layers SimulateMissing makes Command
	// see as refused.
	testMu      sync.Mutex
	testMissing map[Layer]string
)

// SimulateMissing makes Command see layer l as refused by the kernel, with
// why as the reason, until restore is called. It is for tests (of this
// package and of the packages that start plugins through it), which cannot
// take a layer away from the kernel: it can only make Command refuse more,
// or skip a layer the Spec accepts missing. Probe is unaffected.
func SimulateMissing(l Layer, why string) (restore func()) {
	testMu.Lock()
	defer testMu.Unlock()
	if testMissing == nil {
		testMissing = map[Layer]string{}
	}
	testMissing[l] = why
	return func() {
		testMu.Lock()
		defer testMu.Unlock()
		delete(testMissing, l)
	}
}
