// Command alloc allocates and keeps memory until it is stopped.
package main

var keep [][]byte

func main() {
	for {
		b := make([]byte, 1<<20)
		for i := range b {
			b[i] = byte(i)
		}
		keep = append(keep, b)
	}
}
