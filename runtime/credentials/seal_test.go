package credentials_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/runtime/credentials"
)

// A shared key file opens what another Sealer made from the same bytes,
// in every accepted spelling; a wrong size or mode is refused with an
// error naming the file.
func TestLoadSealerFile(t *testing.T) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	ref, _ := credentials.NewSealer(key)
	sealed, err := ref.Seal("lse_1", []byte("refresh-token"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	h := hex.EncodeToString(key)
	for name, b := range map[string][]byte{
		"raw":         key,
		"hex":         []byte(h),
		"hex-newline": []byte(h + "\n"),
		"hex-crlf":    []byte(h + "\r\n"),
		"HEX":         []byte(strings.ToUpper(h) + "\n"),
	} {
		p := write(name, b, 0o600)
		s, err := credentials.LoadSealerFile(p)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := s.Open("lse_1", sealed)
		if err != nil || string(got) != "refresh-token" {
			t.Fatalf("%s: opened %q, %v", name, got, err)
		}
	}
	// A different key does not open it: the loaded key is the file's.
	other := make([]byte, 32)
	_, _ = rand.Read(other)
	s, err := credentials.LoadSealerFile(write("other", []byte(hex.EncodeToString(other)), 0o600))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open("lse_1", sealed); err == nil {
		t.Fatal("a sealer from another key opened the reference")
	}

	for _, c := range []struct {
		name string
		b    []byte
		mode os.FileMode
		want string
	}{
		{"empty", nil, 0o600, "holds 0 bytes"},
		{"short", key[:31], 0o600, "holds 31 bytes"},
		{"long-raw", append(bytes.Clone(key), 0), 0o600, "holds 33 bytes"},
		{"hex-16", []byte(h[:32]), 0o600, "holds 32 hex digits"},
		{"hex-16-newline", []byte(h[:32] + "\n"), 0o600, "holds 33 bytes"},
		{"not-hex", []byte(strings.Repeat("z", 64)), 0o600, "not all hex digits"},
		{"two-newlines", []byte(h + "\n\n"), 0o600, "holds 66 bytes"},
		{"huge", bytes.Repeat([]byte("a"), 4096), 0o600, "larger than 66 bytes"},
		{"group-readable", key, 0o640, "chmod 600"},
		{"world-readable", []byte(h), 0o644, "chmod 600"},
	} {
		p := write(c.name, c.b, c.mode)
		_, err := credentials.LoadSealerFile(p)
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error naming %s and saying %q", c.name, err, p, c.want)
		}
	}
	if _, err := credentials.LoadSealerFile(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := credentials.LoadSealerFile(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v", err)
	}
}
