package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// GenesisHash is the PrevHash of the first event of a chain: 64 zeros.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// MaxBodySize bounds the canonical body of one event (1 MiB). Seal refuses
// larger events and Verify reports larger stored bodies as edited: events
// carry digests and short facts, never payloads.
const MaxBodySize = 1 << 20

// Record is an audit event as stored: the exact hashed body and its hash.
// store.Record is an alias of this type.
type Record struct {
	Seq  int64
	Hash string
	// Body is the canonical JSON the hash was computed over.
	Body []byte
}

// Seal links ev into the chain after the event whose hash is prevHash
// (GenesisHash for the first event). It sets ev.PrevHash, normalizes ev.Time
// to UTC, computes the canonical body, sets ev.Hash to the hex SHA-256 of
// that body and returns the body, which is what must be stored.
//
// The canonical body is encoding/json of the Event (fixed field order, Time
// in UTC RFC 3339 with nanoseconds, Hash excluded, Details keys sorted and
// numbers kept as written). Because the body includes prev_hash, the hash
// covers the link to the previous event. ev.Seq must already be set (>= 1)
// and ev.ID, ev.Type and ev.Time must be non-empty.
func Seal(ev *Event, prevHash string) ([]byte, error) {
	if ev == nil {
		return nil, errors.New("seal audit event: event is nil")
	}
	if !validHash(prevHash) {
		return nil, fmt.Errorf("seal audit event %q: prev hash %q is not 64 lowercase hex characters", ev.ID, prevHash)
	}
	switch {
	case ev.Seq < 1:
		return nil, fmt.Errorf("seal audit event %q: seq is %d: the store must assign seq >= 1 before sealing", ev.ID, ev.Seq)
	case ev.ID == "":
		return nil, fmt.Errorf("seal audit event at seq %d: id is empty: give every event an id (ids.New(\"evt\"))", ev.Seq)
	case ev.Type == "":
		return nil, fmt.Errorf("seal audit event %q: type is empty: set one of the audit.Type* constants", ev.ID)
	case ev.Time.IsZero():
		return nil, fmt.Errorf("seal audit event %q: time is zero: set the time the event happened", ev.ID)
	}
	ev.Time = ev.Time.UTC()
	ev.PrevHash = prevHash
	ev.Hash = ""
	raw, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("seal audit event %q: marshal: %w: details must hold only JSON-encodable values", ev.ID, err)
	}
	if len(raw) > MaxBodySize {
		return nil, fmt.Errorf("seal audit event %q: body is %d bytes, over the %d-byte limit: record digests and sizes, not payloads", ev.ID, len(raw), MaxBodySize)
	}
	body := raw
	if (len(ev.Details) > 0 && !plainDetails(ev.Details)) || bytes.Contains(raw, []byte(`\ufffd`)) {
		// Normalize once through the decoded form so that Verify can check
		// that a stored body is exactly the re-marshaling of what it
		// decodes to. Two things do not round-trip on their own: Details,
		// the only field of dynamic type (struct values become sorted-key
		// objects; numbers keep their text), and invalid UTF-8, which
		// marshals as the escape \ufffd but re-marshals as the raw
		// character. Everything else is a concrete type that round-trips
		// exactly.
		decoded, err := decodeBody(raw)
		if err != nil {
			return nil, fmt.Errorf("seal audit event %q: %w", ev.ID, err)
		}
		if body, err = json.Marshal(decoded); err != nil {
			return nil, fmt.Errorf("seal audit event %q: re-marshal: %w", ev.ID, err)
		}
	}
	sum := sha256.Sum256(body)
	ev.Hash = hex.EncodeToString(sum[:])
	return body, nil
}

// plainDetails reports whether every detail is a value whose JSON encoding
// survives a decode (with UseNumber) and re-encode unchanged: strings,
// booleans, nil, integers, json.Number and finite floats. Then the first
// encoding is already canonical and Seal skips the round trip.
func plainDetails(d map[string]any) bool {
	for _, v := range d {
		switch x := v.(type) {
		case nil, string, bool, int, int32, int64, uint32, json.Number:
		case float64:
			if math.IsInf(x, 0) || math.IsNaN(x) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// Decode parses a stored canonical body back into an Event and sets its Hash
// to the SHA-256 of the body. It does not check the chain; use Verify.
func Decode(body []byte) (*Event, error) {
	if len(body) > MaxBodySize {
		return nil, fmt.Errorf("decode audit event: body is %d bytes, over the %d-byte limit", len(body), MaxBodySize)
	}
	ev, err := decodeBody(body)
	if err != nil {
		return nil, fmt.Errorf("decode audit event: %w", err)
	}
	sum := sha256.Sum256(body)
	ev.Hash = hex.EncodeToString(sum[:])
	return ev, nil
}

func decodeBody(body []byte) (*Event, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var ev Event
	if err := dec.Decode(&ev); err != nil {
		return nil, fmt.Errorf("body is not a valid event: %w", err)
	}
	if dec.More() {
		return nil, errors.New("body is not a valid event: trailing data after the JSON object")
	}
	return &ev, nil
}

func validHash(h string) bool {
	if len(h) != sha256.Size*2 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// MaxProblems is how many problems a Report lists; further ones are only
// counted in Report.Omitted.
const MaxProblems = 100

// ProblemKind classifies a chain problem.
type ProblemKind string

// Problem kinds.
const (
	// ProblemMissing: one or more sequence numbers are absent (deleted).
	ProblemMissing ProblemKind = "missing"
	// ProblemEdited: the body does not hash to the stored hash, is not a
	// valid event, or is not in canonical form.
	ProblemEdited ProblemKind = "edited"
	// ProblemReordered: the seq inside the body differs from the stored seq.
	ProblemReordered ProblemKind = "reordered"
	// ProblemBrokenLink: the body's prev_hash is not the previous event's
	// hash (an event before it was deleted, replaced or moved).
	ProblemBrokenLink ProblemKind = "broken_link"
	// ProblemUnreadable: the records could not be read; verification stopped.
	ProblemUnreadable ProblemKind = "unreadable"
)

// Problem is one place where the chain does not hold.
type Problem struct {
	// Seq is the stored sequence number the problem is found at (for
	// ProblemMissing, the first missing one).
	Seq int64
	// EventID is the id from the event's body, when it could be read.
	EventID string
	Kind    ProblemKind
	// Message says what happened, in words an operator can act on.
	Message string
}

// String returns the message.
func (p Problem) String() string { return p.Message }

// Head is the last event of a verified chain.
type Head struct {
	Seq  int64
	Hash string
}

// Report is the result of Verify.
//
// Truncating the TAIL of the chain (deleting the newest events) leaves a
// shorter chain that is still valid: the chain alone cannot detect it.
// Operators anchor the chain by recording Head (seq and hash) somewhere
// else — logs, a ticket, another system — and comparing later heads
// against it: a later head must have a seq at least as large, and the event
// at the anchored seq must still have the anchored hash.
type Report struct {
	// Count is the number of records read.
	Count int64
	// Head is the last record read (zero for an empty chain).
	Head Head
	// Problems lists the first MaxProblems problems, in seq order.
	Problems []Problem
	// Omitted counts problems beyond MaxProblems.
	Omitted int
}

// OK reports whether the chain verified without any problem.
func (r Report) OK() bool { return len(r.Problems) == 0 && r.Omitted == 0 }

// String summarizes the report on one line per problem.
func (r Report) String() string {
	var b strings.Builder
	if r.OK() {
		fmt.Fprintf(&b, "audit chain ok: %d events, head seq %d hash %s", r.Count, r.Head.Seq, r.Head.Hash)
		return b.String()
	}
	fmt.Fprintf(&b, "audit chain BROKEN: %d events read, %d problems", r.Count, len(r.Problems)+r.Omitted)
	for _, p := range r.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.Message)
	}
	if r.Omitted > 0 {
		fmt.Fprintf(&b, "\n  ... and %d more", r.Omitted)
	}
	return b.String()
}

func (r *Report) add(p Problem) {
	if len(r.Problems) >= MaxProblems {
		r.Omitted++
		return
	}
	r.Problems = append(r.Problems, p)
}

// Verify walks the records returned by next, which must yield them in
// ascending stored seq and return ok=false after the last one, and checks
// the hash chain:
//
//   - seq starts at 1 and is contiguous (a gap means events were deleted);
//   - the seq inside each body equals its stored seq (else reordered);
//   - each body's prev_hash equals the previous record's stored hash
//     (GenesisHash for seq 1), else events before it were deleted or
//     reordered;
//   - SHA-256 of each body equals its stored hash and the body is in the
//     canonical form Seal produces (else the event was edited).
//
// Every problem is reported (the first MaxProblems listed). A read error
// from next stops verification and is reported as ProblemUnreadable.
// Deleting the newest events is not detectable here: see Report.
func Verify(next func() (Record, bool, error)) Report {
	var (
		rep      Report
		prevSeq  int64
		prevHash = GenesisHash
	)
	for {
		rec, ok, err := next()
		if err != nil {
			rep.add(Problem{
				Seq:  prevSeq + 1,
				Kind: ProblemUnreadable,
				Message: fmt.Sprintf("cannot read the audit log after event %d: %v: the chain is verified only up to event %d; fix the store and verify again",
					prevSeq, err, prevSeq),
			})
			return rep
		}
		if !ok {
			return rep
		}
		rep.Count++
		rep.Head = Head{Seq: rec.Seq, Hash: rec.Hash}

		if rec.Seq <= prevSeq {
			rep.add(Problem{Seq: rec.Seq, Kind: ProblemReordered,
				Message: fmt.Sprintf("event %d appears after event %d: records are duplicated or out of order", rec.Seq, prevSeq)})
			prevHash = rec.Hash
			continue
		}
		gap := rec.Seq != prevSeq+1
		if gap {
			rep.add(missing(prevSeq, rec.Seq))
		}

		label := fmt.Sprintf("event %d", rec.Seq)
		ev, decErr := decodeBounded(rec.Body)
		if decErr == nil && ev.ID != "" {
			label = fmt.Sprintf("event %d (%s)", rec.Seq, ev.ID)
		}
		id := ""
		if ev != nil {
			id = ev.ID
		}

		sum := sha256.Sum256(rec.Body)
		switch {
		case hex.EncodeToString(sum[:]) != rec.Hash:
			rep.add(Problem{Seq: rec.Seq, EventID: id, Kind: ProblemEdited,
				Message: fmt.Sprintf("%s was edited: its hash does not match its body", label)})
		case decErr != nil:
			rep.add(Problem{Seq: rec.Seq, EventID: id, Kind: ProblemEdited,
				Message: fmt.Sprintf("%s was edited: %v", label, decErr)})
		default:
			if canon, err := json.Marshal(ev); err != nil || !bytes.Equal(canon, rec.Body) {
				rep.add(Problem{Seq: rec.Seq, EventID: id, Kind: ProblemEdited,
					Message: fmt.Sprintf("%s was edited: its body is not in canonical form", label)})
			}
		}

		if ev != nil {
			switch {
			case ev.Seq != rec.Seq:
				rep.add(Problem{Seq: rec.Seq, EventID: id, Kind: ProblemReordered,
					Message: fmt.Sprintf("%s is stored at seq %d but its body says seq %d: events were reordered or renumbered", label, rec.Seq, ev.Seq)})
			case ev.PrevHash != prevHash && !gap:
				// After a gap the broken link is explained by the deletion
				// already reported.
				what := fmt.Sprintf("event %d", prevSeq)
				if prevSeq == 0 {
					what = "the start of the chain"
				}
				rep.add(Problem{Seq: rec.Seq, EventID: id, Kind: ProblemBrokenLink,
					Message: fmt.Sprintf("%s does not follow %s: events were deleted or reordered", label, what)})
			}
		}
		prevSeq = rec.Seq
		prevHash = rec.Hash
	}
}

func decodeBounded(body []byte) (*Event, error) {
	if len(body) > MaxBodySize {
		return nil, fmt.Errorf("body is %d bytes, over the %d-byte limit", len(body), MaxBodySize)
	}
	return decodeBody(body)
}

func missing(prevSeq, seq int64) Problem {
	first, last := prevSeq+1, seq-1
	var msg string
	switch {
	case prevSeq == 0 && first == last:
		msg = fmt.Sprintf("event %d is missing: the chain starts at event %d — it was deleted", first, seq)
	case prevSeq == 0:
		msg = fmt.Sprintf("events %d-%d are missing: the chain starts at event %d — they were deleted", first, last, seq)
	case first == last:
		msg = fmt.Sprintf("event %d is missing: events %d and %d are adjacent — it was deleted", first, prevSeq, seq)
	default:
		msg = fmt.Sprintf("events %d-%d are missing: events %d and %d are adjacent — they were deleted", first, last, prevSeq, seq)
	}
	return Problem{Seq: first, Kind: ProblemMissing, Message: msg}
}
