package cli

import (
	"bytes"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	airlockv1 "github.com/airlock-dev/airlock/planner-api/airlockv1"
)

// What a planner chose reaches the operator's terminal with no control
// character, escape sequence or bidirectional override left: it cannot
// rewrite the lines printed before it or reorder what the operator reads.
func TestPrintApprovalNeutralizesTerminalControls(t *testing.T) {
	hostile := "fine\x1b[2K\r\x1b[1Aapproved by ops\n\u202egnp.exe\u009b31m\x7f\xff"
	a := &airlockv1.Approval{
		Id: "apr_x", Caller: "spiffe://airlock.local/agent/p", Tool: "workspace.write", Risk: "medium",
		Justification: hostile, Message: "a human must approve writes to " + hostile,
		Arguments: `{"path":"publish/` + "\u202e" + `dm.x"}`, ArgumentsSha256: "00",
		CreatedAt: timestamppb.Now(), ExpiresAt: timestamppb.Now(),
	}
	var out bytes.Buffer
	printApproval(&Main{Stdout: &out}, a)
	s := out.String()
	for _, bad := range []string{"\x1b", "\r", "\u202e", "\u009b", "\x7f", "\xff"} {
		if strings.Contains(s, bad) {
			t.Errorf("the output holds %q:\n%q", bad, s)
		}
	}
	for _, want := range []string{`fine\u001b[2K\u000d\u001b[1Aapproved by ops\u000a\u202egnp.exe\u009b31m\u007f\xff`, `"path": "publish/\u202edm.x"`} {
		if !strings.Contains(s, want) {
			t.Errorf("the output lacks %s:\n%s", want, s)
		}
	}
	// The arguments keep their line breaks; each other row is one line.
	if n := strings.Count(s, "\n"); n != 14 {
		t.Errorf("%d lines:\n%s", n, s)
	}
}
