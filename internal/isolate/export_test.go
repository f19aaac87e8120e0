package isolate

// SimulateMissing makes Command see layer l as refused by the kernel
// (why) until restore is called.
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
