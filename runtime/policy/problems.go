package policy

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a policy, test or manifest rule, at a
// position in a file.
type Problem struct {
	File string
	Line int // 1-based; 0 when the problem concerns the whole file
	Msg  string
}

// String formats the problem as "file:line: message".
func (p Problem) String() string {
	switch {
	case p.File == "":
		return p.Msg
	case p.Line <= 0:
		return p.File + ": " + p.Msg
	}
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Msg)
}

// Problems is every problem found by LoadDir or Compile. It is returned as
// the error; use errors.As to get at the list.
type Problems []Problem

// Error prints one "file:line: message" per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (ps *Problems) add(file string, line int, format string, args ...any) {
	*ps = append(*ps, Problem{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// err sorts the problems by file and line and returns them as an error, or
// nil when there are none.
func (ps Problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].File != ps[j].File {
			return ps[i].File < ps[j].File
		}
		return ps[i].Line < ps[j].Line
	})
	return ps
}
