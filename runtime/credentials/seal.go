package credentials

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// KeyFileName is the lease-reference key's file name in the keys
// directory (DATA/keys).
const KeyFileName = "lease-ref.key"

const keySize = 32 // AES-256

// Sealer encrypts lease revocation references at rest.
//
// Why: revoking an OAuth 2.0 token with RFC 7009 needs the token itself,
// and leases must still be revoked after a restart, so the reference has
// to be stored. It is stored sealed with AES-256-GCM (random 96-bit nonce,
// the lease id as additional data so a sealed reference cannot be moved to
// another lease) under a key kept in its own file (DATA/keys, directory
// 0700, file 0600), not in the database: a copy of the database alone does
// not reveal live tokens. The audit log never holds references at all.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a Sealer for a 32-byte key.
func NewSealer(key []byte) (*Sealer, error) {
	if len(key) != keySize {
		return nil, fmt.Errorf("lease key is %d bytes: want %d", len(key), keySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("lease key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("lease key: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// LoadOrCreateSealer reads the key at dir/KeyFileName, creating dir (0700)
// and a new random key (0600) if the file does not exist. It refuses a key
// file that group or others can access.
func LoadOrCreateSealer(dir string) (*Sealer, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lease key directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, KeyFileName)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		key := make([]byte, keySize)
		if _, err := rand.Read(key); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("lease key: %w", err)
		}
		_, werr := f.Write(key)
		serr := f.Sync()
		cerr := f.Close()
		if err := errors.Join(werr, serr, cerr); err != nil {
			_ = os.Remove(path)
			return nil, fmt.Errorf("write lease key %s: %w", path, err)
		}
		return NewSealer(key)
	case !errors.Is(err, os.ErrExist):
		return nil, fmt.Errorf("create lease key %s: %w", path, err)
	}
	r, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lease key %s: %w", path, err)
	}
	defer r.Close()
	fi, err := r.Stat()
	if err != nil {
		return nil, fmt.Errorf("lease key %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("lease key %s must be a regular file of mode 0600 (it is %s): chmod 600 it", path, fi.Mode())
	}
	key, err := io.ReadAll(io.LimitReader(r, keySize+1))
	if err != nil {
		return nil, fmt.Errorf("lease key %s: %w", path, err)
	}
	s, err := NewSealer(key)
	if err != nil {
		return nil, fmt.Errorf("lease key %s: %w: restore the file from backup (without it, open leases cannot be revoked at their source)", path, err)
	}
	return s, nil
}

// Seal encrypts ref for the lease leaseID. An empty ref seals to nil.
func (s *Sealer) Seal(leaseID string, ref []byte) ([]byte, error) {
	if len(ref) == 0 {
		return nil, nil
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(ref)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal lease reference: %w", err)
	}
	return s.aead.Seal(nonce, nonce, ref, []byte(leaseID)), nil
}

// Open decrypts what Seal returned for leaseID. nil opens to nil.
func (s *Sealer) Open(leaseID string, sealed []byte) ([]byte, error) {
	if len(sealed) == 0 {
		return nil, nil
	}
	ns := s.aead.NonceSize()
	if len(sealed) < ns+s.aead.Overhead() {
		return nil, fmt.Errorf("lease %s: sealed reference is truncated", leaseID)
	}
	ref, err := s.aead.Open(nil, sealed[:ns], sealed[ns:], []byte(leaseID))
	if err != nil {
		return nil, fmt.Errorf("lease %s: sealed reference does not open with the lease key (wrong key, or the row was altered)", leaseID)
	}
	return ref, nil
}

// LoadSealerFile reads a lease-reference key shared by every executor of
// one deployment (serve --lease-key-file): exactly 32 bytes, either raw or
// as 64 hex digits (one trailing newline allowed). Anything else is an
// error naming the file. The file must be a regular file that group and
// others cannot access. Create one with
//
//	(umask 077; openssl rand -hex 32 > lease.key)
//
// and give the same file to every executor that shares the store: each of
// them then revokes the leases the others issued.
func LoadSealerFile(path string) (*Sealer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("lease key file %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("lease key file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("lease key file %s is not a regular file (%s)", path, fi.Mode())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("lease key file %s is accessible to group or others (mode %s): chmod 600 it", path, fi.Mode().Perm())
	}
	// The largest valid content: 64 hex digits and "\r\n".
	const maxLen = 2*keySize + 2
	raw, err := io.ReadAll(io.LimitReader(f, maxLen+1))
	if err != nil {
		return nil, fmt.Errorf("lease key file %s: %w", path, err)
	}
	if len(raw) > maxLen {
		return nil, fmt.Errorf("lease key file %s is larger than %d bytes: write exactly %d random bytes, raw or as %d hex digits (openssl rand -hex %d)",
			path, maxLen, keySize, 2*keySize, keySize)
	}
	key, err := parseLeaseKey(raw)
	if err != nil {
		return nil, fmt.Errorf("lease key file %s: %w", path, err)
	}
	return NewSealer(key)
}

// parseLeaseKey accepts 32 raw bytes, or 64 hex digits with at most one
// trailing newline (\n or \r\n).
func parseLeaseKey(raw []byte) ([]byte, error) {
	if len(raw) == keySize {
		// 32 random bytes are all hex digits with a probability of about
		// 1e-34: such a file is half of a hex key (openssl rand -hex 16).
		if isHex(raw) {
			return nil, fmt.Errorf("holds %d hex digits, which is %d bytes of key: write %d hex digits (openssl rand -hex %d)",
				len(raw), len(raw)/2, 2*keySize, keySize)
		}
		return raw, nil
	}
	text := raw
	if n := len(text); n > 0 && text[n-1] == '\n' {
		text = text[:n-1]
		if n := len(text); n > 0 && text[n-1] == '\r' {
			text = text[:n-1]
		}
	}
	if len(text) == 2*keySize {
		key := make([]byte, keySize)
		if _, err := hex.Decode(key, text); err == nil {
			return key, nil
		}
		return nil, fmt.Errorf("holds %d characters that are not all hex digits: write exactly %d random bytes, raw or as %d hex digits (openssl rand -hex %d)",
			len(text), keySize, 2*keySize, keySize)
	}
	return nil, fmt.Errorf("holds %d bytes: write exactly %d random bytes, raw or as %d hex digits (openssl rand -hex %d)",
		len(raw), keySize, 2*keySize, keySize)
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
