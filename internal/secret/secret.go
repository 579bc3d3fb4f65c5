// Package secret resolves secret references in the config, so that keys and
// passwords live in the environment or in files (mounted from a secret manager)
// and never in the YAML itself.
//
// A reference is a string with a scheme:
//
//	env:NAME        the value of environment variable NAME (must be set and non-empty)
//	file:/path      the contents of the file, with one trailing newline removed
//	gcp-secret:projects/P/secrets/NAME/versions/V
//	                a version (a number or latest) of a Google Secret Manager
//	                secret, read with Application Default Credentials (see GCP)
//
// A Ref prints as its reference, never as its value, so it is safe in logs,
// errors and `sekisho check` output.
package secret

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Ref is a reference to a secret value. The zero Ref means "not set".
type Ref string

// Env looks up environment variables; os.LookupEnv in production, a map in tests.
type Env func(name string) (string, bool)

// Resolver turns references into values. The zero value reads the process
// environment and the real file system.
type Resolver struct {
	// LookupEnv reads an environment variable; nil means os.LookupEnv.
	LookupEnv Env
	// ReadFile reads a file; nil means os.ReadFile.
	ReadFile func(path string) ([]byte, error)
	// GCP reads gcp-secret: references; nil means one shared reader with
	// Application Default Credentials.
	GCP *GCP
}

// Check reports whether the reference is well-formed, without reading it.
func (r Ref) Check() error {
	scheme, rest, ok := strings.Cut(string(r), ":")
	if !ok {
		return fmt.Errorf("secret reference %q has no scheme: write env:NAME, file:/path or gcp-secret:projects/P/secrets/NAME/versions/latest (secrets are never written into the config itself)", r.redacted())
	}
	switch scheme {
	case "env":
		if rest == "" || strings.ContainsAny(rest, "= \t\n") {
			return fmt.Errorf("secret reference %q: env: needs a variable name", r.redacted())
		}
	case "file":
		if rest == "" {
			return fmt.Errorf("secret reference %q: file: needs a path", r.redacted())
		}
	case "gcp-secret":
		if !gcpSecretName.MatchString(rest) {
			return fmt.Errorf("secret reference %q: gcp-secret: needs a secret version's name, projects/PROJECT/secrets/NAME/versions/latest (or a version number)", r.redacted())
		}
	default:
		return fmt.Errorf("secret reference %q: unknown scheme %q (want env, file or gcp-secret)", r.redacted(), scheme)
	}
	return nil
}

// Resolve returns the secret's value. Errors name the reference, never the value.
func (res Resolver) Resolve(r Ref) ([]byte, error) {
	if err := r.Check(); err != nil {
		return nil, err
	}
	scheme, rest, _ := strings.Cut(string(r), ":")
	switch scheme {
	case "env":
		lookup := res.LookupEnv
		if lookup == nil {
			lookup = os.LookupEnv
		}
		v, ok := lookup(rest)
		if !ok || v == "" {
			return nil, fmt.Errorf("secret %s: environment variable %s is not set", r, rest)
		}
		return []byte(v), nil
	case "gcp-secret":
		return res.gcp().resolve(r, rest)
	default: // file
		read := res.ReadFile
		if read == nil {
			read = os.ReadFile
		}
		b, err := read(rest)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, fmt.Errorf("secret %s: %w", r, err)
		}
		b = []byte(strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"))
		if len(b) == 0 {
			return nil, fmt.Errorf("secret %s: file is empty", r)
		}
		return b, nil
	}
}

// redacted shows the scheme and name of a reference but hides anything that
// looks like it may be a pasted secret (a value without a scheme).
func (r Ref) redacted() string {
	if _, _, ok := strings.Cut(string(r), ":"); ok && len(r) < 256 {
		return string(r)
	}
	return "<redacted>"
}

// String returns the reference (never the value).
func (r Ref) String() string { return r.redacted() }
