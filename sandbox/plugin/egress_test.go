package plugin

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
)

// The egress proxy of an isolated plugin accepts only processes in the
// plugin's PID namespace: a host process of the same uid is refused.
func TestSamePIDNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("a new PID namespace needs root here")
	}
	cmd := exec.Command("sleep", "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	child, self := int32(cmd.Process.Pid), int32(os.Getpid())
	if !samePIDNamespace(cmd.Process.Pid)(child) {
		t.Error("the plugin's own namespace was refused")
	}
	if samePIDNamespace(cmd.Process.Pid)(self) {
		t.Error("a host process was accepted as a peer of the isolated plugin")
	}
	if samePIDNamespace(os.Getpid())(child) {
		t.Error("a process of another namespace was accepted")
	}
	if samePIDNamespace(cmd.Process.Pid)(0) || samePIDNamespace(1<<30)(self) {
		t.Error("an unknown peer or plugin was accepted")
	}
}
