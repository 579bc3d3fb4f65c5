package config

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

const schemaPath = "../../schema/sekisho.schema.json"

// TestSchemaUpToDate keeps schema/sekisho.schema.json equal to what the
// types generate; run `go test ./internal/config -run Schema -update` after
// changing a config type.
func TestSchemaUpToDate(t *testing.T) {
	src, err := os.ReadFile("types.go")
	if err != nil {
		t.Fatal(err)
	}
	want, err := Schema(src)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		os.MkdirAll(filepath.Dir(schemaPath), 0o755)
		if err := os.WriteFile(schemaPath, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("schema is stale; rerun with -update (-generated +file):\n%s", diff)
	}
}

// TestSchemaAgreesWithLoader walks the examples: every key the loader accepts
// is a schema property, and a key the schema lacks is refused by the loader.
func TestSchemaAgreesWithLoader(t *testing.T) {
	raw, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	for _, f := range exampleConfigs() {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, _ := os.ReadFile(f)
			var doc any
			if err := yaml.Unmarshal(data, &doc); err != nil {
				t.Fatal(err)
			}
			checkAgainst(t, "", doc, schema)
		})
	}
	// Every object in the schema forbids unknown keys, as the loader does.
	var walk func(path string, s map[string]any)
	walk = func(path string, s map[string]any) {
		if _, isMap := s["additionalProperties"].(map[string]any); s["type"] == "object" && s["additionalProperties"] != false && !isMap {
			t.Errorf("schema object %s allows unknown keys", path)
		}
		if props, ok := s["properties"].(map[string]any); ok {
			for k, v := range props {
				walk(path+"."+k, v.(map[string]any))
			}
		}
		if items, ok := s["items"].(map[string]any); ok {
			walk(path+"[]", items)
		}
	}
	walk("", schema)
	// And the loader refuses a key the schema does not know.
	if _, err := Parse("x.yaml", []byte("version: 1\nnot_in_schema: 1\n")); err == nil || !strings.Contains(err.Error(), `unknown key "not_in_schema"`) {
		t.Errorf("loader accepted a key the schema lacks: %v", err)
	}
}

func checkAgainst(t *testing.T, path string, v any, s map[string]any) {
	t.Helper()
	switch s["type"] {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			t.Errorf("%s: schema wants an object, file has %T", path, v)
			return
		}
		if elem, isMap := s["additionalProperties"].(map[string]any); isMap {
			for k, sub := range m {
				checkAgainst(t, path+"."+k, sub, elem)
			}
			return
		}
		props := s["properties"].(map[string]any)
		for k, sub := range m {
			ps, ok := props[k].(map[string]any)
			if !ok {
				t.Errorf("%s.%s: key accepted by the loader is missing from the schema", path, k)
				continue
			}
			checkAgainst(t, path+"."+k, sub, ps)
		}
	case "array":
		l, ok := v.([]any)
		if !ok {
			t.Errorf("%s: schema wants an array, file has %T", path, v)
			return
		}
		for i, e := range l {
			checkAgainst(t, path+"["+strconv.Itoa(i)+"]", e, s["items"].(map[string]any))
		}
	case "string":
		if reflect.TypeOf(v).Kind() != reflect.String {
			t.Errorf("%s: schema wants a string, file has %T", path, v)
		}
	case "integer":
		if _, ok := v.(int); !ok {
			t.Errorf("%s: schema wants an integer, file has %T", path, v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			t.Errorf("%s: schema wants a boolean, file has %T", path, v)
		}
	}
}
