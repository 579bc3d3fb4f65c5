package config

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLoadResolvesDataDirAgainstConfigFile: a relative data_dir (written or
// the default) names the same directory whichever folder a command runs
// from, so the CLI never opens an empty database next to the caller.
func TestLoadResolvesDataDirAgainstConfigFile(t *testing.T) {
	dir := t.TempDir()
	abs := filepath.Join(dir, "etc", "sekisho")
	if err := os.MkdirAll(abs, 0o700); err != nil {
		t.Fatal(err)
	}
	const rest = "pools: [{name: p, urls: ['http://127.0.0.1:1']}]\nroutes: [{name: r, host: '*', pool: p, policy: {allow_authenticated: true}}]\n"
	write := func(name, body string) string {
		p := filepath.Join(abs, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	other := filepath.Join(dir, "elsewhere")
	if err := os.MkdirAll(other, 0o700); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file, body, arg string
		want                  string
	}{
		{"relative_data_dir", "rel.yaml", "version: 1\ndata_dir: state\n" + rest, "", filepath.Join(abs, "state")},
		{"dot_dot_data_dir", "up.yaml", "version: 1\ndata_dir: ../state\n" + rest, "", filepath.Join(dir, "etc", "state")},
		{"default_data_dir", "def.yaml", "version: 1\n" + rest, "", filepath.Join(abs, DefaultDataDir)},
		{"absolute_data_dir_kept", "abs.yaml", "version: 1\ndata_dir: /var/lib/sekisho\n" + rest, "", "/var/lib/sekisho"},
		{"config_named_relative_to_cwd", "relarg.yaml", "version: 1\ndata_dir: state\n" + rest, "../etc/sekisho/relarg.yaml", filepath.Join(abs, "state")},
	}
	t.Chdir(other)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := write(tc.file, tc.body)
			if tc.arg != "" {
				p = tc.arg
			}
			c, err := Load(p)
			if err != nil {
				t.Fatal(err)
			}
			if c.DataDir != tc.want {
				t.Errorf("data_dir = %q, want %q", c.DataDir, tc.want)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestParseLeavesDataDirAsWritten: without a file (the embedded quickstart)
// there is nothing to resolve against; the working directory applies.
func TestParseLeavesDataDirAsWritten(t *testing.T) {
	c, err := Parse("inline.yaml", []byte("version: 1\ndata_dir: state\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "state" {
		t.Errorf("data_dir = %q, want %q", c.DataDir, "state")
	}
}
