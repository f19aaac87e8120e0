// Command workspace serves the workspace.write, workspace.read and
// workspace.list tools from one module; argv[0] picks the tool.
//
// Every path is relative to the task workspace that the executor mounts at
// /workspace (see sdk.WorkspacePath); no path can leave it, through ".." or
// through a symbolic link (os.Root). Without a mounted workspace every call
// fails with "this tool needs a task workspace: begin a task".
//
// Build: GOOS=wasip1 GOARCH=wasm go build -o build/wasm/workspace.wasm ./tools/workspace
package main

import "github.com/airlock-dev/airlock/tools/sdk"

func main() {
	ws := &workspace{dir: sdk.Workspace}
	sdk.Main(map[string]sdk.Handler{
		"workspace.write": sdk.Handle(ws.write),
		"workspace.read":  sdk.Handle(ws.read),
		"workspace.list":  sdk.Handle(ws.list),
	})
}
