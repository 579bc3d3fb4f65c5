package config

import (
	"strings"
	"testing"
)

// An ID token sent over plain HTTP to another machine can be read and
// replayed against the Cloud Run service by anyone on the path: refused.
// Loopback (a local emulator or sidecar) is allowed.
func TestGoogleIDTokenNeedsHTTPS(t *testing.T) {
	for _, tc := range []struct{ pool, want string }{
		{`{name: app, urls: ["http://10.0.0.5:8080"], google_id_token: {}}`, `t.yaml:3: pool "app": upstream "http://10.0.0.5:8080" gets an ID token (google_id_token): use https`},
		{`{name: app, builtin: whoami, google_id_token: {}}`, `google_id_token is for Cloud Run servers under urls`},
		{`{name: app, urls: ["https://a.run.app"], google_id_token: {audience: "a b"}}`, `must not contain spaces`},
		{`{name: app, urls: ["https://flowise-abc-an.a.run.app"], google_id_token: {}}`, ``},
		{`{name: app, urls: ["http://127.0.0.1:8080"], google_id_token: {audience: "https://x.run.app"}}`, ``},
	} {
		c, err := Parse("t.yaml", []byte("version: 1\npools:\n  - "+tc.pool+"\nroutes: [{name: app, host: \"*\", pool: app, policy: {allow_authenticated: true}}]\n"))
		if err != nil {
			t.Fatal(err)
		}
		err = c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.pool, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.pool, err, tc.want)
		}
	}
}
