package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
)

// LoadFile reads, decodes and validates one manifest, and verifies its
// module against the pinned digest. The error is Problems, with every
// problem of the file.
func LoadFile(path string) (*Manifest, error) {
	m, _, ps := loadFile(path)
	if len(ps) > 0 {
		return nil, ps.sorted()
	}
	return m, nil
}

// LoadDir loads every *.yaml and *.yml file of dir (not its
// subdirectories), in name order. Two manifests with the same tool name
// are an error, and so is a directory without manifests. The error is
// Problems, with every problem of every file.
func LoadDir(dir string) ([]*Manifest, error) {
	ms, ps := loadDir(dir)
	if len(ps) > 0 {
		return nil, ps.sorted()
	}
	return ms, nil
}

// Lint loads each path, a manifest file or a directory of them (as
// LoadDir does), and returns every problem found, or nil.
func Lint(paths ...string) Problems {
	var all Problems
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			all = append(all, Problem{File: p, Msg: fmt.Sprintf("cannot lint: %v", err)})
			continue
		}
		if fi.IsDir() {
			_, ps := loadDir(p)
			all = append(all, ps...)
			continue
		}
		_, _, ps := loadFile(p)
		all = append(all, ps...)
	}
	if len(all) == 0 {
		return nil
	}
	return all.sorted()
}

func loadDir(dir string) ([]*Manifest, Problems) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, Problems{{File: dir, Msg: fmt.Sprintf("cannot read the manifest directory: %v", err)}}
	}
	type named struct {
		file string
		line int
	}
	var (
		ms    []*Manifest
		all   Problems
		names = map[string]named{}
		found bool
	)
	for _, e := range entries { // os.ReadDir sorts by name
		if !strings.HasSuffix(e.Name(), ".yaml") && !strings.HasSuffix(e.Name(), ".yml") {
			continue
		}
		found = true
		path := filepath.Join(dir, e.Name())
		m, nameAt, ps := loadFile(path)
		all = append(all, ps...)
		if m == nil || m.Metadata.Name == "" {
			continue
		}
		if first, dup := names[m.Metadata.Name]; dup {
			all = append(all, Problem{File: path, Line: nameAt.line, Col: nameAt.col,
				Msg: fmt.Sprintf("tool %q is also defined in %s:%d: keep one manifest per tool name", m.Metadata.Name, first.file, first.line)})
			continue
		}
		names[m.Metadata.Name] = named{path, nameAt.line}
		if len(ps) == 0 {
			ms = append(ms, m)
		}
	}
	if !found {
		all = append(all, Problem{File: dir, Msg: "no manifests here: a tool manifest is a *.yaml or *.yml file with kind: Tool"})
	}
	return ms, all
}

// loadFile returns the manifest decoded as far as it could be, the
// position of its metadata.name, and its problems.
func loadFile(path string) (*Manifest, pos, Problems) {
	data, err := readBounded(path)
	if err != nil {
		return nil, pos{}, Problems{{File: path, Msg: err.Error()}}
	}
	d := newYAMLDecoder(path)
	body := d.parseDocument(data)
	if body == nil {
		return nil, pos{}, d.problems
	}
	m := &Manifest{File: path}
	d.at[""] = nodePos(body)
	d.decode("", body, reflect.ValueOf(m).Elem())
	if len(d.problems) == 0 {
		d.crossCheck(body, m)
	}
	(&checker{yamlDecoder: d, m: m}).check()
	return m, d.lineOf("metadata.name"), d.problems
}

// crossCheck decodes the document a second time with go-yaml's own strict
// decoder and records a problem if it refuses the file or reads it
// differently: two independent decoders must agree before a manifest is
// trusted.
func (d *yamlDecoder) crossCheck(body ast.Node, m *Manifest) {
	var other Manifest
	err := yaml.NodeToValue(body, &other, yaml.Strict(), yaml.DisallowUnknownField(),
		// The schemas are converted to JSON by yamlDecoder.toJSON, with
		// positions for their problems; go-yaml leaves them alone.
		yaml.CustomUnmarshaler(func(*json.RawMessage, []byte) error { return nil }))
	if err != nil {
		d.yamlError(err)
		return
	}
	other.File, other.Spec.Input, other.Spec.Output = m.File, m.Spec.Input, m.Spec.Output
	a, errA := json.Marshal(m)
	b, errB := json.Marshal(&other)
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		d.problem(pos{}, "the manifest reads differently to two YAML decoders: write it in plain block or flow YAML without special scalars (and report this)")
	}
}

// readBounded reads a regular file of at most MaxManifestBytes.
func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the manifest: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot read the manifest: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("is not a regular file: a manifest is a YAML file")
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read the manifest: %w", err)
	}
	if len(data) > MaxManifestBytes {
		return nil, fmt.Errorf("the manifest is over %s: split it or shorten its schemas", ByteSize(MaxManifestBytes))
	}
	return data, nil
}
