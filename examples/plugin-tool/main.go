// Command filesign is the file.sign example of a native plugin tool: the
// SHA-256 of a file in the task's workspace and its HMAC-SHA256 under a
// signing key that the operator configures and that reaches the tool with
// each call, never through its environment.
//
// It is the example of the tool guide's "Native plugin tools" section
// (docs/tool-guide.md). Build it, pin it and serve it with
//
//	CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' \
//	  -o build/plugins/filesign ./examples/plugin-tool
//	tools/pin.sh examples/plugin-tool/manifests/file.sign.yaml
//
// main_test.go does exactly that and calls it through a real executor.
package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"

	"github.com/airlock-dev/airlock/tools/sdk"
	"github.com/airlock-dev/airlock/tools/sdk/plugin"
)

// MaxFileBytes bounds the file the tool reads.
const MaxFileBytes = 64 << 20

// In is the input, decoded with unknown fields refused.
type In struct {
	// Path is the file, relative to the workspace.
	Path string `json:"path"`
}

// Out is the result.
type Out struct {
	Bytes  int64  `json:"bytes"`
	Digest string `json:"digest"` // SHA-256, hex
	HMAC   string `json:"hmac"`   // HMAC-SHA256 under the key, hex
}

func sign(ctx context.Context, in In) (Out, error) {
	ws := plugin.Workspace(ctx)
	if ws == "" {
		return Out{}, sdk.Errorf("no_workspace", "file.sign needs a task: begin one and pass its id")
	}
	// The credential of THIS call, by its inject.env.name in the manifest.
	key, ok := plugin.Credential(ctx, "SIGNING_KEY")
	if !ok {
		return Out{}, sdk.Errorf("no_key", "no signing key came with the call: the manifest must declare it (inject: {env: {name: SIGNING_KEY}})")
	}
	// os.Root refuses "..", absolute paths and symbolic links that leave
	// the workspace.
	root, err := os.OpenRoot(ws)
	if err != nil {
		return Out{}, sdk.Errorf("internal", "open the workspace: %w", err)
	}
	defer root.Close()
	f, err := root.Open(in.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Out{}, sdk.Errorf("not_found", "%s does not exist in the workspace", in.Path)
	case err != nil:
		return Out{}, sdk.Errorf("invalid_path", "open %s: %w", in.Path, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return Out{}, sdk.Errorf("not_a_file", "%s is not a regular file", in.Path)
	}
	sum, mac := sha256.New(), hmac.New(sha256.New, []byte(key))
	n, err := io.Copy(io.MultiWriter(sum, mac), io.LimitReader(&ctxReader{ctx, f}, MaxFileBytes+1))
	if err != nil {
		return Out{}, sdk.Errorf("unreadable", "read %s: %w", in.Path, err)
	}
	if n > MaxFileBytes {
		return Out{}, sdk.Errorf("too_large", "%s is over %d bytes", in.Path, MaxFileBytes)
	}
	return Out{Bytes: n, Digest: hex.EncodeToString(sum.Sum(nil)), HMAC: hex.EncodeToString(mac.Sum(nil))}, nil
}

// ctxReader stops reading when the call is canceled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func main() { plugin.Main(sign) }
