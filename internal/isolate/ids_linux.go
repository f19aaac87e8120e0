package isolate

import "os"

func sandboxIDs() (int, int) {
	if os.Geteuid() == 0 {
		return SandboxUser, SandboxUser
	}
	return os.Getuid(), os.Getgid()
}
