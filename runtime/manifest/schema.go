package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaURLBase names the schemas of a manifest inside the compiler.
const schemaURLBase = "airlock:///manifest/"

// noLoader refuses every external reference: a manifest's schemas must be
// self-contained, so what validates a call cannot change behind the pin.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schema reference %s is outside the manifest: put the definition under $defs and refer to it as #/$defs/NAME", url)
}

// compileSchema compiles a JSON Schema (draft 2020-12 unless it says
// otherwise with $schema) that must not refer outside itself.
func compileSchema(doc json.RawMessage, name string) (*jsonschema.Schema, any, error) {
	parsed, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, nil, fmt.Errorf("is not valid JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(noLoader{})
	c.AssertFormat()
	url := schemaURLBase + name + ".json"
	if err := c.AddResource(url, parsed); err != nil {
		return nil, nil, err
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, nil, err
	}
	return s, parsed, nil
}
