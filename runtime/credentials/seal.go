package credentials

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
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
