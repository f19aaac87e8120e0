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

func TestCheckCredentialsListen(t *testing.T) {
	if err := checkCredentialsListen("", ""); err != nil {
		t.Errorf("off: %v", err)
	}
	for _, a := range []string{"127.0.0.1:0", "[::1]:9000", "localhost:9000"} {
		if err := checkCredentialsListen(a, "creds.yaml"); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	for a, want := range map[string]string{"0.0.0.0:9000": "loopback", ":9000": "loopback", "192.0.2.1:9000": "loopback", "127.0.0.1": "host:port"} {
		if err := checkCredentialsListen(a, "creds.yaml"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want an error naming %s", a, err, want)
		}
	}
	if err := checkCredentialsListen("127.0.0.1:0", ""); err == nil || !strings.Contains(err.Error(), "--credentials FILE") {
		t.Errorf("without --credentials: %v", err)
	}
}
