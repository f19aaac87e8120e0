package glob

import (
	"path"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	cases := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "", true},
		{"*", "json.query", true},
		{"json.*", "json.query", true},
		{"json.*", "json", false},
		{"json.*", "JSON.query", false},
		{"*.query", "a.b.query", true},
		{"workspace.*", "workspace.read", true},
		{"workspace.*", "workspace", false},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"?", "é", true},
		{"??", "é", false},
		{"a?c", "abc", true},
		{"a\\*c", "a*c", true},
		{"a\\*c", "abc", false},
		{"https://*.example.com/*", "https://api.example.com/v1/x", true},
		{"https://*.example.com/*", "https://example.com/v1/x", false},
		{"*/*", "a/b/c", true}, // unlike path.Match, '*' crosses '/'
		{"exact", "exact", true},
		{"exact", "exact ", false},
		{"", "", true},
		{"", "x", false},
	}
	for _, c := range cases {
		got, err := Match(c.pattern, c.s)
		if err != nil {
			t.Fatalf("Match(%q, %q): %v", c.pattern, c.s, err)
		}
		if got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
}

func TestValidate(t *testing.T) {
	if _, err := Match("abc\\", "abc"); err == nil {
		t.Fatal("trailing escape accepted")
	}
	if err := Validate("a\xffb"); err == nil {
		t.Fatal("invalid UTF-8 accepted")
	}
	if err := Validate("a\\\\"); err != nil {
		t.Fatalf("escaped backslash rejected: %v", err)
	}
}

// TestAgreesWithPathMatch checks the matcher against path.Match on inputs
// without '/', where both define '*' and '?' the same way.
func TestAgreesWithPathMatch(t *testing.T) {
	alphabet := []string{"a", "b", ".", "*", "?"}
	var patterns []string
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		patterns = append(patterns, prefix)
		if n == 0 {
			return
		}
		for _, c := range alphabet {
			gen(prefix+c, n-1)
		}
	}
	gen("", 4)
	subjects := []string{"", "a", "b", "ab", "ba", "a.b", "aab", "abab", ".", "a..", "bbbb"}
	for _, p := range patterns {
		for _, s := range subjects {
			want, err := path.Match(p, s)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Match(p, s)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("Match(%q, %q) = %v, path.Match says %v", p, s, got, want)
			}
		}
	}
}

func TestWorstCaseIsBounded(t *testing.T) {
	// Exponential backtracking would never finish on this input.
	p := strings.Repeat("*a", 50) + "b"
	s := strings.Repeat("a", 2000)
	if ok, _ := Match(p, s); ok {
		t.Fatal("matched")
	}
}
