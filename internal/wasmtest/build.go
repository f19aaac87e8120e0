package wasmtest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// BuildGo compiles the Go main package in dir for wasip1 with
// `go build -trimpath` and returns the path of a private copy of the module
// (in t's temporary directory) and its hex SHA-256. Builds are cached under
// os.UserCacheDir()/airlock-wasmtest, keyed by the hash of the package's
// files and the Go version, so repeated runs do not rebuild.
func BuildGo(t testing.TB, dir string) (path, sum string) {
	t.Helper()
	cached, err := buildGoCached(dir)
	if err != nil {
		t.Fatalf("build %s for wasip1: %v", dir, err)
	}
	bin, err := os.ReadFile(cached)
	if err != nil {
		t.Fatalf("read built module: %v", err)
	}
	path = filepath.Join(t.TempDir(), filepath.Base(dir)+".wasm")
	if err := os.WriteFile(path, bin, 0o644); err != nil {
		t.Fatalf("copy built module: %v", err)
	}
	return path, Sum(bin)
}

// BuildGoCached is BuildGo without a testing.TB (for TestMain and
// benchmarks' setup): it returns the shared cached file, which callers must
// not modify.
func BuildGoCached(dir string) (path string, err error) { return buildGoCached(dir) }

func buildGoCached(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	key, err := sourceHash(abs)
	if err != nil {
		return "", fmt.Errorf("hash sources of %s: %w", abs, err)
	}
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	cacheDir := filepath.Join(base, "airlock-wasmtest")
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(cacheDir, filepath.Base(abs)+"-"+key[:24]+".wasm")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	tmp, err := os.CreateTemp(cacheDir, ".build-*.wasm")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go command is not on PATH: %w", err)
	}
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", tmp.Name(), ".")
	cmd.Dir = abs
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, b)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", err
	}
	return out, nil
}

// sourceHash hashes the Go version and every file under dir.
func sourceHash(dir string) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00wasip1/wasm\x00", runtime.Version())
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		rel := strings.TrimPrefix(f, dir)
		fmt.Fprintf(h, "%s\x00%d\x00", rel, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
