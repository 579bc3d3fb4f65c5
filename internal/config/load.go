package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration written as a string ("30s", "5m", "12h").
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML accepts only strings that time.ParseDuration understands and
// that are not negative: a bare number is ambiguous (seconds? nanoseconds?)
// and refused.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	// A *yaml.TypeError lets the decoder go on and report every problem.
	bad := func(format string, args ...any) error {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: ", n.Line) + fmt.Sprintf(format, args...)}}
	}
	if n.Kind != yaml.ScalarNode || n.Tag != "!!str" {
		return bad("duration must be a string with a unit such as \"30s\", got %s", strconv.Quote(n.Value))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return bad("duration %q: want a number and a unit such as \"30s\" or \"5m\"", n.Value)
	}
	if v < 0 {
		return bad("duration %q must not be negative", n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// MaxFileBytes bounds the size of a config file.
const MaxFileBytes = 4 << 20

// Load reads, strictly decodes and defaults the config file at path. It does
// not validate: call Validate for that (as `check` and `serve` both do).
//
// A relative data_dir (the default "sekisho-data" included) is resolved
// against the directory of the config file, not the working directory, so
// `sekisho user ...` run from another folder opens the same database as
// `sekisho serve`. Parse, which has no file, leaves it as written.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("config %s: file is larger than %d bytes", path, MaxFileBytes)
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	if c.DataDir != "" && !filepath.IsAbs(c.DataDir) {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("config %s: resolve data_dir %q against the config's directory: %w", path, c.DataDir, err)
		}
		c.DataDir = filepath.Join(filepath.Dir(abs), c.DataDir)
	}
	return c, nil
}

var lineRE = regexp.MustCompile(`^line (\d+): `)

// Parse decodes a config from data; name is used in error messages.
// Unknown keys, type mismatches, duplicate keys and a second YAML document are
// errors, all reported as "name:line: problem".
func Parse(name string, data []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fileErrors(name, err)
	}
	if root.Kind == 0 || len(root.Content) == 0 {
		return nil, fmt.Errorf("%s: the file is empty; start with \"version: 1\"", name)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fileErrors(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			return nil, fileErrors(name, err)
		}
		return nil, fmt.Errorf("%s:%d: a second YAML document follows the config; only one is allowed", name, line)
	}
	c.source = &source{name: name, root: root.Content[0]}
	c.applyDefaults()
	return &c, nil
}

// fileErrors rewrites yaml.v3's "line N: msg" errors as "name:N: msg", one per line.
func fileErrors(name string, err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	errs := make([]error, 0, len(msgs))
	for _, m := range msgs {
		if sm := lineRE.FindStringSubmatch(m); sm != nil {
			m = name + ":" + sm[1] + ": " + friendly(m[len(sm[0]):])
		} else {
			m = name + ": " + friendly(m)
		}
		errs = append(errs, errors.New(m))
	}
	return errors.Join(errs...)
}

var (
	unknownRE = regexp.MustCompile(`^field (.+) not found in type config\.(\w+)$`)
	typeRE    = regexp.MustCompile(`into (\[\])?config\.(\w+)`)
)

// sections names each config type the way the file spells it.
var sections = map[string]string{
	"Config": "the top level", "Listen": "listen", "TLS": "listen.tls", "ACME": "listen.tls.acme",
	"Session": "session", "LocalAccounts": "local_accounts", "Assertion": "assertion",
	"Audit": "audit", "Admin": "admin", "Store": "store", "Pool": "a pool", "HealthCheck": "a pool's health_check",
	"Route": "a route", "Policy": "a route's policy", "Duration": "a duration",
}

// friendly turns yaml.v3's Go-flavoured messages into the config's words.
func friendly(m string) string {
	if sm := unknownRE.FindStringSubmatch(m); sm != nil {
		return fmt.Sprintf("unknown key %q in %s", sm[1], sections[sm[2]])
	}
	return typeRE.ReplaceAllStringFunc(m, func(s string) string {
		sm := typeRE.FindStringSubmatch(s)
		name, ok := sections[sm[2]]
		switch {
		case !ok:
			return s
		case sm[1] != "":
			return "into a list of " + strings.TrimPrefix(name, "a ") + "s"
		}
		return "into " + name
	})
}

// source remembers the parsed YAML tree so validation errors can name lines.
type source struct {
	name string
	root *yaml.Node
}

// pos returns "file:line" for the value at path (map keys as strings, list
// indexes as ints), falling back to the nearest existing parent.
func (c *Config) pos(path ...any) string {
	if c.source == nil {
		return "config"
	}
	n := c.source.root
	line := n.Line
	for _, p := range path {
		next := child(n, p)
		if next == nil {
			break
		}
		n = next
		line = n.Line
	}
	return fmt.Sprintf("%s:%d", c.source.name, line)
}

func child(n *yaml.Node, p any) *yaml.Node {
	switch k := p.(type) {
	case string:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == k {
				return n.Content[i+1]
			}
		}
	case int:
		if n.Kind == yaml.SequenceNode && k >= 0 && k < len(n.Content) {
			return n.Content[k]
		}
	}
	return nil
}

// Source returns the file name the config was loaded from ("" if built in code).
func (c *Config) Source() string {
	if c.source == nil {
		return ""
	}
	return c.source.name
}

// Pos returns "file:line" of the value at path (map keys as strings, list
// indexes as ints), for errors found outside this package (rule
// expressions, WAF settings) to point into the file like Validate's do.
func (c *Config) Pos(path ...any) string { return c.pos(path...) }
