// Package devca is a local certificate authority for development: it
// issues X.509-SVIDs to files so that airlock's mTLS listener and clients
// work without a SPIFFE deployment. It is not a substitute for SPIRE: keys
// live in files, nothing attests the workload, and there is no rotation.
//
// A CA directory holds ca.pem (the CA certificate, which is also the trust
// bundle) and ca.key (its ECDSA P-256 key, mode 0600). Issue writes
// svid.pem (the certificate chain, leaf first), svid.key (mode 0600) and
// bundle.pem.
package devca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Defaults and files.
const (
	DefaultTrustDomain = "airlock.local"
	// DefaultCATTL is the CA certificate's lifetime.
	DefaultCATTL = 365 * 24 * time.Hour
	// DefaultSVIDTTL is an issued SVID's lifetime.
	DefaultSVIDTTL = 24 * time.Hour
	// MaxSVIDTTL bounds an issued SVID's lifetime.
	MaxSVIDTTL = 30 * 24 * time.Hour

	CACertFile = "ca.pem"
	CAKeyFile  = "ca.key"
	SVIDFile   = "svid.pem"
	KeyFile    = "svid.key"
	BundleFile = "bundle.pem"
)

// clockSkew backdates NotBefore so that a peer whose clock runs slightly
// behind accepts a fresh certificate.
const clockSkew = time.Minute

// CA is a loaded development CA.
type CA struct {
	Dir         string
	TrustDomain spiffeid.TrustDomain
	Cert        *x509.Certificate
	key         *ecdsa.PrivateKey
}

// Init creates a CA for trustDomain in dir (created 0700). It refuses to
// overwrite an existing CA.
func Init(dir, trustDomain string, now time.Time) (*CA, error) {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil || strings.Contains(trustDomain, "/") {
		return nil, fmt.Errorf("--trust-domain %q: write a trust domain name like airlock.local", trustDomain)
	}
	for _, f := range []string{CACertFile, CAKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return nil, fmt.Errorf("a CA already exists in %s: remove it first or pass another --dir", dir)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("check %s: %w", dir, err)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate the CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"airlock development CA"}, CommonName: td.Name()},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(DefaultCATTL),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the CA directory: %w", err)
	}
	if err := writeNew(filepath.Join(dir, CAKeyFile), pemBlock("PRIVATE KEY", keyDER), 0o600); err != nil {
		return nil, err
	}
	if err := writeNew(filepath.Join(dir, CACertFile), pemBlock("CERTIFICATE", der), 0o644); err != nil {
		return nil, err
	}
	return &CA{Dir: dir, TrustDomain: td, Cert: cert, key: key}, nil
}

// Load loads the CA in dir.
func Load(dir string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("read the CA certificate: %w: create a CA with `airlock dev ca init --dir %s`", err, dir)
	}
	keyPath := filepath.Join(dir, CAKeyFile)
	fi, err := os.Stat(keyPath)
	if err != nil {
		return nil, fmt.Errorf("read the CA key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("the CA key %s is readable by others (mode %v): chmod 600 it", keyPath, fi.Mode().Perm())
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("read the CA key: %w", err)
	}
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, CACertFile), err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || kb.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PKCS#8 PRIVATE KEY block", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s is not the ECDSA key of %s", keyPath, CACertFile)
	}
	if len(cert.URIs) != 1 {
		return nil, fmt.Errorf("%s: the CA certificate names no trust domain (one spiffe:// URI SAN)", CACertFile)
	}
	td, err := spiffeid.TrustDomainFromURI(cert.URIs[0])
	if err != nil {
		return nil, fmt.Errorf("%s: %w", CACertFile, err)
	}
	return &CA{Dir: dir, TrustDomain: td, Cert: cert, key: key}, nil
}

// SVID is an issued X.509-SVID in PEM.
type SVID struct {
	ID        spiffeid.ID
	NotAfter  time.Time
	CertPEM   []byte // the chain, leaf first
	KeyPEM    []byte // PKCS#8
	BundlePEM []byte // the CA certificate
}

// Issue issues an X.509-SVID for id, valid for ttl (DefaultSVIDTTL when 0,
// at most MaxSVIDTTL, never beyond the CA's own expiry). id must be in the
// CA's trust domain and have a path; spiffe://airlock.local/uid/... is
// refused, since that namespace names local callers on the unix socket.
func (ca *CA) Issue(id string, ttl time.Duration, now time.Time) (*SVID, error) {
	sid, err := spiffeid.FromString(id)
	if err != nil {
		return nil, fmt.Errorf("spiffe id %q: %w: write spiffe://%s/agent/NAME", id, err, ca.TrustDomain.Name())
	}
	if sid.TrustDomain() != ca.TrustDomain {
		return nil, fmt.Errorf("spiffe id %s is not in this CA's trust domain %s", id, ca.TrustDomain.Name())
	}
	if sid.Path() == "" {
		return nil, fmt.Errorf("spiffe id %s has no path: an SVID names a workload, like spiffe://%s/agent/NAME", id, ca.TrustDomain.Name())
	}
	if sid.TrustDomain().Name() == "airlock.local" && strings.HasPrefix(sid.Path(), "/uid/") {
		return nil, fmt.Errorf("spiffe id %s: /uid/ in airlock.local names local callers on the unix socket; the mTLS listener refuses it", id)
	}
	switch {
	case ttl == 0:
		ttl = DefaultSVIDTTL
	case ttl < 0 || ttl > MaxSVIDTTL:
		return nil, fmt.Errorf("--ttl %s: use a positive duration of at most %s", ttl, MaxSVIDTTL)
	}
	notAfter := now.Add(ttl)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("the CA in %s expired at %s: create a new one", ca.Dir, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate the SVID key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"airlock development"}},
		URIs:                  []*url.URL{sid.URL()},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign the SVID: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &SVID{
		ID: sid, NotAfter: notAfter,
		CertPEM:   pemBlock("CERTIFICATE", der),
		KeyPEM:    pemBlock("PRIVATE KEY", keyDER),
		BundlePEM: pemBlock("CERTIFICATE", ca.Cert.Raw),
	}, nil
}

// Write writes the SVID into dir (created 0700) as svid.pem, svid.key
// (0600) and bundle.pem, replacing earlier files, and returns their paths.
func (s *SVID) Write(dir string) (cert, key, bundle string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", "", fmt.Errorf("create %s: %w", dir, err)
	}
	cert, key, bundle = filepath.Join(dir, SVIDFile), filepath.Join(dir, KeyFile), filepath.Join(dir, BundleFile)
	if err := replace(key, s.KeyPEM, 0o600); err != nil {
		return "", "", "", err
	}
	if err := replace(cert, s.CertPEM, 0o644); err != nil {
		return "", "", "", err
	}
	if err := replace(bundle, s.BundlePEM, 0o644); err != nil {
		return "", "", "", err
	}
	return cert, key, bundle, nil
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate a serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func parseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE block")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// writeNew creates path with mode; it fails if path exists.
func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// replace writes b to path with mode through a temporary file and a rename,
// so that the mode holds from the first byte and readers never see half a
// file.
func replace(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	if err := writeNew(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}
