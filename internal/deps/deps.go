// Package deps pins the project's chosen dependencies while the packages
// that use them are being written. Delete once every import is real.
package deps

import (
	_ "cel.dev/cel-go/cel"
	_ "github.com/goccy/go-yaml"
	_ "github.com/itchyny/gojq"
	_ "github.com/rs/zerolog"
	_ "github.com/santhosh-tekuri/jsonschema/v6"
	_ "github.com/spf13/cobra"
	_ "github.com/tetratelabs/wazero"
	_ "golang.org/x/net/html"
	_ "golang.org/x/sys/unix"
	_ "google.golang.org/grpc"
	_ "google.golang.org/grpc/health"
	_ "google.golang.org/grpc/reflection"
	_ "google.golang.org/protobuf/proto"
	_ "modernc.org/sqlite"
)
