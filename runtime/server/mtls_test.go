package server

import (
	"context"
	"strings"
	"testing"
)

func TestCheckListenAddr(t *testing.T) {
	ctx := context.Background()
	for _, a := range []string{"127.0.0.1:0", "127.0.0.2:8443", "[::1]:8443", "localhost:0"} {
		if err := CheckListenAddr(ctx, a, false); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	for _, a := range []string{"0.0.0.0:8443", ":8443", "[::]:8443", "10.0.0.1:8443", "192.0.2.1:8443", "169.254.169.254:80"} {
		err := CheckListenAddr(ctx, a, false)
		if err == nil || !strings.Contains(err.Error(), "--listen-public") {
			t.Errorf("%s: got %v, want a refusal naming --listen-public", a, err)
		}
		if err := CheckListenAddr(ctx, a, true); err != nil {
			t.Errorf("%s with --listen-public: %v", a, err)
		}
	}
	if err := CheckListenAddr(ctx, "127.0.0.1", false); err == nil || !strings.Contains(err.Error(), "HOST:PORT") {
		t.Errorf("no port: %v", err)
	}
}
