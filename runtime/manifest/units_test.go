package manifest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
)

func TestParseByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
		ok   bool
	}{
		{"64MiB", 64 << 20, true}, {"512KiB", 512 << 10, true}, {"1GiB", 1 << 30, true}, {"4GiB", 4 << 30, true},
		{"65536", 65536, true}, {"0", 0, true},
		{"1MB", 0, false}, {"1mib", 0, false}, {"1.5MiB", 0, false}, {"-1KiB", 0, false}, {" 1KiB", 0, false},
		{"MiB", 0, false}, {"", 0, false}, {"1 MiB", 0, false}, {"9223372036854775807GiB", 0, false}, {"1TiB", 0, false},
	} {
		got, err := ParseByteSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	for b, s := range map[ByteSize]string{64 * MiB: "64MiB", 1536 * KiB: "1536KiB", 2 * GiB: "2GiB", 1000: "1000", 0: "0"} {
		if b.String() != s {
			t.Errorf("%d.String() = %q, want %q", int64(b), b.String(), s)
		}
	}
}

func TestByteSizeEncodings(t *testing.T) {
	var lim struct {
		A ByteSize `json:"a" yaml:"a"`
		B ByteSize `json:"b" yaml:"b"`
	}
	if err := yaml.Unmarshal([]byte("a: 64MiB\nb: 2048\n"), &lim); err != nil || lim.A != 64*MiB || lim.B != 2048 {
		t.Errorf("YAML: %+v, %v", lim, err)
	}
	if err := yaml.Unmarshal([]byte("a: 1MB\n"), &lim); err == nil {
		t.Error("YAML accepted 1MB")
	}
	if err := yaml.Unmarshal([]byte("a: -5\n"), &lim); err == nil {
		t.Error("YAML accepted a negative size")
	}
	b, err := json.Marshal(lim)
	if err != nil || string(b) != `{"a":"64MiB","b":"2KiB"}` {
		t.Errorf("JSON = %s, %v", b, err)
	}
	var back struct {
		A ByteSize `json:"a"`
		B ByteSize `json:"b"`
	}
	if err := json.Unmarshal([]byte(`{"a":"64MiB","b":2048}`), &back); err != nil || back.A != 64*MiB || back.B != 2048 {
		t.Errorf("JSON back: %+v, %v", back, err)
	}
	for _, bad := range []string{`{"a":"1MB"}`, `{"a":-1}`, `{"a":true}`, `{"a":1.5}`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("JSON accepted %s", bad)
		}
	}
}

func TestDurationEncodings(t *testing.T) {
	var v struct {
		D Duration `json:"d" yaml:"d"`
	}
	if err := yaml.Unmarshal([]byte("d: 250ms\n"), &v); err != nil || v.D != Duration(250*time.Millisecond) {
		t.Errorf("YAML: %v, %v", v.D, err)
	}
	for _, bad := range []string{"d: 10\n", "d: -1s\n", "d: soon\n"} {
		if err := yaml.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("YAML accepted %q", bad)
		}
	}
	v.D = Duration(90 * time.Second)
	b, err := json.Marshal(v)
	if err != nil || string(b) != `{"d":"1m30s"}` {
		t.Errorf("JSON = %s, %v", b, err)
	}
	v.D = 0
	if err := json.Unmarshal(b, &v); err != nil || v.D != Duration(90*time.Second) {
		t.Errorf("JSON back: %v, %v", v.D, err)
	}
	for _, bad := range []string{`{"d":10}`, `{"d":"-1s"}`, `{"d":"x"}`} {
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("JSON accepted %s", bad)
		}
	}
}
