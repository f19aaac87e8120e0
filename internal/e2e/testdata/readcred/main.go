// Command readcred is a test guest: it reads the file-injected credential
// named by its input ({"name": NAME}) from /run/airlock/credentials/NAME
// and prints {"value": ..., "names": [...]} (names: what the directory
// holds). It then tries to write beside it and reports the error, to show
// the mount is read-only.
package main

import (
	"encoding/json"
	"os"
)

func main() {
	var in struct {
		Name string `json:"name"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&in); err != nil {
		os.Stderr.WriteString("bad input: " + err.Error())
		os.Exit(1)
	}
	const dir = "/run/airlock/credentials/"
	b, err := os.ReadFile(dir + in.Name)
	if err != nil {
		os.Stderr.WriteString("read: " + err.Error())
		os.Exit(1)
	}
	var names []string
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			names = append(names, e.Name())
		}
	}
	werr := "none"
	if err := os.WriteFile(dir+"new", []byte("x"), 0o600); err != nil {
		werr = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(map[string]any{"value": string(b), "names": names, "write_error": werr})
}
