package audit_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/runtime/audit"
)

// chain seals n events and returns their stored records.
func chain(t testing.TB, n int) []audit.Record {
	t.Helper()
	recs := make([]audit.Record, 0, n)
	prev := audit.GenesisHash
	base := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.FixedZone("CET", 3600))
	for i := 1; i <= n; i++ {
		ev := &audit.Event{
			Seq:        int64(i),
			ID:         fmt.Sprintf("evt_%04d", i),
			Time:       base.Add(time.Duration(i) * time.Millisecond),
			Type:       audit.TypeDecision,
			Caller:     "spiffe://example.org/agent",
			TaskID:     "tsk_1",
			Tool:       &audit.ToolRef{Name: "http.fetch", Version: "1.0.0"},
			ArgsSHA256: strings.Repeat("ab", 32),
			Decision:   &audit.Decision{Effect: "allow", Rules: []string{"r1"}},
			Details:    map[string]any{"n": i, "big": uint64(1) << 63, "s": struct{ B, A int }{1, 2}},
		}
		body, err := audit.Seal(ev, prev)
		if err != nil {
			t.Fatalf("seal %d: %v", i, err)
		}
		recs = append(recs, audit.Record{Seq: ev.Seq, Hash: ev.Hash, Body: body})
		prev = ev.Hash
	}
	return recs
}

func iter(recs []audit.Record) func() (audit.Record, bool, error) {
	i := 0
	return func() (audit.Record, bool, error) {
		if i == len(recs) {
			return audit.Record{}, false, nil
		}
		i++
		return recs[i-1], true, nil
	}
}

func TestSealSetsLinkAndHash(t *testing.T) {
	ev := &audit.Event{Seq: 1, ID: "evt_a", Type: audit.TypeExecution,
		Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", -7200))}
	body, err := audit.Seal(ev, audit.GenesisHash)
	if err != nil {
		t.Fatal(err)
	}
	if ev.PrevHash != audit.GenesisHash {
		t.Errorf("PrevHash = %q", ev.PrevHash)
	}
	sum := sha256.Sum256(body)
	if ev.Hash != hex.EncodeToString(sum[:]) {
		t.Errorf("Hash %s is not sha256 of body", ev.Hash)
	}
	want := `{"seq":1,"id":"evt_a","time":"2026-01-02T05:04:05.000000006Z","type":"execution","prev_hash":"` + audit.GenesisHash + `"}`
	if string(body) != want {
		t.Errorf("body\n got %s\nwant %s", body, want)
	}
	if strings.Contains(string(body), ev.Hash) {
		t.Error("body contains its own hash")
	}
	// Sealing the same event again gives the same body: it is canonical.
	again, err := audit.Seal(ev, audit.GenesisHash)
	if err != nil || string(again) != string(body) {
		t.Errorf("reseal differs: %s %v", again, err)
	}
	// A different link gives a different hash.
	other := *ev
	if _, err := audit.Seal(&other, strings.Repeat("1", 64)); err != nil {
		t.Fatal(err)
	}
	if other.Hash == ev.Hash {
		t.Error("hash does not cover prev_hash")
	}
}

func TestSealRejectsBadInput(t *testing.T) {
	now := time.Now()
	cases := map[string]struct {
		ev   *audit.Event
		prev string
		want string
	}{
		"nil":        {nil, audit.GenesisHash, "event is nil"},
		"short prev": {&audit.Event{Seq: 1, ID: "e", Type: "t", Time: now}, "abc", "prev hash"},
		"upper prev": {&audit.Event{Seq: 1, ID: "e", Type: "t", Time: now}, strings.Repeat("A", 64), "prev hash"},
		"seq 0":      {&audit.Event{ID: "e", Type: "t", Time: now}, audit.GenesisHash, "seq is 0"},
		"no id":      {&audit.Event{Seq: 1, Type: "t", Time: now}, audit.GenesisHash, "id is empty"},
		"no type":    {&audit.Event{Seq: 1, ID: "e", Time: now}, audit.GenesisHash, "type is empty"},
		"no time":    {&audit.Event{Seq: 1, ID: "e", Type: "t"}, audit.GenesisHash, "time is zero"},
		"bad detail": {&audit.Event{Seq: 1, ID: "e", Type: "t", Time: now, Details: map[string]any{"f": func() {}}}, audit.GenesisHash, "marshal"},
		"too big": {&audit.Event{Seq: 1, ID: "e", Type: "t", Time: now,
			Details: map[string]any{"x": strings.Repeat("a", audit.MaxBodySize)}}, audit.GenesisHash, "limit"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := audit.Seal(c.ev, c.prev)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestVerifyValidChain(t *testing.T) {
	recs := chain(t, 50)
	rep := audit.Verify(iter(recs))
	if !rep.OK() {
		t.Fatalf("valid chain reported broken:\n%s", rep)
	}
	if rep.Count != 50 || rep.Head.Seq != 50 || rep.Head.Hash != recs[49].Hash {
		t.Fatalf("count/head wrong: %+v", rep)
	}
	empty := audit.Verify(iter(nil))
	if !empty.OK() || empty.Count != 0 || empty.Head.Seq != 0 {
		t.Fatalf("empty chain: %+v", empty)
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	recs := chain(t, 1)
	ev, err := audit.Decode(recs[0].Body)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Hash != recs[0].Hash || ev.ID != "evt_0001" || ev.Details["big"].(fmt.Stringer).String() != "9223372036854775808" {
		t.Fatalf("decoded %+v", ev)
	}
}

func onlyProblem(t *testing.T, rep audit.Report, kind audit.ProblemKind, seq int64, msg string) {
	t.Helper()
	if len(rep.Problems) != 1 {
		t.Fatalf("want exactly one problem, got:\n%s", rep)
	}
	p := rep.Problems[0]
	if p.Kind != kind || p.Seq != seq || p.Message != msg {
		t.Fatalf("problem = %+v\nwant kind %s seq %d message %q", p, kind, seq, msg)
	}
}

func TestVerifyEditedBody(t *testing.T) {
	recs := chain(t, 10)
	recs[4].Body = []byte(strings.Replace(string(recs[4].Body), `"effect":"allow"`, `"effect":"deny"`, 1))
	onlyProblem(t, audit.Verify(iter(recs)), audit.ProblemEdited, 5, "event 5 (evt_0005) was edited: its hash does not match its body")
}

func TestVerifyEditedBodyAndHash(t *testing.T) {
	// An attacker who also recomputes the hash breaks the next link.
	recs := chain(t, 10)
	recs[4].Body = []byte(strings.Replace(string(recs[4].Body), `"effect":"allow"`, `"effect":"deny"`, 1))
	sum := sha256.Sum256(recs[4].Body)
	recs[4].Hash = hex.EncodeToString(sum[:])
	onlyProblem(t, audit.Verify(iter(recs)), audit.ProblemBrokenLink, 6, "event 6 (evt_0006) does not follow event 5: events were deleted or reordered")
}

func TestVerifyNonCanonicalBody(t *testing.T) {
	recs := chain(t, 3)
	// Same JSON meaning, different bytes, hash recomputed: still an edit.
	recs[2].Body = append([]byte(" "), recs[2].Body...)
	sum := sha256.Sum256(recs[2].Body)
	recs[2].Hash = hex.EncodeToString(sum[:])
	onlyProblem(t, audit.Verify(iter(recs)), audit.ProblemEdited, 3, "event 3 (evt_0003) was edited: its body is not in canonical form")

	recs = chain(t, 3)
	recs[2].Body = []byte(`{"seq":3,"unknown":1}`)
	sum = sha256.Sum256(recs[2].Body)
	recs[2].Hash = hex.EncodeToString(sum[:])
	rep := audit.Verify(iter(recs))
	if rep.OK() || rep.Problems[0].Kind != audit.ProblemEdited || !strings.Contains(rep.Problems[0].Message, "not a valid event") {
		t.Fatalf("unknown field not reported:\n%s", rep)
	}
}

func TestVerifyDeleted(t *testing.T) {
	recs := chain(t, 10)
	del := append(append([]audit.Record{}, recs[:4]...), recs[5:]...) // delete seq 5
	onlyProblem(t, audit.Verify(iter(del)), audit.ProblemMissing, 5, "event 5 is missing: events 4 and 6 are adjacent — it was deleted")

	del = append(append([]audit.Record{}, recs[:3]...), recs[6:]...) // delete 4-6
	onlyProblem(t, audit.Verify(iter(del)), audit.ProblemMissing, 4, "events 4-6 are missing: events 3 and 7 are adjacent — they were deleted")

	onlyProblem(t, audit.Verify(iter(recs[1:])), audit.ProblemMissing, 1, "event 1 is missing: the chain starts at event 2 — it was deleted")
}

func TestVerifyDeletedAndRenumbered(t *testing.T) {
	// Delete seq 5 and renumber the rest so there is no gap: the bodies
	// still carry their seq and prev_hash.
	recs := chain(t, 8)
	del := append(append([]audit.Record{}, recs[:4]...), recs[5:]...)
	for i := range del {
		del[i].Seq = int64(i + 1)
	}
	rep := audit.Verify(iter(del))
	if rep.OK() || rep.Problems[0].Seq != 5 || rep.Problems[0].Kind != audit.ProblemReordered {
		t.Fatalf("renumbering not detected at 5:\n%s", rep)
	}
}

func TestVerifySwapped(t *testing.T) {
	recs := chain(t, 10)
	recs[4], recs[5] = recs[5], recs[4]
	recs[4].Seq, recs[5].Seq = 5, 6 // stored seq swapped, bodies moved
	rep := audit.Verify(iter(recs))
	want := []string{
		"event 5 (evt_0006) is stored at seq 5 but its body says seq 6: events were reordered or renumbered",
		"event 6 (evt_0005) is stored at seq 6 but its body says seq 5: events were reordered or renumbered",
		"event 7 (evt_0007) does not follow event 6: events were deleted or reordered",
	}
	if len(rep.Problems) != len(want) {
		t.Fatalf("problems:\n%s", rep)
	}
	for i, w := range want {
		if rep.Problems[i].Message != w {
			t.Errorf("problem %d = %q, want %q", i, rep.Problems[i].Message, w)
		}
	}
}

func TestVerifyOutOfOrderIterator(t *testing.T) {
	recs := chain(t, 3)
	recs = append(recs, recs[1])
	rep := audit.Verify(iter(recs))
	if rep.OK() || rep.Problems[0].Kind != audit.ProblemReordered || !strings.Contains(rep.Problems[0].Message, "out of order") {
		t.Fatalf("duplicate not reported:\n%s", rep)
	}
}

func TestVerifyReadErrorStops(t *testing.T) {
	recs := chain(t, 5)
	i := 0
	rep := audit.Verify(func() (audit.Record, bool, error) {
		if i == 3 {
			return audit.Record{}, false, errors.New("disk on fire")
		}
		i++
		return recs[i-1], true, nil
	})
	if rep.OK() || rep.Count != 3 || len(rep.Problems) != 1 || rep.Problems[0].Kind != audit.ProblemUnreadable ||
		!strings.Contains(rep.Problems[0].Message, "disk on fire") {
		t.Fatalf("read error not reported:\n%s", rep)
	}
}

func TestVerifyBoundsProblems(t *testing.T) {
	recs := chain(t, audit.MaxProblems+20)
	for i := range recs {
		recs[i].Hash = strings.Repeat("0", 64)
	}
	rep := audit.Verify(iter(recs))
	if len(rep.Problems) != audit.MaxProblems || rep.Omitted == 0 || rep.OK() {
		t.Fatalf("problems %d omitted %d", len(rep.Problems), rep.Omitted)
	}
}

func TestVerifyTailTruncationIsUndetectable(t *testing.T) {
	// Documented limitation: dropping the newest events leaves a valid,
	// shorter chain. Operators must compare Head against an anchor.
	recs := chain(t, 10)
	rep := audit.Verify(iter(recs[:7]))
	if !rep.OK() || rep.Head.Seq != 7 {
		t.Fatalf("truncated chain: %+v", rep)
	}
}

func BenchmarkSeal(b *testing.B) {
	b.ReportAllocs()
	ev := &audit.Event{Seq: 1, ID: "evt_x", Type: audit.TypeExecution, Time: time.Now(),
		Tool: &audit.ToolRef{Name: "http.fetch"}, Status: "ok", Details: map[string]any{"output_bytes": 123}}
	for b.Loop() {
		if _, err := audit.Seal(ev, audit.GenesisHash); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSealBodyIsCanonical checks, over events with every field kind, that
// the sealed body is exactly what Verify's re-marshaling expects.
func TestSealBodyIsCanonical(t *testing.T) {
	evs := []*audit.Event{
		{Seq: 1, ID: "e1", Type: "t", Time: time.Now()},
		{Seq: 1, ID: "e\xff<&>", Type: "t\u2028", Time: time.Now().In(time.FixedZone("Z", 5)), Caller: "c",
			Tool: &audit.ToolRef{}, Decision: &audit.Decision{Effect: "deny", Rules: []string{}}, Error: &audit.ErrorInfo{Code: "x"},
			Details: map[string]any{}},
		{Seq: 1, ID: "e3", Type: "t", Time: time.Now(), Details: map[string]any{
			"float": 1e21, "neg": -0.5, "nested": map[string]any{"z": []any{1, "a", nil, true}, "a": struct {
				Z int `json:"z"`
				A int `json:"a"`
			}{1, 2}}}},
	}
	for i, ev := range evs {
		body, err := audit.Seal(ev, audit.GenesisHash)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		rep := audit.Verify(iter([]audit.Record{{Seq: 1, Hash: ev.Hash, Body: body}}))
		if !rep.OK() {
			t.Fatalf("event %d: %s\nbody %s", i, rep, body)
		}
	}
}

// FuzzSealVerify checks that whatever strings an event carries, the sealed
// body verifies, and that changing any single byte of it is detected.
func FuzzSealVerify(f *testing.F) {
	f.Add("evt_1", "decision", "spiffe://x/y", "k", "v", 3)
	f.Add("e\xff", "t\u2028<>&", "\x00\x1f\b\f", "\ufffd", "\"\\", 0)
	f.Fuzz(func(t *testing.T, id, typ, caller, key, val string, flip int) {
		if id == "" || typ == "" {
			return
		}
		ev := &audit.Event{Seq: 1, ID: id, Type: typ, Caller: caller, Time: time.Unix(1700000000, 5),
			Details: map[string]any{key: val, "n": len(val)}}
		body, err := audit.Seal(ev, audit.GenesisHash)
		if err != nil {
			t.Fatal(err)
		}
		rec := audit.Record{Seq: 1, Hash: ev.Hash, Body: body}
		if rep := audit.Verify(iter([]audit.Record{rec})); !rep.OK() {
			t.Fatalf("%s\nbody %q", rep, body)
		}
		edited := append([]byte(nil), body...)
		i := (flip%len(edited) + len(edited)) % len(edited)
		edited[i] ^= 0x01
		rec.Body = edited
		if rep := audit.Verify(iter([]audit.Record{rec})); rep.OK() {
			t.Fatalf("flipping byte %d not detected", i)
		}
	})
}
