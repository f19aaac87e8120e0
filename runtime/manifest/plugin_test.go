package manifest

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A plugin manifest names its binary relative to the manifest's directory;
// the loader makes it absolute, verifies the pin and fills in the OS
// limits' defaults.
func TestLoadPluginManifest(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin", "tool")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("#!/bin/false\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := hashFile(bin, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "native.yaml")
	doc := `apiVersion: airlock.dev/v1
kind: Tool
metadata: {name: native.tool, version: 1.0.0, description: A native tool.}
spec:
  runtime:
    plugin: {command: bin/tool, args: [serve], sha256: "` + sum + `"}
  input: {type: object}
  output: {type: object}
  limits: {timeout: 3s, processes: 32}
  risk: medium
`
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if m.PluginPath() != bin || m.ModulePath() != "" || m.Digest() != sum {
		t.Errorf("plugin path %q module %q digest %q; want %q, \"\", %q", m.PluginPath(), m.ModulePath(), m.Digest(), bin, sum)
	}
	want := Limits{Memory: DefaultPluginMemory, Timeout: Duration(3 * time.Second), Output: MiB, Concurrency: 16,
		Processes: 32, OpenFiles: DefaultOpenFiles, CPUTime: Duration(3 * time.Second), FileSize: DefaultFileSize}
	if m.Spec.Limits != want {
		t.Errorf("limits %+v, want %+v", m.Spec.Limits, want)
	}

	// The binary changes after the manifest was written: refused at load.
	if err := os.WriteFile(bin, []byte("#!/bin/true\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(path); err == nil {
		t.Fatal("a binary that no longer matches its pin was loaded")
	}
}
