package policy

import (
	"fmt"
	"reflect"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// The typed decision variables.
//
// caller, task, tool, request and approval are Go structs declared to CEL
// with ext.NativeTypes, so that a misspelt field is a compile-time error.
// cel-go reads a field of such a struct with a getter that converts it to
// a CEL value, and boxes it, on every access: a policy that reads
// caller.spiffe_id in 20 rules converts it 20 times. In a decision each of
// these variables is instead an *object, which keeps the struct and the
// values of the fields read so far. The environment's type provider
// (fieldProvider) hands the planner field getters that read through the
// object's memo, and fall back to cel-go's own getters for any other value
// (a policy.Caller{...} built in an expression, for instance). Everything
// else an object does (equality, conversion, has(), type()) is delegated
// to the value cel-go's adapter makes of the struct, so expressions see no
// difference.

// maxObjectFields is at least the number of CEL fields of the largest of
// Caller, Task, Tool, Request and Approval.
const maxObjectFields = 8

// objectTypes are the Go types of the typed variables, by CEL type name.
var objectTypes = map[string]reflect.Type{
	"policy.Caller":   reflect.TypeFor[Caller](),
	"policy.Task":     reflect.TypeFor[Task](),
	"policy.Tool":     reflect.TypeFor[Tool](),
	"policy.Request":  reflect.TypeFor[Request](),
	"policy.Approval": reflect.TypeFor[Approval](),
}

// object is the CEL value of one typed variable in one decision. It is
// used by one evaluation goroutine at a time and never shared between
// decisions.
type object struct {
	ptr     any // *Caller, *Task, *Tool, *Request or *Approval
	adapter types.Adapter
	typ     ref.Type
	native  ref.Val // ptr as adapter makes it; made on first use
	have    uint8   // bit i: fields[i] holds field i
	fields  [maxObjectFields]any
}

var (
	_ ref.Val                    = (*object)(nil)
	_ traits.Indexer             = (*object)(nil)
	_ traits.FieldTester         = (*object)(nil)
	_ traits.Zeroer              = (*object)(nil)
	_ types.Adapter              = (*object)(nil)
	_ types.Provider             = (*fieldProvider)(nil)
	_ types.AggregateSizeVisitor = (*object)(nil)
)

func (o *object) nativeVal() ref.Val {
	if o.native == nil {
		o.native = o.adapter.NativeToValue(o.ptr)
	}
	return o.native
}

// reset forgets the struct and the fields read from it.
func (o *object) reset() {
	if o.have != 0 {
		o.fields = [maxObjectFields]any{}
	}
	o.have, o.ptr, o.native = 0, nil, nil
}

// field returns field i, read with get on first use.
func (o *object) field(i int, get func(any) (any, error)) (any, error) {
	if o.have&(1<<i) != 0 {
		return o.fields[i], nil
	}
	v, err := get(o.ptr)
	if err != nil {
		return nil, err
	}
	o.fields[i] = v
	o.have |= 1 << i
	return v, nil
}

// unwrapObject returns the native value of v when it is an *object.
func unwrapObject(v ref.Val) ref.Val {
	if o, ok := v.(*object); ok {
		return o.nativeVal()
	}
	return v
}

// ConvertToNative implements ref.Val.
func (o *object) ConvertToNative(t reflect.Type) (any, error) {
	return o.nativeVal().ConvertToNative(t)
}

// ConvertToType implements ref.Val.
func (o *object) ConvertToType(t ref.Type) ref.Val { return o.nativeVal().ConvertToType(t) }

// Equal implements ref.Val.
func (o *object) Equal(other ref.Val) ref.Val { return o.nativeVal().Equal(unwrapObject(other)) }

// Type implements ref.Val.
func (o *object) Type() ref.Type { return o.typ }

// Value implements ref.Val. It is the object itself, so that the field
// getters of fieldProvider receive it.
func (o *object) Value() any { return o }

// Get implements traits.Indexer.
func (o *object) Get(field ref.Val) ref.Val {
	return o.nativeVal().(traits.Indexer).Get(field)
}

// IsSet implements traits.FieldTester.
func (o *object) IsSet(field ref.Val) ref.Val {
	return o.nativeVal().(traits.FieldTester).IsSet(field)
}

// IsZeroValue implements traits.Zeroer.
func (o *object) IsZeroValue() bool { return o.nativeVal().(traits.Zeroer).IsZeroValue() }

// NativeToValue implements types.Adapter, as cel-go's native objects do.
func (o *object) NativeToValue(v any) ref.Val { return o.nativeVal().(types.Adapter).NativeToValue(v) }

// AggregateSize implements types.AggregateSizeVisitor, as cel-go's native
// objects do.
func (o *object) AggregateSize(s types.AggregateSizer) uint32 {
	if a, ok := o.nativeVal().(types.AggregateSizeVisitor); ok {
		return a.AggregateSize(s)
	}
	return 1
}

// fieldProvider is the environment's type provider: base, with field
// getters for the typed variables that read through *object.
type fieldProvider struct {
	types.Provider
	fields map[string]map[string]*types.FieldType // type name -> field -> type
}

// FindStructFieldType implements types.Provider.
func (p *fieldProvider) FindStructFieldType(structType, fieldName string) (*types.FieldType, bool) {
	if ft, ok := p.fields[strings.TrimPrefix(structType, ".")][fieldName]; ok {
		return ft, true
	}
	return p.Provider.FindStructFieldType(structType, fieldName)
}

// objectFields is the environment option that installs fieldProvider over
// the environment's provider. It must come after every option that
// registers types.
func objectFields() cel.EnvOption {
	return func(e *cel.Env) (*cel.Env, error) {
		base := e.CELTypeProvider()
		p := &fieldProvider{Provider: base, fields: map[string]map[string]*types.FieldType{}}
		for name := range objectTypes {
			names, ok := base.FindStructFieldNames(name)
			if !ok || len(names) > maxObjectFields {
				return nil, fmt.Errorf("policy: type %s: %d fields (max %d)", name, len(names), maxObjectFields)
			}
			byField := map[string]*types.FieldType{}
			for i, f := range names {
				ft, ok := base.FindStructFieldType(name, f)
				if !ok || ft.GetFrom == nil || ft.IsSet == nil {
					return nil, fmt.Errorf("policy: type %s: no getter for field %s", name, f)
				}
				get, isSet := ft.GetFrom, ft.IsSet
				byField[f] = &types.FieldType{
					Type: ft.Type,
					IsSet: func(obj any) bool {
						if o, ok := obj.(*object); ok {
							obj = o.ptr
						}
						return isSet(obj)
					},
					GetFrom: func(obj any) (any, error) {
						if o, ok := obj.(*object); ok {
							return o.field(i, get)
						}
						return get(obj)
					},
				}
			}
			p.fields[name] = byField
		}
		return cel.CustomTypeProvider(p)(e)
	}
}

// objectType returns the CEL type cel-go gives a value of Go type *T.
func objectType[T any](a types.Adapter) ref.Type {
	return a.NativeToValue(new(T)).Type()
}
