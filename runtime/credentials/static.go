package credentials

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// maxSecretFile bounds a secret read from a file.
const maxSecretFile = 64 << 10

// Static is a source whose value comes from a file or an environment
// variable of the executor. It is for development: the value is long-lived
// and Revoke cannot revoke it. The value is read at every Issue, so
// rotating the file takes effect on the next call.
type Static struct {
	name string
	file string
	env  string
	now  func() time.Time
}

var _ Source = (*Static)(nil)

// NewStatic returns a static source reading file, or if file is empty the
// environment variable env. Exactly one must be set.
func NewStatic(name, file, env string) (*Static, error) {
	if (file == "") == (env == "") {
		return nil, fmt.Errorf("static credential source %q: set exactly one of file and env", name)
	}
	return &Static{name: name, file: file, env: env, now: time.Now}, nil
}

// Name returns the source's name.
func (s *Static) Name() string { return s.name }

// Issue returns the current value. Its expiry is req.NotAfter: the lease
// ends with the task even though the value itself does not.
func (s *Static) Issue(_ context.Context, req IssueRequest) (*Credential, error) {
	if err := checkRequest(s.name, req, s.now()); err != nil {
		return nil, err
	}
	v, err := s.value()
	if err != nil {
		return nil, err
	}
	return &Credential{Value: v, ExpiresAt: req.NotAfter, LeaseID: req.LeaseID}, nil
}

func (s *Static) value() (string, error) {
	if s.env != "" {
		v, ok := os.LookupEnv(s.env)
		if !ok || v == "" {
			return "", fmt.Errorf("static credential source %q: environment variable %s of the executor is not set: %w", s.name, s.env, ErrSource)
		}
		return v, nil
	}
	return readSecretFile(s.name, s.file)
}

// readSecretFile reads a secret from a file (at most maxSecretFile bytes),
// trimming one trailing newline. It refuses a file others can read.
func readSecretFile(source, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("credential source %q: %w: check the file's path and permissions", source, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("credential source %q: %w", source, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("credential source %q: %s is not a regular file", source, path)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("credential source %q: %s is readable by group or others (mode %s): chmod 600 it", source, path, fi.Mode().Perm())
	}
	if fi.Size() > maxSecretFile {
		return "", fmt.Errorf("credential source %q: %s is %d bytes, more than the %d a secret file may hold", source, path, fi.Size(), maxSecretFile)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("credential source %q: read %s: %w", source, path, err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("credential source %q: %s grew beyond %d bytes while being read", source, path, maxSecretFile)
	}
	v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if v == "" {
		return "", fmt.Errorf("credential source %q: %s is empty", source, path)
	}
	return v, nil
}

// Revoke does nothing: a static value cannot be revoked. The lease is
// still marked revoked, and the value stops being injected.
func (s *Static) Revoke(context.Context, *Credential) error { return nil }
