// Command exit3 fails with a message on stderr and status 3.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "exit3: the frobnicator is broken")
	os.Exit(3)
}
