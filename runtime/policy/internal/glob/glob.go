// Package glob matches strings against simple wildcard patterns: '*'
// matches any run of characters (including '.' and '/'), '?' matches
// exactly one character, and '\' escapes the next character. Matching works
// on Unicode code points and runs in O(len(pattern)*len(s)) time at worst,
// with no recursion and no allocation.
package glob

import (
	"errors"
	"unicode/utf8"
)

// ErrTrailingEscape is returned for a pattern that ends in a lone '\'.
var ErrTrailingEscape = errors.New("pattern ends with an unescaped '\\': escape it as '\\\\'")

// ErrInvalidUTF8 is returned for a pattern that is not valid UTF-8.
var ErrInvalidUTF8 = errors.New("pattern is not valid UTF-8")

// Validate reports whether pattern is well formed.
func Validate(pattern string) error {
	if !utf8.ValidString(pattern) {
		return ErrInvalidUTF8
	}
	for i := 0; i < len(pattern); i++ {
		if pattern[i] == '\\' {
			if i+1 >= len(pattern) {
				return ErrTrailingEscape
			}
			i++
		}
	}
	return nil
}

// Match reports whether s matches pattern. A malformed pattern (see
// Validate) returns an error and never matches.
func Match(pattern, s string) (bool, error) {
	if err := Validate(pattern); err != nil {
		return false, err
	}
	return match(pattern, s), nil
}

// match is the classic greedy matcher with a single backtrack point: on a
// mismatch it retries from the last '*', consuming one more character of s.
func match(pattern, s string) bool {
	var px, sx int         // current positions
	starP, starS := -1, -1 // position after the last '*' in pattern, and in s
	for px < len(pattern) || sx < len(s) {
		if px < len(pattern) {
			c := pattern[px]
			switch c {
			case '*':
				starP = px + 1
				starS = sx
				px++
				continue
			case '?':
				if sx < len(s) {
					_, n := utf8.DecodeRuneInString(s[sx:])
					px++
					sx += n
					continue
				}
			default:
				lit, pn := literal(pattern, px)
				if sx < len(s) {
					r, n := utf8.DecodeRuneInString(s[sx:])
					if r == lit {
						px += pn
						sx += n
						continue
					}
				}
			}
		}
		// Mismatch: backtrack to the last star, if any, consuming one more
		// character of s with it.
		if starP >= 0 && starS < len(s) {
			_, n := utf8.DecodeRuneInString(s[starS:])
			starS += n
			px = starP
			sx = starS
			continue
		}
		return false
	}
	return true
}

// literal decodes the literal rune at pattern[px:], honouring '\' escapes,
// and returns it with the number of pattern bytes it used.
func literal(pattern string, px int) (rune, int) {
	if pattern[px] == '\\' && px+1 < len(pattern) {
		r, n := utf8.DecodeRuneInString(pattern[px+1:])
		return r, n + 1
	}
	r, n := utf8.DecodeRuneInString(pattern[px:])
	return r, n
}
