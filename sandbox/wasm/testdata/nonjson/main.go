// Command nonjson prints something that is not JSON and exits 0.
package main

import "fmt"

func main() {
	fmt.Println("hello, this is not JSON {")
}
