// Command jsonquery is the json.query tool: it runs a jq filter over JSON
// input with github.com/itchyny/gojq and returns every result.
//
// ABI: {"filter": string, "input": any} on stdin, {"results": [any...]} on
// stdout. The filter cannot read the environment ($ENV and env are empty),
// cannot read further inputs (input, inputs), and its results are bounded in
// number (MaxResults) and encoded size (MaxOutputBytes).
//
// Build: GOOS=wasip1 GOARCH=wasm go build -o build/wasm/jsonquery.wasm ./tools/jsonquery
package main

import "github.com/airlock-dev/airlock/tools/sdk"

func main() { sdk.Run(query) }
