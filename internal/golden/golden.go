// Package golden runs table tests kept in files: each file holds an input, a
// line "----", and the exact output the code under test must give for it.
// Reviewers read a change of behaviour as a diff of those files.
package golden

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Separator divides a file's input from its expected output.
const Separator = "\n----\n"

// Run runs produce as a subtest for each file matching pattern (named by
// the file's base name without ".txt") on the text above the separator,
// and compares its result with the text below. With update set it writes
// the result into the file instead. A pattern that matches no file fails:
// a test over nothing would pass for ever.
func Run(t *testing.T, pattern string, update bool, produce func(t *testing.T, name, input string) string) {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatalf("golden files %q: %v", pattern, err)
	}
	if len(files) == 0 {
		t.Fatalf("no golden files match %q", pattern)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".txt")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			input, want, ok := strings.Cut(string(raw), Separator)
			if !ok {
				t.Fatalf("%s: no ---- separator line", f)
			}
			got := produce(t, name, input)
			if update {
				if err := os.WriteFile(f, []byte(input+Separator+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s: output differs from the golden file (-want +got):\n%s", f, diff)
			}
		})
	}
}
