// Package redact rewrites secret values out of tool output, error text and
// logs before anything reaches the planner or the audit log.
//
// A Redactor holds the secrets injected into one call. Each secret is
// registered under a name and matched in every form a tool could plausibly
// emit it in:
//
//   - raw bytes;
//   - standard and URL-safe base64, padded and unpadded, and the part of
//     the encoding that is fixed whatever the secret's alignment inside a
//     longer base64 string (so "Basic base64(user:secret)" is caught too);
//   - hex, lower and upper case;
//   - URL-encoded with url.QueryEscape and url.PathEscape;
//   - each of the above as it appears inside a JSON string (quotes,
//     backslashes and control characters escaped; with and without the
//     HTML-safe \u003c \u003e \u0026 escapes encoding/json applies).
//
// Every occurrence of any form is replaced by "[REDACTED:<name>]".
// Overlapping occurrences (a secret inside another secret's encoding, two
// secrets sharing bytes) are merged and replaced once, so no fragment of
// either survives.
//
// Matching uses one Aho-Corasick automaton over all forms of all secrets,
// rebuilt on Add: a Redact call is a single pass over the input whatever
// the number of secrets. Sizes are bounded (MaxSecretBytes, MaxSecrets,
// MaxNameBytes, maxCells) so that a misconfigured secret cannot exhaust
// memory.
//
// Secrets shorter than MinSecretBytes are refused: a short value such as
// "true" or "1234" occurs by chance in ordinary output, and redacting it
// would both garble output and reveal, by its position, what the secret is.
// Injecting such a value is a configuration error the caller must surface.
package redact

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
)

// Bounds on what a Redactor accepts.
const (
	// MinSecretBytes is the shortest secret Add accepts.
	MinSecretBytes = 8
	// MaxSecretBytes is the longest secret Add accepts (a PEM key fits).
	MaxSecretBytes = 16 << 10
	// MaxSecrets is the most secrets one Redactor holds.
	MaxSecrets = 64
	// MaxNameBytes is the longest secret name.
	MaxNameBytes = 128
)

// maxCells bounds the automaton's transition table (states x byte classes,
// 4 bytes each): 16M cells is 64 MiB, far above any real call's needs.
const maxCells = 16 << 20

// ErrTooShort is returned by Add for a secret shorter than MinSecretBytes.
var ErrTooShort = errors.New("secret is too short to redact safely")

// Redactor rewrites registered secrets out of byte strings. The zero value
// is ready to use and redacts nothing. It is safe for concurrent use: Add
// may run while other goroutines call Redact (a Redact that starts after an
// Add returned sees its secret).
//
// Add only records the secret; the matcher is built by the first Redact
// after it, so registering a call's secrets one by one costs one build.
type Redactor struct {
	mu       sync.Mutex // guards secrets, patBytes, built
	secrets  []secret
	patBytes int
	built    bool                    // m matches secrets
	m        atomic.Pointer[matcher] // nil: nothing to redact
	stale    atomic.Bool             // an Add since the last build
}

type secret struct {
	name  string
	forms []string
}

// New returns an empty Redactor.
func New() *Redactor { return &Redactor{} }

// Add registers secret under name. name must be 1 to MaxNameBytes of
// letters, digits and ._:/@- (it is written into output as
// "[REDACTED:name]"); secret must be MinSecretBytes to MaxSecretBytes long.
// Adding the same value twice is harmless; the first name wins in output.
func (r *Redactor) Add(name string, secret []byte) error {
	if err := checkName(name); err != nil {
		return err
	}
	switch {
	case len(secret) < MinSecretBytes:
		return fmt.Errorf("redact: secret %q is %d bytes: %w (at least %d bytes): use a longer credential value", name, len(secret), ErrTooShort, MinSecretBytes)
	case len(secret) > MaxSecretBytes:
		return fmt.Errorf("redact: secret %q is %d bytes, more than the %d bytes a redactor accepts", name, len(secret), MaxSecretBytes)
	}
	fs := forms(string(secret))
	n := 0
	for _, f := range fs {
		n += len(f)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.secrets) >= MaxSecrets {
		return fmt.Errorf("redact: cannot add secret %q: a redactor holds at most %d secrets", name, MaxSecrets)
	}
	// Every pattern byte is at most one state; 256 classes at most.
	if (r.patBytes+n+1)*256 > maxCells {
		return fmt.Errorf("redact: cannot add secret %q: the secrets are too large together (%d pattern bytes): register fewer or shorter secrets", name, r.patBytes+n)
	}
	r.secrets = append(r.secrets, secretOf(name, fs))
	r.patBytes += n
	r.built = false
	r.stale.Store(true)
	return nil
}

// matcher returns the matcher for the secrets added so far, building it if
// an Add came since the last build.
func (r *Redactor) matcher() *matcher {
	if !r.stale.Load() {
		return r.m.Load()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.built {
		r.m.Store(build(r.secrets))
		r.built = true
		r.stale.Store(false)
	}
	return r.m.Load()
}

func secretOf(name string, fs []string) secret { return secret{name: name, forms: fs} }

func checkName(name string) error {
	if name == "" || len(name) > MaxNameBytes {
		return fmt.Errorf("redact: secret name %q must be 1 to %d bytes", name, MaxNameBytes)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("._:/@-", c) >= 0) {
			return fmt.Errorf("redact: secret name %q: character %q is not allowed: use letters, digits and ._:/@-", name, c)
		}
	}
	return nil
}

// Len returns the number of registered secrets.
func (r *Redactor) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.secrets)
}

// Redact returns b with every occurrence of every form of every registered
// secret replaced by "[REDACTED:<name>]". When nothing matches it returns
// b itself (not a copy); otherwise a new slice. A nil Redactor redacts
// nothing.
func (r *Redactor) Redact(b []byte) []byte {
	if r == nil {
		return b
	}
	m := r.matcher()
	if m == nil {
		return b
	}
	return m.redact(b)
}

// RedactString is Redact for strings.
func (r *Redactor) RedactString(s string) string {
	if r == nil || r.matcher() == nil {
		return s
	}
	out := r.Redact([]byte(s))
	return string(out)
}

// Writer returns an io.Writer that redacts each Write before passing it to
// w. Each Write is redacted as a unit, so a secret split across two Writes
// is not caught: use it where every Write is a whole record, as zerolog
// writes one whole event per Write. It reports len(p) written on success.
func (r *Redactor) Writer(w io.Writer) io.Writer { return &writer{r: r, w: w} }

type writer struct {
	r *Redactor
	w io.Writer
}

func (w *writer) Write(p []byte) (int, error) {
	if _, err := w.w.Write(w.r.Redact(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// forms returns every encoded form of v that Redact looks for.
func forms(v string) []string {
	b := []byte(v)
	base := []string{
		v,
		hex.EncodeToString(b),
		strings.ToUpper(hex.EncodeToString(b)),
		url.QueryEscape(v),
		url.PathEscape(v),
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
		base = append(base, enc.EncodeToString(b), enc.WithPadding(base64.NoPadding).EncodeToString(b))
		base = append(base, shiftedBase64(enc, b)...)
	}
	var out []string
	seen := map[string]bool{}
	add := func(s string) {
		if len(s) >= MinSecretBytes && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, f := range base {
		add(f)
		add(jsonEscape(f, false))
		add(jsonEscape(f, true))
	}
	return out
}

// shiftedBase64 returns, for the secret starting 1 and 2 bytes into a
// 3-byte base64 group, the run of characters that depend on the secret's
// bytes alone: the secret as it appears inside any longer base64 string.
func shiftedBase64(enc *base64.Encoding, b []byte) []string {
	var out []string
	raw := enc.WithPadding(base64.NoPadding)
	for shift := 1; shift <= 2; shift++ {
		buf := make([]byte, shift+len(b))
		copy(buf[shift:], b)
		s := raw.EncodeToString(buf)
		// Character i covers bits [6i, 6i+6); keep those inside the secret's
		// bits [8*shift, 8*(shift+len)).
		from := (8*shift + 5) / 6
		to := 8 * (shift + len(b)) / 6
		if to > from {
			out = append(out, s[from:to])
		}
	}
	// The unshifted encoding's fixed part (without its last, partial
	// character) covers a secret at the start of a longer base64 string.
	if to := 8 * len(b) / 6; to > 0 {
		out = append(out, raw.EncodeToString(b)[:to])
	}
	return out
}

// jsonEscape returns s as it appears between the quotes of a JSON string
// written by encoding/json (html true: with its default HTML escaping).
// Invalid UTF-8 comes out as \ufffd, as encoding/json writes it.
func jsonEscape(s string, html bool) string {
	if !html {
		var sb strings.Builder
		enc := json.NewEncoder(&sb)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s) // a string always encodes
		out := strings.TrimSuffix(sb.String(), "\n")
		return out[1 : len(out)-1]
	}
	out, _ := json.Marshal(s)
	return string(out[1 : len(out)-1])
}

// matcher is an immutable Aho-Corasick automaton over all forms of a set of
// secrets, compiled to a DFA over byte classes.
type matcher struct {
	class    [256]uint8 // byte -> class; class 0 is "in no pattern"
	nclass   int
	next     []int32 // state*nclass + class -> state
	outLen   []int32 // longest pattern ending at this state (0: none)
	outName  []int32 // index into names of that pattern's secret
	names    []string
	tags     [][]byte // "[REDACTED:name]" per name
	maxMatch int
}

func build(secrets []secret) *matcher {
	if len(secrets) == 0 {
		return nil
	}
	type pat struct {
		s    string
		name int32
	}
	var pats []pat
	m := &matcher{}
	for i, s := range secrets {
		m.names = append(m.names, s.name)
		m.tags = append(m.tags, []byte("[REDACTED:"+s.name+"]"))
		for _, f := range s.forms {
			pats = append(pats, pat{f, int32(i)})
		}
	}
	// Byte classes: each byte that occurs in a pattern gets its own class.
	m.nclass = 1
	for _, p := range pats {
		for i := 0; i < len(p.s); i++ {
			if m.class[p.s[i]] == 0 {
				if m.nclass == 256 {
					break
				}
				m.class[p.s[i]] = uint8(m.nclass)
				m.nclass++
			}
		}
	}
	// When 255 distinct bytes fill classes 1..255, the one byte left is
	// alone in class 0, so the classes stay exact.
	total := 1
	for _, p := range pats {
		total += len(p.s)
	}
	nc := m.nclass
	// Trie: -1 is "no edge" while building.
	m.next = make([]int32, nc, total*nc)
	for i := range m.next {
		m.next[i] = -1
	}
	m.outLen = []int32{0}
	m.outName = []int32{0}
	newState := func() int32 {
		for range nc {
			m.next = append(m.next, -1)
		}
		m.outLen = append(m.outLen, 0)
		m.outName = append(m.outName, 0)
		return int32(len(m.outLen) - 1)
	}
	for _, p := range pats {
		st := int32(0)
		for i := 0; i < len(p.s); i++ {
			c := int(m.class[p.s[i]])
			n := m.next[int(st)*nc+c]
			if n < 0 {
				n = newState()
				m.next[int(st)*nc+c] = n
			}
			st = n
		}
		if int32(len(p.s)) > m.outLen[st] {
			m.outLen[st], m.outName[st] = int32(len(p.s)), p.name
		}
		m.maxMatch = max(m.maxMatch, len(p.s))
	}
	// BFS: fill failure transitions so next is a complete DFA, and inherit
	// the longest output along the failure chain.
	fail := make([]int32, len(m.outLen))
	queue := make([]int32, 0, len(m.outLen))
	for c := 0; c < nc; c++ {
		n := m.next[c]
		if n < 0 {
			m.next[c] = 0
		} else {
			fail[n] = 0
			queue = append(queue, n)
		}
	}
	for len(queue) > 0 {
		st := queue[0]
		queue = queue[1:]
		if f := fail[st]; m.outLen[f] > m.outLen[st] {
			m.outLen[st], m.outName[st] = m.outLen[f], m.outName[f]
		}
		for c := 0; c < nc; c++ {
			n := m.next[int(st)*nc+c]
			fn := m.next[int(fail[st])*nc+c]
			if n < 0 {
				m.next[int(st)*nc+c] = fn
			} else {
				fail[n] = fn
				queue = append(queue, n)
			}
		}
	}
	return m
}

// span is a matched range of the input and the secret it belongs to.
type span struct {
	start, end int
	name       int32
}

func (m *matcher) redact(b []byte) []byte {
	var spans []span
	nc := int32(m.nclass)
	st := int32(0)
	for i := 0; i < len(b); i++ {
		st = m.next[st*nc+int32(m.class[b[i]])]
		l := m.outLen[st]
		if l == 0 {
			continue
		}
		sp := span{start: i + 1 - int(l), end: i + 1, name: m.outName[st]}
		// Merge with earlier overlapping spans: the union is redacted once.
		for len(spans) > 0 && sp.start < spans[len(spans)-1].end {
			top := spans[len(spans)-1]
			spans = spans[:len(spans)-1]
			if top.start <= sp.start {
				sp.name = top.name
				sp.start = top.start
			}
			sp.end = max(sp.end, top.end)
		}
		spans = append(spans, sp)
	}
	if len(spans) == 0 {
		return b
	}
	// The stack is sorted by start and free of overlaps.
	size := len(b)
	for _, sp := range spans {
		size += len(m.tags[sp.name]) - (sp.end - sp.start)
	}
	out := make([]byte, 0, size)
	at := 0
	for _, sp := range spans {
		out = append(out, b[at:sp.start]...)
		out = append(out, m.tags[sp.name]...)
		at = sp.end
	}
	return append(out, b[at:]...)
}
