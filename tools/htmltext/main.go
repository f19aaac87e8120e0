// Command htmltext is the html.to_text tool: it turns an HTML document into
// readable plain text and the list of its links, with golang.org/x/net/html.
//
// ABI: {"html": string} on stdin, {"text": string, "links": [{"text",
// "href"}]} on stdout. Nothing is fetched or resolved: hrefs are returned as
// written in the document.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -o build/wasm/htmltext.wasm ./tools/htmltext
package main

import "github.com/airlock-dev/airlock/tools/sdk"

func main() { sdk.Run(toText) }
