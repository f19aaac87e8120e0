package redact

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
)

func mustAdd(t testing.TB, r *Redactor, name, secret string) {
	t.Helper()
	if err := r.Add(name, []byte(secret)); err != nil {
		t.Fatalf("Add(%q): %v", name, err)
	}
}

func TestEveryForm(t *testing.T) {
	const s = "s3cr3t/v+lue?&=é\x01"
	r := New()
	mustAdd(t, r, "tok", s)
	b := []byte(s)
	cases := map[string]string{
		"raw":           s,
		"std":           base64.StdEncoding.EncodeToString(b),
		"std-raw":       base64.RawStdEncoding.EncodeToString(b),
		"url":           base64.URLEncoding.EncodeToString(b),
		"url-raw":       base64.RawURLEncoding.EncodeToString(b),
		"hex":           hex.EncodeToString(b),
		"HEX":           strings.ToUpper(hex.EncodeToString(b)),
		"query":         url.QueryEscape(s),
		"path":          url.PathEscape(s),
		"basic-auth":    base64.StdEncoding.EncodeToString([]byte("user:" + s)),
		"basic-auth-2":  base64.StdEncoding.EncodeToString([]byte("ab:" + s + ":x")),
		"basic-auth-3":  base64.URLEncoding.EncodeToString([]byte("a" + s + "tail")),
		"hex-embedded":  hex.EncodeToString([]byte("xyz" + s + "q")),
		"json-html":     jsonOf(t, s, true),
		"json-no-html":  jsonOf(t, s, false),
		"json-of-query": jsonOf(t, url.QueryEscape(s), true),
	}
	for name, form := range cases {
		t.Run(name, func(t *testing.T) {
			in := "before " + form + " after"
			got := r.RedactString(in)
			if !strings.Contains(got, "[REDACTED:tok]") {
				t.Fatalf("form %q not redacted: %q", form, got)
			}
			if !strings.HasPrefix(got, "before ") || !strings.HasSuffix(got, " after") {
				t.Fatalf("text around the secret changed: %q", got)
			}
			// No 6-byte window of the raw secret or its direct encodings
			// survives.
			for _, f := range []string{s, hex.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b)} {
				for i := 0; i+8 <= len(f); i++ {
					if strings.Contains(got, f[i:i+8]) {
						t.Fatalf("fragment %q of the secret survives in %q", f[i:i+8], got)
					}
				}
			}
		})
	}
}

func jsonOf(t *testing.T, s string, html bool) string {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(html)
	if err := enc.Encode(map[string]string{"v": s}); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestJSONEscapedQuote(t *testing.T) {
	const s = `pa"ss\word<>&`
	r := New()
	mustAdd(t, r, "db", s)
	out, err := json.Marshal(map[string]any{"stdout": "the password is " + s + "!"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(`pa\"ss\\word`)) {
		t.Fatalf("test setup: JSON did not escape the quote: %s", out)
	}
	got := r.Redact(out)
	want := `{"stdout":"the password is [REDACTED:db]!"}`
	if string(got) != want {
		t.Fatalf("got %s\nwant %s", got, want)
	}
	var v map[string]string
	if err := json.Unmarshal(got, &v); err != nil {
		t.Fatalf("redacted JSON no longer parses: %v", err)
	}
}

func TestBoundaries(t *testing.T) {
	const s = "ABCDEFGHIJ"
	r := New()
	mustAdd(t, r, "k", s)
	for in, want := range map[string]string{
		s:                 "[REDACTED:k]",
		s + "x":           "[REDACTED:k]x",
		"x" + s:           "x[REDACTED:k]",
		s + s:             "[REDACTED:k][REDACTED:k]",
		"ABCDEFGHI":       "ABCDEFGHI", // one byte short at the end of input
		"ABCDEFGHIABCDEF": "ABCDEFGHIABCDEF",
		"AB" + s + "J":    "AB[REDACTED:k]J",
		"":                "",
	} {
		if got := r.RedactString(in); got != want {
			t.Errorf("RedactString(%q) = %q, want %q", in, got, want)
		}
	}
	// Every split point of a buffer: the secret ending exactly at each.
	for n := 0; n < 64; n++ {
		in := strings.Repeat("-", n) + s
		if got := r.RedactString(in); got != strings.Repeat("-", n)+"[REDACTED:k]" {
			t.Fatalf("prefix %d: %q", n, got)
		}
	}
}

func TestOverlaps(t *testing.T) {
	r := New()
	mustAdd(t, r, "a", "0123456789")
	mustAdd(t, r, "b", "56789abcdef")
	// The two secrets share "56789": the union is redacted once, as the
	// one that starts first.
	if got := r.RedactString("x0123456789abcdefy"); got != "x[REDACTED:a]y" {
		t.Fatalf("overlap: %q", got)
	}
	// One secret inside another secret's encoding.
	r2 := New()
	mustAdd(t, r2, "outer", "prefix-0123456789-suffix")
	mustAdd(t, r2, "inner", "0123456789")
	if got := r2.RedactString("[prefix-0123456789-suffix]"); got != "[[REDACTED:outer]]" {
		t.Fatalf("nested: %q", got)
	}
	if got := r2.RedactString("0123456789"); got != "[REDACTED:inner]" {
		t.Fatalf("inner alone: %q", got)
	}
	// A secret whose hex form contains another secret's raw form.
	r3 := New()
	mustAdd(t, r3, "h", "\x01\x23\x45\x67\x89\xab\xcd\xef")
	mustAdd(t, r3, "d", "23456789ab")
	if got := r3.RedactString("0123456789abcdef"); got != "[REDACTED:h]" {
		t.Fatalf("hex overlap: %q", got)
	}
	// Padded and unpadded base64 are both forms: the longer one wins.
	r4 := New()
	mustAdd(t, r4, "p", "12345678")
	enc := base64.StdEncoding.EncodeToString([]byte("12345678"))
	if !strings.HasSuffix(enc, "=") {
		t.Fatal("test setup: want a padded encoding")
	}
	if got := r4.RedactString(enc + "."); got != "[REDACTED:p]." {
		t.Fatalf("padded base64: %q", got)
	}
}

func TestAddRefuses(t *testing.T) {
	r := New()
	if err := r.Add("x", []byte("short")); !errors.Is(err, ErrTooShort) {
		t.Fatalf("short secret: %v", err)
	}
	if err := r.Add("", []byte("long enough")); err == nil {
		t.Fatal("empty name accepted")
	}
	if err := r.Add("bad]name", []byte("long enough")); err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("bad name: %v", err)
	}
	if err := r.Add("big", make([]byte, MaxSecretBytes+1)); err == nil {
		t.Fatal("oversized secret accepted")
	}
	for i := range MaxSecrets {
		mustAdd(t, r, fmt.Sprintf("s%d", i), fmt.Sprintf("secret-number-%04d", i))
	}
	if err := r.Add("one-more", []byte("one-more-secret")); err == nil {
		t.Fatal("more than MaxSecrets accepted")
	}
	if r.Len() != MaxSecrets {
		t.Fatalf("Len = %d", r.Len())
	}
	// All of them still redact.
	if got := r.RedactString("a secret-number-0000 b secret-number-0063"); got != "a [REDACTED:s0] b [REDACTED:s63]" {
		t.Fatalf("many secrets: %q", got)
	}
}

func TestNoMatchReturnsInput(t *testing.T) {
	var nilR *Redactor
	in := []byte("hello")
	if got := nilR.Redact(in); &got[0] != &in[0] {
		t.Fatal("nil redactor copied")
	}
	r := New()
	if got := r.Redact(in); &got[0] != &in[0] {
		t.Fatal("empty redactor copied")
	}
	mustAdd(t, r, "k", "0123456789")
	if got := r.Redact(in); &got[0] != &in[0] {
		t.Fatal("no match copied")
	}
}

func TestWriter(t *testing.T) {
	r := New()
	mustAdd(t, r, "k", "0123456789")
	var buf bytes.Buffer
	w := r.Writer(&buf)
	n, err := w.Write([]byte(`{"msg":"token 0123456789"}` + "\n"))
	if err != nil || n != 27 {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if buf.String() != `{"msg":"token [REDACTED:k]"}`+"\n" {
		t.Fatalf("got %q", buf.String())
	}
}

func TestConcurrent(t *testing.T) {
	r := New()
	mustAdd(t, r, "k0", "secret-zero-value")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				if got := r.RedactString("x secret-zero-value y"); got != "x [REDACTED:k0] y" {
					t.Errorf("got %q", got)
					return
				}
			}
		}()
		if err := r.Add(fmt.Sprintf("k%d", i+1), []byte(fmt.Sprintf("another-secret-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

// FuzzRedact checks that after redaction no raw, hex or base64 form of the
// secret survives outside a redaction tag, and that text without the
// secret is left alone.
func FuzzRedact(f *testing.F) {
	f.Add([]byte("0123456789"), []byte("abc"), []byte("def"))
	f.Add([]byte(`a"b\c<d>e&f`), []byte(`{"x":"`), []byte(`"}`))
	f.Add([]byte("\x00\xff\x00\xff\x00\xff\x00\xff"), []byte{}, []byte("\xff"))
	f.Add([]byte("aaaaaaaaaa"), []byte("aaaa"), []byte("aaaaaaaaaaaaaaa"))
	f.Fuzz(func(t *testing.T, secret, pre, post []byte) {
		if len(secret) < MinSecretBytes || len(secret) > 256 || len(pre) > 1024 || len(post) > 1024 {
			t.Skip()
		}
		r := New()
		if err := r.Add("k", secret); err != nil {
			t.Fatal(err)
		}
		tag := []byte("[REDACTED:k]")
		sep := byte(0)
		for sep = 0; bytes.IndexByte(secret, sep) >= 0; sep++ {
		}
		for _, in := range [][]byte{
			append(append(append([]byte{}, pre...), secret...), post...),
			append(append(append([]byte{}, pre...), hex.EncodeToString(secret)...), post...),
			append(append(append([]byte{}, pre...), base64.StdEncoding.EncodeToString(secret)...), post...),
			append(append([]byte{}, pre...), post...),
		} {
			out := r.Redact(in)
			flat := bytes.ReplaceAll(out, tag, []byte{sep})
			if bytes.Contains(flat, secret) {
				t.Fatalf("secret survives: in %q out %q", in, out)
			}
			if !bytes.Contains(out, tag) && !bytes.Equal(out, in) {
				t.Fatalf("changed without a tag: in %q out %q", in, out)
			}
		}
	})
}
