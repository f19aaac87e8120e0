//go:build !wasip1

package sdk

// hostHTTP has no host outside the sandbox: natively, HTTP always fails.
var hostHTTP = func(in []byte) ([]byte, error) {
	return nil, Errorf(CodeNoNetwork, "sdk.HTTP works only inside the airlock sandbox (a GOOS=wasip1 module run by airlock)")
}
