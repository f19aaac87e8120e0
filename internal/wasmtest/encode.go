// Package wasmtest builds WebAssembly guests for tests: Go main packages
// compiled for wasip1 (cached on disk), and small hand-assembled modules
// (including hostile ones) from a minimal binary encoder.
package wasmtest

import (
	"bytes"
	"encoding/binary"
)

// Value types.
const (
	I32 byte = 0x7f
	I64 byte = 0x7e
)

// Kinds of exports.
const (
	ExportFunc   byte = 0x00
	ExportMemory byte = 0x02
)

// FuncType is a function signature.
type FuncType struct {
	Params, Results []byte
}

// Import is a function import.
type Import struct {
	Module, Name string
	Type         uint32 // index into Module.Types
}

// Func is a function defined by the module. Body is its instructions,
// including the final End.
type Func struct {
	Type   uint32
	Locals []byte // one entry per local, each a value type
	Body   []byte
}

// Memory is the module's memory; Max < 0 means no maximum.
type Memory struct {
	Min uint32
	Max int64
}

// Export exports a function or memory by index.
type Export struct {
	Name  string
	Kind  byte
	Index uint32
}

// Module is a WebAssembly module to encode. Function indices count the
// imports first, then Funcs.
type Module struct {
	Types   []FuncType
	Imports []Import
	Funcs   []Func
	Memory  *Memory
	Exports []Export
	Start   *uint32
}

// Encode returns the binary form of m.
func (m *Module) Encode() []byte {
	var out bytes.Buffer
	out.WriteString("\x00asm\x01\x00\x00\x00")
	if len(m.Types) > 0 {
		var s []byte
		s = ULEB(s, uint64(len(m.Types)))
		for _, t := range m.Types {
			s = append(s, 0x60)
			s = vec(s, t.Params)
			s = vec(s, t.Results)
		}
		section(&out, 1, s)
	}
	if len(m.Imports) > 0 {
		var s []byte
		s = ULEB(s, uint64(len(m.Imports)))
		for _, im := range m.Imports {
			s = str(s, im.Module)
			s = str(s, im.Name)
			s = append(s, 0x00)
			s = ULEB(s, uint64(im.Type))
		}
		section(&out, 2, s)
	}
	if len(m.Funcs) > 0 {
		var s []byte
		s = ULEB(s, uint64(len(m.Funcs)))
		for _, f := range m.Funcs {
			s = ULEB(s, uint64(f.Type))
		}
		section(&out, 3, s)
	}
	if m.Memory != nil {
		s := []byte{1}
		if m.Memory.Max < 0 {
			s = append(s, 0x00)
			s = ULEB(s, uint64(m.Memory.Min))
		} else {
			s = append(s, 0x01)
			s = ULEB(s, uint64(m.Memory.Min))
			s = ULEB(s, uint64(m.Memory.Max))
		}
		section(&out, 5, s)
	}
	if len(m.Exports) > 0 {
		var s []byte
		s = ULEB(s, uint64(len(m.Exports)))
		for _, e := range m.Exports {
			s = str(s, e.Name)
			s = append(s, e.Kind)
			s = ULEB(s, uint64(e.Index))
		}
		section(&out, 7, s)
	}
	if m.Start != nil {
		section(&out, 8, ULEB(nil, uint64(*m.Start)))
	}
	if len(m.Funcs) > 0 {
		var s []byte
		s = ULEB(s, uint64(len(m.Funcs)))
		for _, f := range m.Funcs {
			var body []byte
			body = ULEB(body, uint64(len(f.Locals)))
			for _, l := range f.Locals {
				body = append(body, 1, l)
			}
			body = append(body, f.Body...)
			s = ULEB(s, uint64(len(body)))
			s = append(s, body...)
		}
		section(&out, 10, s)
	}
	return out.Bytes()
}

func section(out *bytes.Buffer, id byte, body []byte) {
	out.WriteByte(id)
	out.Write(ULEB(nil, uint64(len(body))))
	out.Write(body)
}

func vec(b, items []byte) []byte {
	b = ULEB(b, uint64(len(items)))
	return append(b, items...)
}

func str(b []byte, s string) []byte {
	b = ULEB(b, uint64(len(s)))
	return append(b, s...)
}

// ULEB appends v as unsigned LEB128.
func ULEB(b []byte, v uint64) []byte {
	return binary.AppendUvarint(b, v)
}

// SLEB appends v as signed LEB128.
func SLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// Code assembles function bodies.
type Code []byte

// Op appends raw opcode bytes.
func (c Code) Op(b ...byte) Code { return append(c, b...) }

// I32Const appends i32.const v.
func (c Code) I32Const(v int32) Code { return SLEB(append(c, 0x41), int64(v)) }

// LocalGet appends local.get i.
func (c Code) LocalGet(i uint32) Code { return ULEB(append(c, 0x20), uint64(i)) }

// LocalSet appends local.set i.
func (c Code) LocalSet(i uint32) Code { return ULEB(append(c, 0x21), uint64(i)) }

// Call appends call f.
func (c Code) Call(f uint32) Code { return ULEB(append(c, 0x10), uint64(f)) }

// I32Store appends i32.store with alignment 2 and offset 0.
func (c Code) I32Store() Code { return append(c, 0x36, 2, 0) }

// I32Load appends i32.load with alignment 2 and offset 0.
func (c Code) I32Load() Code { return append(c, 0x28, 2, 0) }

// Loop opens a loop block with no result.
func (c Code) Loop() Code { return append(c, 0x03, 0x40) }

// Block opens a block with no result.
func (c Code) Block() Code { return append(c, 0x02, 0x40) }

// If opens an if block with no result.
func (c Code) If() Code { return append(c, 0x04, 0x40) }

// Br appends br depth.
func (c Code) Br(depth uint32) Code { return ULEB(append(c, 0x0c), uint64(depth)) }

// BrIf appends br_if depth.
func (c Code) BrIf(depth uint32) Code { return ULEB(append(c, 0x0d), uint64(depth)) }

// End closes a block or the function.
func (c Code) End() Code { return append(c, 0x0b) }

// Opcodes used by the canned modules.
const (
	OpUnreachable = 0x00
	OpDrop        = 0x1a
	OpI32Eqz      = 0x45
	OpI32Add      = 0x6a
	OpI32Sub      = 0x6b
	OpI32LtU      = 0x49
	OpMemoryGrow  = 0x40 // followed by 0x00
)
