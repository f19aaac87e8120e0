package redact

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkRedact64KiB redacts 64 KiB of JSON-ish tool output holding each
// of 4 secrets once, and the same output with no secret in it.
func BenchmarkRedact64KiB(b *testing.B) {
	r := New()
	var secrets []string
	for i := range 4 {
		s := fmt.Sprintf("ghp_%032d", i*7919)
		secrets = append(secrets, s)
		if err := r.Add(fmt.Sprintf("cred%d", i), []byte(s)); err != nil {
			b.Fatal(err)
		}
	}
	line := []byte(`{"id":12345,"title":"Fix the flaky test in runtime/executor","state":"open","labels":["bug","ci"]},` + "\n")
	clean := bytes.Repeat(line, 64<<10/len(line)+1)[:64<<10]
	dirty := append([]byte{}, clean...)
	for i, s := range secrets {
		copy(dirty[(i+1)*12000:], s)
	}
	for _, c := range []struct {
		name string
		in   []byte
	}{{"secrets", dirty}, {"clean", clean}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.in)))
			for b.Loop() {
				_ = r.Redact(c.in)
			}
		})
	}
}

// BenchmarkAdd measures registering a call's 4 secrets and building the
// matcher (by the first Redact).
func BenchmarkAdd(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		r := New()
		for i := range 4 {
			if err := r.Add(fmt.Sprintf("cred%d", i), []byte(fmt.Sprintf("ghp_%032d", i))); err != nil {
				b.Fatal(err)
			}
		}
		_ = r.Redact([]byte("x"))
	}
}
