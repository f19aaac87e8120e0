// Package docstest tests the examples of the user guides in docs/ against
// the code, so that the guides stay true. It holds tests only.
//
// # Convention
//
// A fenced code block is tested when its info string carries a title:
//
//	```LANG title=KIND [key=value ...]
//
// The kinds, and what the tests do with them:
//
//   - yaml title=manifest [file=PATH] [module=tool] [expect=problems]:
//     written at PATH (default manifests/tools/NAME.yaml) inside a scratch
//     tree. The module it names is placed at its relative path: the module
//     built from the guide's `go title=tool` block when module=tool, else a
//     copy of tools/textwc/textwc.wasm. A block with `sha256: ""` is pinned
//     with tools/pin.sh, as the guides tell readers to do. It must then load
//     with manifest.LoadFile. With expect=problems it must instead fail, and
//     manifest.Lint must print exactly the next `text title=problems` block
//     (paths relative to the scratch tree).
//   - yaml title=policy set=NAME and yaml title=policytest set=NAME: the
//     blocks of one set are written to one directory, loaded with
//     policy.LoadDir and compiled with policy.Compile against the bundled
//     manifests (manifests/tools, which need `make tools`) and the guides'
//     manifest blocks; every PolicyTest case must pass (Engine.RunTests).
//   - go title=tool and go title=tooltest: the Go tool of the tool guide and
//     its test file. The package is vetted and tested natively, built with
//     GOOS=wasip1 GOARCH=wasm like tools/build.sh, and called through a real
//     executor with the guide's manifest and the bundled development policy.
//   - yaml title=credentials: a credentials configuration (kind:
//     Credentials). It must parse with credentials.Parse and build with
//     credentials.Build (files it names are written with a dummy secret, a
//     keyFile with a fresh P-256 key; env reads a fake environment; nothing
//     is dialed). Every credential a guide manifest declares must name a
//     source of one of these blocks.
//   - go title=planner: a complete Go program; it must build and vet.
//   - any title=excerpt file=PATH: the block's text must appear verbatim in
//     PATH (relative to the repository root).
//
// Besides, every `airlock ...` or `bin/airlock ...` command line in a sh
// block of the guides is run with --help appended through the real CLI, so
// that every subcommand and flag the guides use exists; and the operator
// guide's table of `airlock serve` flags must list every flag of the real
// command, no other, with the default the command prints.
package docstest
