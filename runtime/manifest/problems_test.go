package manifest

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// expectation is one problem a testdata file announces in a comment:
//
//	key: value # want "exact message" "another exact message"
//	key: value # want-prefix "message prefix"
//	# want-line N "exact message"   (a problem reported at line N)
type expectation struct {
	line   int
	msg    string
	prefix bool
}

var wantRe = regexp.MustCompile(`#\s*want(-prefix|-line (\d+))?\s+(".*)$`)

func readExpectations(t *testing.T, path string) []expectation {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []expectation
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		m := wantRe.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		line, prefix := n, m[1] == "-prefix"
		if m[2] != "" {
			line, _ = strconv.Atoi(m[2])
		}
		rest := strings.TrimSpace(m[3])
		for rest != "" {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				t.Fatalf("%s:%d: bad want comment: %v", path, n, err)
			}
			s, _ := strconv.Unquote(q)
			out = append(out, expectation{line: line, msg: s, prefix: prefix})
			rest = strings.TrimSpace(rest[len(q):])
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s announces no problem", path)
	}
	return out
}

// TestProblems loads every file of testdata/bad and checks that it yields
// exactly the problems its comments announce, each as "file:line: message".
func TestProblems(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			want := readExpectations(t, file)
			m, err := LoadFile(file)
			if err == nil {
				t.Fatalf("LoadFile succeeded: %+v", m)
			}
			if m != nil {
				t.Error("LoadFile returned a manifest with an error")
			}
			ps, ok := err.(Problems)
			if !ok {
				t.Fatalf("error is %T, want Problems", err)
			}
			if got := Lint(file); !slices.Equal(got, ps) {
				t.Errorf("Lint and LoadFile disagree:\n%v\n---\n%v", got, ps)
			}
			got := slices.Clone(ps)
			for _, w := range want {
				i := slices.IndexFunc(got, func(p Problem) bool {
					if p.File != file || p.Line != w.line {
						return false
					}
					if w.prefix {
						return strings.HasPrefix(p.Msg, w.msg)
					}
					return p.Msg == w.msg
				})
				if i < 0 {
					t.Errorf("missing problem %s:%d: %s", file, w.line, w.msg)
					continue
				}
				if !w.prefix {
					wantText := fmt.Sprintf("%s:%d: %s", file, w.line, w.msg)
					if w.line == 0 {
						wantText = fmt.Sprintf("%s: %s", file, w.msg)
					}
					if got[i].String() != wantText {
						t.Errorf("problem prints as %q, want %q", got[i].String(), wantText)
					}
				}
				got = slices.Delete(got, i, i+1)
			}
			for _, p := range got {
				t.Errorf("unexpected problem %s", p)
			}
			// Error() is one problem per line.
			if lines := strings.Split(err.Error(), "\n"); len(lines) != len(ps) {
				t.Errorf("Error() has %d lines for %d problems", len(lines), len(ps))
			}
		})
	}
}
