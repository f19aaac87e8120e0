// Command recurse recurses until its stack overflows.
package main

import "fmt"

func down(n int, pad [64]int) int {
	pad[n%64] = n
	return down(n+1, pad) + pad[0]
}

func main() {
	fmt.Println(down(0, [64]int{}))
}
