package config

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"strings"

	"github.com/sekisho/sekisho/internal/secret"
)

// Schema builds the JSON Schema (draft 2020-12) of the config file from the Go
// types themselves and the doc comments in types.go (typesSource), so the
// schema editors autocomplete from cannot drift from what Load accepts.
func Schema(typesSource []byte) ([]byte, error) {
	docs, err := fieldDocs(typesSource)
	if err != nil {
		return nil, err
	}
	s := schemaOf(reflect.TypeOf(Config{}), docs)
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["$id"] = "https://sekisho.dev/schema/sekisho.schema.json"
	s["title"] = "sekisho configuration, version 1"
	s["required"] = []string{"version", "routes"}
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

var (
	durationType = reflect.TypeOf(Duration(0))
	refType      = reflect.TypeOf(secret.Ref(""))
)

// enums lists the fixed choices of string fields, by "Type.Field".
var enums = map[string][]string{
	"TLS.Mode":        {"off", "self_signed", "files", "acme"},
	"Pool.Balance":    {"round_robin", "least_requests"},
	"Pool.Builtin":    {"whoami"},
	"Audit.OnFailure": {"block", "drop_and_count"},
	"Store.Driver":    {"sqlite", "postgres"},
}

func schemaOf(t reflect.Type, docs map[string]string) map[string]any {
	switch {
	case t == durationType:
		return map[string]any{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`}
	case t == refType:
		return map[string]any{"type": "string", "pattern": `^(env|file|gcp-secret):.+$`}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return schemaOf(t.Elem(), docs)
	case reflect.Slice:
		return map[string]any{"type": "array", "items": schemaOf(t.Elem(), docs)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaOf(t.Elem(), docs)}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int:
		return map[string]any{"type": "integer"}
	case reflect.Struct:
		props := map[string]any{}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if !f.IsExported() || tag == "" || tag == "-" {
				continue
			}
			p := schemaOf(f.Type, docs)
			key := t.Name() + "." + f.Name
			if d := docs[key]; d != "" {
				p["description"] = d
			}
			if e, ok := enums[key]; ok {
				p["enum"] = e
			}
			props[tag] = p
		}
		return map[string]any{"type": "object", "additionalProperties": false, "properties": props}
	}
	return map[string]any{}
}

// fieldDocs maps "Type.Field" to the field's doc comment in the source.
func fieldDocs(src []byte) (map[string]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), "types.go", src, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	docs := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok {
			return true
		}
		st, ok := ts.Type.(*ast.StructType)
		if !ok {
			return false
		}
		for _, fl := range st.Fields.List {
			text := strings.Join(strings.Fields(fl.Doc.Text()), " ")
			for _, name := range fl.Names {
				docs[ts.Name.Name+"."+name.Name] = text
			}
		}
		return false
	})
	return docs, nil
}
