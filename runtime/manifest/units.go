package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Binary size units.
const (
	KiB ByteSize = 1 << 10
	MiB ByteSize = 1 << 20
	GiB ByteSize = 1 << 30
)

// ParseByteSize parses a size written as a plain number of bytes ("65536")
// or an integer with a binary unit: "512KiB", "64MiB", "1GiB". Decimal units
// (KB, MB, GB) are refused because they are ambiguous.
func ParseByteSize(s string) (ByteSize, error) {
	digits := s
	unit := ByteSize(1)
	for _, u := range []struct {
		suffix string
		size   ByteSize
	}{{"KiB", KiB}, {"MiB", MiB}, {"GiB", GiB}} {
		if strings.HasSuffix(s, u.suffix) {
			digits, unit = strings.TrimSuffix(s, u.suffix), u.size
			break
		}
	}
	if digits == "" || strings.TrimLeft(digits, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a size: write a whole number of bytes or a whole number with KiB, MiB or GiB, like 64MiB", s)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > math.MaxInt64/int64(unit) {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return ByteSize(n) * unit, nil
}

// String writes the size with the largest binary unit that divides it
// exactly ("64MiB"), or as plain bytes ("1000").
func (b ByteSize) String() string {
	switch {
	case b != 0 && b%GiB == 0:
		return strconv.FormatInt(int64(b/GiB), 10) + "GiB"
	case b != 0 && b%MiB == 0:
		return strconv.FormatInt(int64(b/MiB), 10) + "MiB"
	case b != 0 && b%KiB == 0:
		return strconv.FormatInt(int64(b/KiB), 10) + "KiB"
	}
	return strconv.FormatInt(int64(b), 10)
}

// UnmarshalYAML accepts a plain integer of bytes or a string with a
// binary unit.
func (b *ByteSize) UnmarshalYAML(unmarshal func(any) error) error {
	var v any
	if err := unmarshal(&v); err != nil {
		return err
	}
	n, err := byteSizeFromAny(v)
	if err != nil {
		return err
	}
	*b = n
	return nil
}

// MarshalYAML writes the size as String does.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// MarshalJSON writes the size as a JSON string, as String does.
func (b ByteSize) MarshalJSON() ([]byte, error) { return json.Marshal(b.String()) }

// UnmarshalJSON accepts a JSON integer of bytes or a string with a binary
// unit.
func (b *ByteSize) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err == nil {
		n, err := ParseByteSize(s)
		if err != nil {
			return err
		}
		*b = n
		return nil
	}
	var n int64
	if err := json.Unmarshal(data, &n); err != nil {
		return fmt.Errorf("a size must be an integer of bytes or a string like \"64MiB\", not %s", data)
	}
	if n < 0 {
		return fmt.Errorf("size %d is negative", n)
	}
	*b = ByteSize(n)
	return nil
}

func byteSizeFromAny(v any) (ByteSize, error) {
	switch x := v.(type) {
	case string:
		return ParseByteSize(x)
	case int:
		return nonNegative(int64(x))
	case int64:
		return nonNegative(x)
	case uint64:
		if x > math.MaxInt64 {
			return 0, fmt.Errorf("size %d is too large", x)
		}
		return ByteSize(x), nil
	}
	return 0, fmt.Errorf("a size must be an integer of bytes or a string like 64MiB, not %T", v)
}

func nonNegative(n int64) (ByteSize, error) {
	if n < 0 {
		return 0, fmt.Errorf("size %d is negative", n)
	}
	return ByteSize(n), nil
}

// ParseDuration parses a non-negative Go duration with a unit, like "10s",
// "250ms" or "1m30s".
func ParseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration: write a number with a unit, like 10s or 250ms", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q is negative", s)
	}
	return Duration(d), nil
}

// String writes the duration as time.Duration does ("10s").
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML accepts a duration string like "10s"; a bare number is
// refused because its unit would be a guess.
func (d *Duration) UnmarshalYAML(unmarshal func(any) error) error {
	var v any
	if err := unmarshal(&v); err != nil {
		return err
	}
	s, ok := v.(string)
	if !ok {
		return errors.New("a duration needs a unit: write it like 10s or 250ms")
	}
	p, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = p
	return nil
}

// MarshalYAML writes the duration as String does.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// MarshalJSON writes the duration as a JSON string like "10s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON accepts a JSON string like "10s".
func (d *Duration) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("a duration must be a string like \"10s\", not %s", data)
	}
	p, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*d = p
	return nil
}
