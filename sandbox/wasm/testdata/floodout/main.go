// Command floodout writes to stdout forever.
package main

import "os"

func main() {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = 'x'
	}
	for {
		os.Stdout.Write(b)
	}
}
