// Command snoop tries every way out of its sandbox it can think of and
// reports, as JSON, what it found: the test asserts it found nothing outside
// its own workspace. Input: {"other": "<name of a sibling directory>"}.
package main

import (
	"encoding/json"
	"io"
	"os"
	"strings"
)

type report struct {
	Found  map[string]string `json:"found"`  // attempt -> what it got
	Errors map[string]string `json:"errors"` // attempt -> why it failed
	Env    []string          `json:"env"`
	Args   []string          `json:"args"`
}

var r = report{Found: map[string]string{}, Errors: map[string]string{}}

func record(name string, s string, err error) {
	if err != nil {
		r.Errors[name] = err.Error()
		return
	}
	r.Found[name] = s
}

func readFile(name, path string) {
	b, err := os.ReadFile(path)
	record(name, string(b), err)
}

func readDir(name, path string) {
	es, err := os.ReadDir(path)
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	record(name, strings.Join(names, ","), err)
}

func main() {
	var in struct {
		Other string `json:"other"`
	}
	b, _ := io.ReadAll(os.Stdin)
	_ = json.Unmarshal(b, &in)
	other := in.Other

	r.Env = os.Environ()
	r.Args = os.Args

	readDir("ls /", "/")
	readFile("read /etc/passwd", "/etc/passwd")
	readDir("ls /etc", "/etc")
	readDir("ls /workspace/../..", "/workspace/../..")
	readDir("ls ../", "../")
	readDir("ls ..", "..")
	readFile("read /proc/self/environ", "/proc/self/environ")
	readDir("ls /workspace/../"+other, "/workspace/../"+other)
	readFile("read /workspace/../"+other+"/secret.txt", "/workspace/../"+other+"/secret.txt")
	readFile("read ../"+other+"/secret.txt", "../"+other+"/secret.txt")

	// Its own workspace works.
	err := os.WriteFile("/workspace/mine.txt", []byte("mine"), 0o644)
	record("write /workspace/mine.txt", "ok", err)
	readFile("read /workspace/mine.txt", "/workspace/mine.txt")

	// Symlinks and hard links it makes itself.
	record("symlink /workspace/x -> /", "ok", os.Symlink("/", "/workspace/x"))
	readDir("ls /workspace/x", "/workspace/x")
	readFile("read /workspace/x/etc/passwd", "/workspace/x/etc/passwd")
	record("symlink /workspace/y -> /etc/passwd", "ok", os.Symlink("/etc/passwd", "/workspace/y"))
	readFile("read /workspace/y", "/workspace/y")
	up := strings.Repeat("../", 16)
	record("symlink /workspace/z -> "+up+"etc/passwd", "ok", os.Symlink(up+"etc/passwd", "/workspace/z"))
	readFile("read /workspace/z", "/workspace/z")
	record("symlink /workspace/w -> ../"+other, "ok", os.Symlink("../"+other, "/workspace/w"))
	readFile("read /workspace/w/secret.txt", "/workspace/w/secret.txt")
	record("link /workspace/h -> /workspace/mine.txt", "ok", os.Link("/workspace/mine.txt", "/workspace/h"))

	// A symlink the host left in the workspace.
	readFile("read /workspace/hostlink/secret.txt", "/workspace/hostlink/secret.txt")
	readDir("ls /workspace/hostlink", "/workspace/hostlink")
	readFile("read /workspace/hostfile", "/workspace/hostfile")

	readDir("ls /workspace", "/workspace")

	_ = json.NewEncoder(os.Stdout).Encode(r)
}
