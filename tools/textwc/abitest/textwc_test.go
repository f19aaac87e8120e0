// Package abitest tests text.wc, the C tool of tools/textwc: the committed
// textwc.wasm under wazero against Go's reading of the same JSON. It holds
// only tests (a Go package cannot sit next to a C file without cgo).
package abitest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/airlock-dev/airlock/tools/internal/wasmtest"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

type counts struct {
	Bytes int `json:"bytes"`
	Words int `json:"words"`
	Lines int `json:"lines"`
}

// reference computes text.wc's contract with Go.
func reference(s string) counts {
	return counts{Bytes: len(s), Words: len(strings.Fields(s)), Lines: strings.Count(s, "\n")}
}

// modulePath is the committed module, relative to this directory.
const modulePath = "../textwc.wasm"

func load(t *testing.T) *wasmtest.Module {
	t.Helper()
	return wasmtest.Load(t, modulePath)
}

func module(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(modulePath)
	if err != nil {
		t.Fatalf("read the committed module: %v", err)
	}
	return b
}

func TestCounts(t *testing.T) {
	m := load(t)
	tests := []struct {
		stdin string
		want  counts
	}{
		{`{"text": ""}`, counts{0, 0, 0}},
		{`{"text": "hello world"}`, counts{11, 2, 0}},
		{`{"text": "one\ntwo three\n"}`, counts{14, 3, 2}},
		{`{"text":"a\tb\rc\u000bd\fe"}`, counts{9, 5, 0}},
		{`{"text": "  lead and trail  "}`, counts{18, 3, 0}},
		{`{"text": "caf\u00e9"}`, counts{5, 1, 0}},               // escape decoded: é is 2 bytes
		{`{"text": "café"}`, counts{5, 1, 0}},                    // raw UTF-8
		{`{"text": "\ud83d\ude00 ok"}`, counts{7, 2, 0}},         // surrogate pair: one 4-byte rune
		{`{"text": "a\u00a0b\u3000c\u2003d"}`, counts{12, 4, 0}}, // Unicode spaces separate words
		{`{"text": "a\u200bb"}`, counts{5, 1, 0}},                // zero width space is not White_Space
		{`{"text": "\ud800x"}`, counts{4, 1, 0}},                 // lone high surrogate: U+FFFD, like Go
		{`{"text": "\udc00"}`, counts{3, 1, 0}},                  // lone low surrogate
		{`{"text": "\ud800\u0041"}`, counts{4, 1, 0}},            // high then non-surrogate: FFFD + A
		{`{"text": "\ud800\ud83d\ude00"}`, counts{7, 1, 0}},      // FFFD, then a valid pair
		{`{"text": "\ud800\n"}`, counts{4, 1, 1}},                // high then another escape
		{`{"text": "\"q\" \\ \/ \b"}`, counts{9, 4, 0}},
		{` { "text" : "x" } `, counts{1, 1, 0}},
		{"{\n\t\"text\":\r\n\"x\"}\n", counts{1, 1, 0}},
		{`{"t\u0065xt": "escaped name"}`, counts{12, 2, 0}},
	}
	for _, tt := range tests {
		r := m.Run(t, "text.wc", tt.stdin, "")
		want, _ := json.Marshal(tt.want)
		if r.Exit != 0 || r.Stdout != string(want)+"\n" || r.Stderr != "" {
			t.Errorf("%s: got %+v, want %s", tt.stdin, r, want)
		}
		// The table agrees with Go's decoding of the same JSON.
		var in struct{ Text string }
		if err := json.Unmarshal([]byte(tt.stdin), &in); err != nil || reference(in.Text) != tt.want {
			t.Errorf("%s: Go says %+v (%v), table says %+v", tt.stdin, reference(in.Text), err, tt.want)
		}
	}
}

func TestMalformed(t *testing.T) {
	m := load(t)
	for _, stdin := range []string{
		``, `   `, `[]`, `"text"`, `{}`, `{"text": 1}`, `{"text": null}`, `{"text": "a"`, `{"text": "a",}`,
		`{"text": "a"} x`, `{"text": "a"}{}`, `{"text": "a", "text": "b"}`, `{"other": "a"}`, `{"text": "a", "x": 1}`,
		`{"texts": "a"}`, `{"tex": "a"}`, `{text: "a"}`, `{"text" "a"}`, `{"text": "a` + "\n" + `"}`,
		`{"text": "\x"}`, `{"text": "\u12"}`, `{"text": "\u12zz"}`, `{"text": "\ud800\u12"}`, `{"text": "unterminated`,
		"{\"text\": \"\xff\"}", "{\"text\": \"\xc3\"}", "{\"text\": \"\xc0\xaf\"}", "{\"text\": \"\xed\xa0\x80\"}",
		"{\"text\": \"\xf4\x90\x80\x80\"}", "\xef\xbb\xbf{\"text\": \"bom\"}",
	} {
		r := m.Run(t, "text.wc", stdin, "")
		if r.Exit != 1 || r.Stdout != "" || !strings.HasPrefix(r.Stderr, "invalid_input: ") || !strings.HasSuffix(r.Stderr, ")\n") {
			t.Errorf("%q: got %+v, want exit 1 and invalid_input on stderr", stdin, r)
		}
	}
}

// TestAgainstGo compares the module with Go on random strings, encoded both
// by encoding/json and with every character escaped.
func TestAgainstGo(t *testing.T) {
	m := load(t)
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("ab \t\n\r\v\fé日😀\u00a0\u2028\u0085\"\\/\x00\x1f\u200b\ufffd<>&")
	for i := range 300 {
		var b strings.Builder
		for range rng.IntN(40) {
			b.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		s := b.String()
		want, _ := json.Marshal(reference(s))
		enc, _ := json.Marshal(map[string]string{"text": s})
		r := m.Run(t, "text.wc", string(enc), "")
		if r.Exit != 0 || r.Stdout != string(want)+"\n" {
			t.Fatalf("case %d %s: got %+v, want %s", i, enc, r, want)
		}
		r = m.Run(t, "text.wc", `{"text":"`+escapeAll(s)+`"}`, "")
		if r.Exit != 0 || r.Stdout != string(want)+"\n" {
			t.Fatalf("case %d escaped %q: got %+v, want %s", i, s, r, want)
		}
	}
}

// escapeAll writes every character of s as \uXXXX (surrogate pairs above
// the BMP).
func escapeAll(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r > 0xffff {
			r -= 0x10000
			fmt.Fprintf(&b, `\u%04x\u%04X`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
			continue
		}
		fmt.Fprintf(&b, `\u%04x`, r)
	}
	return b.String()
}

// TestLargeInput streams an input much larger than the module's buffer.
func TestLargeInput(t *testing.T) {
	m := load(t)
	s := strings.Repeat("word ", 200_000) + "\n" + strings.Repeat("é", 100_000)
	enc, _ := json.Marshal(map[string]string{"text": s})
	want, _ := json.Marshal(reference(s))
	if r := m.Run(t, "text.wc", string(enc), ""); r.Exit != 0 || r.Stdout != string(want)+"\n" {
		t.Fatalf("got %+v, want %s", r, want)
	}
}

// TestImports pins the module's host surface: it needs nothing but stdio.
func TestImports(t *testing.T) {
	ctx := context.Background()
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer rt.Close(ctx)
	cm, err := rt.CompileModule(ctx, module(t))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		got = append(got, mod+"."+name)
	}
	want := []string{"wasi_snapshot_preview1.fd_read", "wasi_snapshot_preview1.fd_write", "wasi_snapshot_preview1.proc_exit"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("imports = %v, want %v", got, want)
	}
	if len(module(t)) > 16<<10 {
		t.Errorf("module is %d bytes: build it with -O2 -Wl,--strip-all", len(module(t)))
	}
	_ = wasi_snapshot_preview1.ModuleName
}

// builtWith is the clang that built the committed module; other versions
// emit other bytes, so the freshness check needs this one.
const builtWith = "clang version 14.0.6"

// TestCommittedModuleIsFresh rebuilds textwc.wasm from its source with
// build.sh when the same clang is installed, and requires the committed
// module to match byte for byte.
func TestCommittedModuleIsFresh(t *testing.T) {
	ver, err := exec.Command("clang", "--version").Output()
	if err != nil {
		t.Skip("clang not installed: run tools/textwc/build.sh to get it")
	}
	if !strings.Contains(string(ver), builtWith) {
		t.Skipf("clang is not %q, which built the committed module", builtWith)
	}
	out := filepath.Join(t.TempDir(), "textwc.wasm")
	if msg, err := exec.Command("bash", "../build.sh", out).CombinedOutput(); err != nil {
		t.Skipf("build.sh cannot build here (%v): %s", err, msg)
	}
	built, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if committed := module(t); !bytes.Equal(built, committed) {
		t.Fatalf("textwc.wasm is stale: sha256 %x committed, %x built from textwc.c: run tools/textwc/build.sh and tools/pin.sh",
			sha256.Sum256(committed), sha256.Sum256(built))
	}
}

func BenchmarkRun(b *testing.B) {
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)
	cm, err := rt.CompileModule(ctx, module(b))
	if err != nil {
		b.Fatal(err)
	}
	in := []byte(`{"text": "the quick brown fox\njumps over the lazy dog\n"}`)
	var out bytes.Buffer
	b.ReportAllocs()
	for b.Loop() {
		out.Reset()
		mod, err := rt.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").WithArgs("text.wc").
			WithStdin(bytes.NewReader(in)).WithStdout(&out))
		if err != nil {
			b.Fatal(err)
		}
		_ = mod.Close(ctx)
	}
	if !utf8.Valid(out.Bytes()) || !strings.HasPrefix(out.String(), `{"bytes":44,`) {
		b.Fatalf("output %q", out.String())
	}
}
