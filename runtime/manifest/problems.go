package manifest

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong with a manifest, located in its file.
type Problem struct {
	// File is the manifest file (or directory) the problem is in.
	File string
	// Line and Col are 1-based; zero when the problem concerns the whole
	// file or directory.
	Line, Col int
	// Msg says what is wrong and what to do about it.
	Msg string
}

// String formats the problem as "file:line: message" ("file: message"
// when it has no line).
func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
	}
	return fmt.Sprintf("%s: %s", p.File, p.Msg)
}

// Problems is every problem found while loading manifests. It is the error
// type of LoadFile and LoadDir.
type Problems []Problem

// Error prints one "file:line: message" per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// sorted orders problems by file, line and column, keeping the discovery
// order of problems at the same place.
func (ps Problems) sorted() Problems {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
	})
	return ps
}
