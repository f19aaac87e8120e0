// Command echo reads a JSON value on stdin and writes a JSON object that
// describes it and the guest's view of its process: the good baseline tool.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"time"
)

func main() {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		os.Stderr.WriteString("read stdin: " + err.Error())
		os.Exit(1)
	}
	var v any
	if err := json.Unmarshal(in, &v); err != nil {
		os.Stderr.WriteString("stdin is not JSON: " + err.Error())
		os.Exit(1)
	}
	r := make([]byte, 8)
	rand.Read(r)
	out := map[string]any{
		"input": v,
		"args":  os.Args,
		"env":   os.Environ(),
		"now":   time.Now().UnixNano(),
		"rand":  hex.EncodeToString(r),
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		os.Exit(1)
	}
}
