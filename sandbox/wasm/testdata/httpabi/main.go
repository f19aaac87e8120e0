// Command httpabi drives the airlock_v1 HTTP ABI directly, including its
// edge cases, and prints what each call returned: stdin {"url": ...}.
package main

import (
	"encoding/json"
	"os"
	"unsafe"
)

//go:wasmimport airlock_v1 http_request
func httpRequest(reqPtr unsafe.Pointer, reqLen uint32, outPtr unsafe.Pointer, outCap uint32, outLenPtr unsafe.Pointer) uint32

//go:wasmimport airlock_v1 http_result
func httpResult(outPtr unsafe.Pointer, outCap uint32, outLenPtr unsafe.Pointer) uint32

//go:wasmimport airlock_v1 http_request
func httpRequestRaw(reqPtr, reqLen, outPtr, outCap, outLenPtr uint32) uint32

type step struct {
	Name   string `json:"name"`
	Errno  uint32 `json:"errno"`
	Len    uint32 `json:"len"`
	Result string `json:"result,omitempty"`
}

func main() {
	var in struct {
		URL string `json:"url"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		os.Exit(1)
	}
	req, _ := json.Marshal(map[string]any{"url": in.URL})
	var steps []step
	var n uint32

	// No result kept yet.
	buf := make([]byte, 16)
	e := httpResult(unsafe.Pointer(&buf[0]), uint32(len(buf)), unsafe.Pointer(&n))
	steps = append(steps, step{Name: "result-before-request", Errno: e})

	// Pointers outside memory.
	e = httpRequestRaw(0xfffffff0, 64, 0, 0, 0)
	steps = append(steps, step{Name: "request-fault", Errno: e})

	// A buffer too small: the result is kept and fetched in two tries.
	n = 0
	e = httpRequest(unsafe.Pointer(&req[0]), uint32(len(req)), unsafe.Pointer(&buf[0]), uint32(len(buf)), unsafe.Pointer(&n))
	steps = append(steps, step{Name: "request-small", Errno: e, Len: n})
	need := n
	small := make([]byte, need-1)
	e = httpResult(unsafe.Pointer(&small[0]), uint32(len(small)), unsafe.Pointer(&n))
	steps = append(steps, step{Name: "result-still-small", Errno: e, Len: n})
	full := make([]byte, need)
	e = httpResult(unsafe.Pointer(&full[0]), uint32(len(full)), unsafe.Pointer(&n))
	steps = append(steps, step{Name: "result-full", Errno: e, Len: n, Result: string(full[:n])})
	e = httpResult(unsafe.Pointer(&full[0]), uint32(len(full)), unsafe.Pointer(&n))
	steps = append(steps, step{Name: "result-again", Errno: e})

	// Malformed request JSON: a JSON error result, errno 0.
	bad := []byte(`{"url": 1}`)
	big := make([]byte, 4096)
	e = httpRequest(unsafe.Pointer(&bad[0]), uint32(len(bad)), unsafe.Pointer(&big[0]), uint32(len(big)), unsafe.Pointer(&n))
	steps = append(steps, step{Name: "request-malformed", Errno: e, Len: n, Result: string(big[:n])})

	// The injected header set by the guest: refused.
	evil, _ := json.Marshal(map[string]any{"url": in.URL, "headers": map[string][]string{"Authorization": {"Bearer mine"}}})
	e = httpRequest(unsafe.Pointer(&evil[0]), uint32(len(evil)), unsafe.Pointer(&big[0]), uint32(len(big)), unsafe.Pointer(&n))
	steps = append(steps, step{Name: "request-own-authorization", Errno: e, Len: n, Result: string(big[:n])})

	json.NewEncoder(os.Stdout).Encode(steps)
}
