// Package examples ships the ready-made configs; the quickstart is embedded in
// the binary so `sekisho serve` works with no file at all.
package examples

import _ "embed"

// Quickstart is examples/quickstart.yaml.
//
//go:embed quickstart.yaml
var Quickstart []byte

// QuickstartName is the name errors use for the embedded quickstart.
const QuickstartName = "examples/quickstart.yaml (embedded)"
