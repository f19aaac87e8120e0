// Command githubissue is the github.issue.create tool: it opens one issue
// in a GitHub repository through the executor's egress (sdk.HTTP).
//
// ABI: {"owner": string, "repo": string, "title": string, "body"?: string,
// "labels"?: [string]} on stdin, {"number": int, "url": string} on stdout.
// The API base URL comes from the environment variable GITHUB_API_BASE
// (manifest capabilities.env; default https://api.github.com): plain
// configuration, never a secret. The token is attached host-side by the
// executor (credential injection over http), so the tool never sees it.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -o build/wasm/githubissue.wasm ./tools/githubissue
package main

import "github.com/airlock-dev/airlock/tools/sdk"

func main() { sdk.Run(create) }
