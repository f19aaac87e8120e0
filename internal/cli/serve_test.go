package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serve refuses an --idempotency-ttl below the floor before it opens
// anything, naming the flag and the least value it accepts.
func TestServeRefusesShortIdempotencyTTL(t *testing.T) {
	for _, ttl := range []string{"30m", "59m59s", "-1h"} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var stderr bytes.Buffer
		data := t.TempDir()
		m := &Main{Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: &stderr, Getenv: func(string) string { return "" }}
		code := m.Run(ctx, []string{"serve", "--data", data, "--socket", filepath.Join(data, "s.sock"), "--idempotency-ttl", ttl})
		cancel()
		if code == 0 || !strings.Contains(stderr.String(), "--idempotency-ttl") || !strings.Contains(stderr.String(), "at least 1h0m0s") {
			t.Fatalf("--idempotency-ttl %s: exit %d, stderr:\n%s\nwant a refusal naming the flag and its minimum", ttl, code, stderr.String())
		}
	}
}
