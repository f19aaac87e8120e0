// Command httpfetch is the http.fetch tool: it sends one HTTP request
// through the executor's egress (sdk.HTTP) and returns the status, headers
// and body text.
//
// ABI: {"url": string, "method"?: string, "headers"?: {name: value},
// "body"?: string} on stdin, {"status": int, "headers": {name: value},
// "body": string, "truncated": bool} on stdout. What the tool may reach is
// decided by its manifest's capabilities.network, enforced host-side.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -o build/wasm/httpfetch.wasm ./tools/httpfetch
package main

import "github.com/airlock-dev/airlock/tools/sdk"

func main() { sdk.Run(fetch) }
