package secret

import (
	"encoding/base64"
	"fmt"
	"hash/crc32"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeMetadata is the metadata server's token endpoint, as on Compute
// Engine and Cloud Run: it answers only requests with Metadata-Flavor.
func fakeMetadata(t *testing.T) {
	t.Helper()
	md := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "missing Metadata-Flavor", http.StatusForbidden)
			return
		}
		w.Header().Set("Metadata-Flavor", "Google")
		switch {
		case strings.HasPrefix(r.URL.Path, "/computeMetadata/v1/instance/service-accounts/default/token"):
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"access_token":"tok-from-metadata","expires_in":3600,"token_type":"Bearer"}`)
		case r.URL.Path == "/computeMetadata/v1/project/project-id":
			fmt.Fprint(w, "acme-prod")
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(md.Close)
	t.Setenv("GCE_METADATA_HOST", strings.TrimPrefix(md.URL, "http://"))
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", "")
	t.Setenv("HOME", t.TempDir()) // no gcloud credentials file
}

// fakeSecretManager serves versions.access for the secrets in values; a
// name mapped to an HTTP status answers that error.
func fakeSecretManager(t *testing.T, values map[string]string, statuses map[string]int, delay time.Duration) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if r.Header.Get("Authorization") != "Bearer tok-from-metadata" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}`)
			return
		}
		time.Sleep(delay)
		name, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/v1/"), ":access")
		if !ok || r.Method != "GET" {
			http.NotFound(w, r)
			return
		}
		if code, ok := statuses[name]; ok {
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"error":{"code":%d,"message":"Permission 'secretmanager.versions.access' denied for resource '%s' (or it may not exist).","status":"X"}}`, code, name)
			return
		}
		v, ok := values[name]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"error":{"code":404,"message":"Secret Version [%s] not found.","status":"NOT_FOUND"}}`, name)
			return
		}
		sum := crc32.Checksum([]byte(v), crc32.MakeTable(crc32.Castagnoli))
		if name == "projects/acme-prod/secrets/corrupt/versions/1" {
			sum++
		}
		fmt.Fprintf(w, `{"name":%q,"payload":{"data":%q,"dataCrc32c":"%d"}}`, name, base64.StdEncoding.EncodeToString([]byte(v)), sum)
	}))
	t.Cleanup(ts.Close)
	return ts, &calls
}

// gcp-secret: references read through Application Default Credentials
// from the metadata server, against a fake of Secret Manager's REST API:
// the value is returned and cached until Forget; each failure says what
// went wrong and names the reference, never a value.
func TestGCPSecretReferences(t *testing.T) {
	fakeMetadata(t)
	const value = "s3cr3t-client-secret"
	sm, calls := fakeSecretManager(t, map[string]string{
		"projects/acme-prod/secrets/oidc-client/versions/latest": value,
		"projects/acme-prod/secrets/corrupt/versions/1":          value,
	}, map[string]int{"projects/acme-prod/secrets/locked/versions/latest": http.StatusForbidden}, 0)
	res := Resolver{GCP: &GCP{Endpoint: sm.URL}}

	good := Ref("gcp-secret:projects/acme-prod/secrets/oidc-client/versions/latest")
	got, err := res.Resolve(good)
	if err != nil || string(got) != value {
		t.Fatalf("Resolve(%s) = %q, %v", good, got, err)
	}
	if _, err := res.Resolve(good); err != nil || calls.Load() != 1 {
		t.Fatalf("a second Resolve read Secret Manager again (%d calls), err %v: the value is cached until Forget", calls.Load(), err)
	}
	res.Forget()
	if _, err := res.Resolve(good); err != nil || calls.Load() != 2 {
		t.Fatalf("after Forget: %d calls, err %v; want the version read again", calls.Load(), err)
	}

	for _, tc := range []struct {
		name string
		ref  Ref
		want string
	}{
		{"permission_denied", "gcp-secret:projects/acme-prod/secrets/locked/versions/latest", "permission denied: the service account needs roles/secretmanager.secretAccessor"},
		{"not_found", "gcp-secret:projects/acme-prod/secrets/nope/versions/latest", "not found: no such secret or version"},
		{"corrupted_payload", "gcp-secret:projects/acme-prod/secrets/corrupt/versions/1", "does not match its checksum"},
		{"not_a_version_name", "gcp-secret:acme-prod/oidc-client", "needs a secret version's name"},
		{"version_zero", "gcp-secret:projects/acme-prod/secrets/s/versions/0", "needs a secret version's name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := res.Resolve(tc.ref)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), string(tc.ref)) {
				t.Fatalf("Resolve(%s) = %v; want an error naming the reference and saying %q", tc.ref, err, tc.want)
			}
			if strings.Contains(err.Error(), value) {
				t.Fatalf("the error shows the secret: %v", err)
			}
		})
	}

	t.Run("timeout", func(t *testing.T) {
		slow, _ := fakeSecretManager(t, map[string]string{"projects/acme-prod/secrets/s/versions/3": value}, nil, time.Second)
		r := Resolver{GCP: &GCP{Endpoint: slow.URL, Timeout: 200 * time.Millisecond}}
		_, err := r.Resolve("gcp-secret:projects/acme-prod/secrets/s/versions/3")
		if err == nil || !strings.Contains(err.Error(), "timed out after 200ms") || !strings.Contains(err.Error(), "secrets/s/versions/3") {
			t.Fatalf("slow Secret Manager: %v, want a timeout naming the reference", err)
		}
	})
	t.Run("endpoint_from_the_environment", func(t *testing.T) {
		t.Setenv(EndpointEnv, sm.URL)
		if v, err := (Resolver{GCP: &GCP{}}).Resolve(good); err != nil || string(v) != value {
			t.Fatalf("with %s: %q %v", EndpointEnv, v, err)
		}
	})
}
