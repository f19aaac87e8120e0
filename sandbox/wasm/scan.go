package wasm

import (
	"errors"
	"fmt"
)

// Kinds of imports and exports in the WebAssembly binary format.
const (
	externFunc   = 0x00
	externTable  = 0x01
	externMemory = 0x02
	externGlobal = 0x03
	externTag    = 0x04
)

// maxScanEntries bounds the number of imports or exports a module may declare.
const maxScanEntries = 100_000

// importEntry is one import of a module, of any kind.
type importEntry struct {
	Module string
	Name   string
	Kind   byte
}

// memoryLimits is a declared (not imported) memory.
type memoryLimits struct {
	Min    uint64
	Max    uint64
	HasMax bool
}

// scanResult is what Prepare needs to know about a module before compiling:
// wazero checks the rest (and everything again) when it compiles.
type scanResult struct {
	Imports  []importEntry
	Memories []memoryLimits
	Exports  map[string]byte
}

var errTruncated = errors.New("unexpected end of module")

// scanner reads the sections of a WebAssembly binary it needs.
type scanner struct {
	b   []byte
	off int
}

func (s *scanner) byte() (byte, error) {
	if s.off >= len(s.b) {
		return 0, errTruncated
	}
	c := s.b[s.off]
	s.off++
	return c, nil
}

// u32 reads an unsigned LEB128 of at most 32 bits.
func (s *scanner) u32() (uint32, error) {
	var v uint64
	for shift := 0; shift < 35; shift += 7 {
		c, err := s.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			if v > 0xffffffff {
				return 0, fmt.Errorf("integer at offset %d overflows 32 bits", s.off)
			}
			return uint32(v), nil
		}
	}
	return 0, fmt.Errorf("integer at offset %d is longer than 5 bytes", s.off)
}

// u64 reads an unsigned LEB128 of at most 64 bits (memory64 limits).
func (s *scanner) u64() (uint64, error) {
	var v uint64
	for shift := 0; shift < 70; shift += 7 {
		c, err := s.byte()
		if err != nil {
			return 0, err
		}
		if shift == 63 && c > 1 {
			return 0, fmt.Errorf("integer at offset %d overflows 64 bits", s.off)
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("integer at offset %d is longer than 10 bytes", s.off)
}

func (s *scanner) name() (string, error) {
	n, err := s.u32()
	if err != nil {
		return "", err
	}
	if uint64(n) > uint64(len(s.b)-s.off) {
		return "", errTruncated
	}
	v := string(s.b[s.off : s.off+int(n)])
	s.off += int(n)
	return v, nil
}

// limits reads a limits type (table or memory).
func (s *scanner) limits() (memoryLimits, error) {
	flag, err := s.byte()
	if err != nil {
		return memoryLimits{}, err
	}
	if flag > 0x07 {
		return memoryLimits{}, fmt.Errorf("invalid limits flag 0x%x at offset %d", flag, s.off-1)
	}
	read := s.u64
	if flag&0x04 == 0 { // not memory64: 32-bit limits
		read = func() (uint64, error) { v, err := s.u32(); return uint64(v), err }
	}
	var l memoryLimits
	if l.Min, err = read(); err != nil {
		return l, err
	}
	if flag&0x01 != 0 {
		l.HasMax = true
		if l.Max, err = read(); err != nil {
			return l, err
		}
	}
	return l, nil
}

// scanModule reads the import, memory and export sections of a binary. It
// does not validate the module: wazero does that when it compiles it.
func scanModule(b []byte) (*scanResult, error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return nil, errors.New("not a WebAssembly binary (bad magic number)")
	}
	if string(b[4:8]) != "\x01\x00\x00\x00" {
		return nil, errors.New("unsupported WebAssembly binary version (want 1)")
	}
	s := &scanner{b: b, off: 8}
	res := &scanResult{Exports: map[string]byte{}}
	for s.off < len(b) {
		id, err := s.byte()
		if err != nil {
			return nil, err
		}
		size, err := s.u32()
		if err != nil {
			return nil, err
		}
		if uint64(size) > uint64(len(b)-s.off) {
			return nil, fmt.Errorf("section %d at offset %d: %w", id, s.off, errTruncated)
		}
		end := s.off + int(size)
		sub := &scanner{b: b[:end], off: s.off}
		switch id {
		case 2:
			err = scanImports(sub, res)
		case 5:
			err = scanMemories(sub, res)
		case 7:
			err = scanExports(sub, res)
		}
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
		s.off = end
	}
	return res, nil
}

func scanImports(s *scanner, res *scanResult) error {
	n, err := s.u32()
	if err != nil {
		return err
	}
	if n > maxScanEntries {
		return fmt.Errorf("%d imports is more than the %d allowed", n, maxScanEntries)
	}
	for i := uint32(0); i < n; i++ {
		var e importEntry
		if e.Module, err = s.name(); err != nil {
			return err
		}
		if e.Name, err = s.name(); err != nil {
			return err
		}
		if e.Kind, err = s.byte(); err != nil {
			return err
		}
		res.Imports = append(res.Imports, e)
		// Skip the import's type; only its module and name matter here.
		switch e.Kind {
		case externFunc:
			_, err = s.u32()
		case externTable:
			if _, err = s.byte(); err == nil { // reftype
				_, err = s.limits()
			}
		case externMemory:
			_, err = s.limits()
		case externGlobal:
			if _, err = s.byte(); err == nil { // valtype
				_, err = s.byte() // mutability
			}
		case externTag:
			if _, err = s.byte(); err == nil { // attribute
				_, err = s.u32()
			}
		default:
			// Unknown kind: stop here, the import is refused by name anyway
			// or by wazero at compile.
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func scanMemories(s *scanner, res *scanResult) error {
	n, err := s.u32()
	if err != nil {
		return err
	}
	if n > maxScanEntries {
		return fmt.Errorf("%d memories is more than the %d allowed", n, maxScanEntries)
	}
	for i := uint32(0); i < n; i++ {
		l, err := s.limits()
		if err != nil {
			return err
		}
		res.Memories = append(res.Memories, l)
	}
	return nil
}

func scanExports(s *scanner, res *scanResult) error {
	n, err := s.u32()
	if err != nil {
		return err
	}
	if n > maxScanEntries {
		return fmt.Errorf("%d exports is more than the %d allowed", n, maxScanEntries)
	}
	for i := uint32(0); i < n; i++ {
		name, err := s.name()
		if err != nil {
			return err
		}
		kind, err := s.byte()
		if err != nil {
			return err
		}
		if _, err = s.u32(); err != nil {
			return err
		}
		res.Exports[name] = kind
	}
	return nil
}
