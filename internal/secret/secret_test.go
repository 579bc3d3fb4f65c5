package secret

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	res := Resolver{
		LookupEnv: func(n string) (string, bool) {
			v, ok := map[string]string{"KEY": "s3cret", "EMPTY": ""}[n]
			return v, ok
		},
		ReadFile: func(p string) ([]byte, error) {
			switch p {
			case "/run/key":
				return []byte("filesecret\n"), nil
			case "/run/empty":
				return []byte("\n"), nil
			}
			return nil, &fs.PathError{Op: "open", Path: p, Err: fs.ErrNotExist}
		},
	}
	tests := []struct {
		name, ref, want, wantErr string
	}{
		{name: "env", ref: "env:KEY", want: "s3cret"},
		{name: "file_trailing_newline_trimmed", ref: "file:/run/key", want: "filesecret"},
		{name: "env_unset", ref: "env:NOPE", wantErr: "environment variable NOPE is not set"},
		{name: "env_empty", ref: "env:EMPTY", wantErr: "is not set"},
		{name: "file_missing", ref: "file:/run/nope", wantErr: "file does not exist"},
		{name: "file_empty", ref: "file:/run/empty", wantErr: "file is empty"},
		{name: "literal_secret_refused_and_not_echoed", ref: "hunter2hunter2", wantErr: "<redacted>"},
		{name: "unknown_scheme", ref: "vault:x", wantErr: `unknown scheme "vault"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := res.Resolve(Ref(tc.ref))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Resolve(%q) error = %v, want containing %q", tc.ref, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "s3cret") {
					t.Fatalf("error leaks the secret: %v", err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("Resolve(%q) = %q, %v; want %q", tc.ref, got, err, tc.want)
			}
		})
	}
}

func TestRealFileNotFound(t *testing.T) {
	_, err := Resolver{}.Resolve("file:/nonexistent/sekisho-test")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("want ErrNotExist, got %v", err)
	}
}
