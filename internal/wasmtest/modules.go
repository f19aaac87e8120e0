package wasmtest

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// WASI function types and imports used by the canned modules.
var (
	typeFd      = FuncType{Params: []byte{I32, I32, I32, I32}, Results: []byte{I32}} // fd_read, fd_write
	typeExit    = FuncType{Params: []byte{I32}}                                      // proc_exit
	typeVoid    = FuncType{}                                                         // () -> ()
	wasiImports = []Import{
		{Module: "wasi_snapshot_preview1", Name: "fd_read", Type: 0},
		{Module: "wasi_snapshot_preview1", Name: "fd_write", Type: 0},
		{Module: "wasi_snapshot_preview1", Name: "proc_exit", Type: 1},
	}
)

// Function indices of wasiImports.
const (
	fnFdRead   = 0
	fnFdWrite  = 1
	fnProcExit = 2
	fnFirst    = 3 // the first function a module defines
)

func wasiModule(mem *Memory, funcs []Func, exports []Export) *Module {
	return &Module{
		Types:   []FuncType{typeFd, typeExit, typeVoid},
		Imports: wasiImports,
		Funcs:   funcs,
		Memory:  mem,
		Exports: append([]Export{{Name: "memory", Kind: ExportMemory}}, exports...),
	}
}

// exitIfErrno ends the guest with status 1 when the value on the stack is a
// non-zero errno.
func (c Code) exitIfErrno() Code {
	return c.If().I32Const(1).Call(fnProcExit).End()
}

// Echo is a minimal WASI command: it copies stdin to stdout and exits 0. It
// is the tiny baseline tool.
func Echo() []byte {
	body := Code{}.Block().Loop().
		I32Const(0).I32Const(1024).I32Store().  // iov.buf
		I32Const(4).I32Const(65536).I32Store(). // iov.len
		I32Const(0).I32Const(0).I32Const(1).I32Const(8).Call(fnFdRead).exitIfErrno().
		I32Const(8).I32Load().Op(OpI32Eqz).BrIf(1). // EOF
		I32Const(16).I32Const(1024).I32Store().
		I32Const(20).I32Const(8).I32Load().I32Store().
		I32Const(1).I32Const(16).I32Const(1).I32Const(24).Call(fnFdWrite).exitIfErrno().
		Br(0).
		End().End().End()
	return wasiModule(&Memory{Min: 2, Max: -1},
		[]Func{{Type: 2, Body: body}},
		[]Export{{Name: "_start", Kind: ExportFunc, Index: fnFirst}}).Encode()
}

// StartLoop loops forever in its start section, before _start is called.
func StartLoop() []byte {
	start := uint32(fnFirst)
	m := wasiModule(&Memory{Min: 1, Max: -1},
		[]Func{
			{Type: 2, Body: Code{}.Loop().Br(0).End().End()},
			{Type: 2, Body: Code{}.End()},
		},
		[]Export{{Name: "_start", Kind: ExportFunc, Index: fnFirst + 1}})
	m.Start = &start
	return m.Encode()
}

// Spin loops forever in _start.
func Spin() []byte {
	return wasiModule(&Memory{Min: 1, Max: -1},
		[]Func{{Type: 2, Body: Code{}.Loop().Br(0).End().End()}},
		[]Export{{Name: "_start", Kind: ExportFunc, Index: fnFirst}}).Encode()
}

// ImportFunc is a command whose _start calls module.name, a function of
// type (i32, i32, i32, i32) -> i32.
func ImportFunc(module, name string) []byte {
	m := wasiModule(&Memory{Min: 1, Max: -1},
		[]Func{{Type: 2, Body: Code{}.I32Const(0).I32Const(0).I32Const(0).I32Const(0).Call(fnFirst).Op(OpDrop).End()}},
		[]Export{{Name: "_start", Kind: ExportFunc, Index: fnFirst + 1}})
	m.Imports = append(append([]Import{}, wasiImports...), Import{Module: module, Name: name, Type: 0})
	return m.Encode()
}

// ImportEnvEvil imports env.evil, which no executor grants.
func ImportEnvEvil() []byte { return ImportFunc("env", "evil") }

// ImportAirlockHTTP imports airlock_v1.http_request.
func ImportAirlockHTTP() []byte { return ImportFunc("airlock_v1", "http_request") }

// GrowForever grows its memory one page at a time and traps (unreachable)
// when memory.grow fails.
func GrowForever() []byte {
	body := Code{}.Loop().
		I32Const(1).Op(OpMemoryGrow, 0x00).I32Const(-1).Op(0x46). // i32.eq
		If().Op(OpUnreachable).End().
		Br(0).End().End()
	return wasiModule(&Memory{Min: 1, Max: -1},
		[]Func{{Type: 2, Body: body}},
		[]Export{{Name: "_start", Kind: ExportFunc, Index: fnFirst}}).Encode()
}

// Recurse calls itself until the stack overflows.
func Recurse() []byte {
	return wasiModule(&Memory{Min: 1, Max: -1},
		[]Func{
			{Type: 2, Body: Code{}.Call(fnFirst).End()},
			{Type: 2, Body: Code{}.Call(fnFirst).End()},
		},
		[]Export{{Name: "_start", Kind: ExportFunc, Index: fnFirst + 1}}).Encode()
}

// Flood writes n KiB of stdout in 32 KiB writes, ignoring write errors.
func Flood(kib int32) []byte {
	writes := (kib + 31) / 32
	body := Code{}.
		I32Const(0).I32Const(1024).I32Store().
		I32Const(4).I32Const(32768).I32Store().
		I32Const(writes).LocalSet(0).
		Loop().
		I32Const(1).I32Const(0).I32Const(1).I32Const(8).Call(fnFdWrite).Op(OpDrop).
		LocalGet(0).I32Const(1).Op(OpI32Sub).LocalSet(0).
		LocalGet(0).BrIf(0).
		End().End()
	return wasiModule(&Memory{Min: 1, Max: -1},
		[]Func{{Type: 2, Locals: []byte{I32}, Body: body}},
		[]Export{{Name: "_start", Kind: ExportFunc, Index: fnFirst}}).Encode()
}

// MinMemory declares a memory of at least pages pages and exits 0.
func MinMemory(pages uint32) []byte {
	return wasiModule(&Memory{Min: pages, Max: -1},
		[]Func{{Type: 2, Body: Code{}.End()}},
		[]Export{{Name: "_start", Kind: ExportFunc, Index: fnFirst}}).Encode()
}

// Reactor exports _initialize but no _start.
func Reactor() []byte {
	return wasiModule(&Memory{Min: 1, Max: -1},
		[]Func{{Type: 2, Body: Code{}.End()}},
		[]Export{{Name: "_initialize", Kind: ExportFunc, Index: fnFirst}}).Encode()
}

// NoEntry exports no function at all.
func NoEntry() []byte {
	return wasiModule(&Memory{Min: 1, Max: -1}, []Func{{Type: 2, Body: Code{}.End()}}, nil).Encode()
}

// Garbage is not a WebAssembly module.
func Garbage() []byte {
	return []byte("#!/bin/sh\necho this is not a wasm module\n\x00\x01\x02\xff\xfe")
}

// Truncated has a valid header and a section that runs past the end.
func Truncated() []byte {
	return []byte("\x00asm\x01\x00\x00\x00\x01\x7f\x01")
}

// WriteModule writes bin into a new file of t's temporary directory and
// returns its path and lowercase hex SHA-256.
func WriteModule(t testing.TB, name string, bin []byte) (path, sum string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), name+".wasm")
	if err := os.WriteFile(path, bin, 0o644); err != nil {
		t.Fatalf("write module %s: %v", path, err)
	}
	return path, Sum(bin)
}

// Sum returns the lowercase hex SHA-256 of b.
func Sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
