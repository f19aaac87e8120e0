//go:build wasip1

package sdk

import "unsafe"

//go:wasmimport airlock_v1 http_request
func airlockHTTPRequest(reqPtr unsafe.Pointer, reqLen uint32, outPtr unsafe.Pointer, outCap uint32, outLenPtr unsafe.Pointer) uint32

//go:wasmimport airlock_v1 http_result
func airlockHTTPResult(outPtr unsafe.Pointer, outCap uint32, outLenPtr unsafe.Pointer) uint32

// Errnos of airlock_v1 (sandbox/wasm/hostapi.go).
const (
	errnoOK       = 0
	errnoTooSmall = 1
)

// firstBuffer is the result buffer of the first try; larger results are
// fetched with http_result.
const firstBuffer = 64 << 10

// hostHTTP passes the JSON request to the host and returns its JSON result.
func hostHTTP(in []byte) ([]byte, error) {
	buf := make([]byte, firstBuffer)
	var n uint32
	var inPtr unsafe.Pointer
	if len(in) > 0 {
		inPtr = unsafe.Pointer(&in[0])
	}
	errno := airlockHTTPRequest(inPtr, uint32(len(in)), unsafe.Pointer(&buf[0]), uint32(len(buf)), unsafe.Pointer(&n))
	if errno == errnoTooSmall {
		if n == 0 || n > MaxHTTPResult {
			return nil, Errorf(CodeInternal, "the host's http result has %d bytes, more than the %d this SDK accepts", n, MaxHTTPResult)
		}
		buf = make([]byte, n)
		errno = airlockHTTPResult(unsafe.Pointer(&buf[0]), uint32(len(buf)), unsafe.Pointer(&n))
	}
	if errno != errnoOK {
		return nil, Errorf(CodeInternal, "airlock_v1 http host call failed with errno %d", errno)
	}
	return buf[:n], nil
}
