// Command spin loops forever without calling anything.
package main

var n int

func main() {
	for {
		n++
	}
}
