// Command flooderr writes to stderr forever.
package main

import "os"

func main() {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = 'x'
	}
	for {
		os.Stderr.Write(b)
	}
}
