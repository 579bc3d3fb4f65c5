package secret

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"
)

// gcpSecretName is what gcp-secret: takes: a secret version's resource
// name, as Secret Manager writes it.
var gcpSecretName = regexp.MustCompile(`^projects/[a-z0-9][a-z0-9-]{0,62}/secrets/[A-Za-z0-9_-]{1,255}/versions/(latest|[1-9][0-9]*)$`)

// EndpointEnv overrides the Secret Manager endpoint
// (https://secretmanager.googleapis.com): a Private Service Connect or
// regional endpoint, or a local fake in tests.
const EndpointEnv = "SEKISHO_GCP_SECRET_MANAGER_ENDPOINT"

// GCP reads gcp-secret: references from Google Secret Manager with
// Application Default Credentials: the metadata server on Compute Engine,
// Cloud Run and GKE, or GOOGLE_APPLICATION_CREDENTIALS elsewhere. Values
// are cached until Forget (the gateway forgets them before each config
// reload, so a reload reads the versions anew); a value is never logged.
// Safe for concurrent use.
type GCP struct {
	// Endpoint is the Secret Manager base URL. "": $SEKISHO_GCP_SECRET_MANAGER_ENDPOINT,
	// else https://secretmanager.googleapis.com.
	Endpoint string
	// TokenSource gives the access tokens. nil: Application Default
	// Credentials, found on first use.
	TokenSource oauth2.TokenSource
	// Client makes the calls. nil: a client with Timeout.
	Client *http.Client
	// Timeout bounds one read. 0: 10 s.
	Timeout time.Duration

	mu    sync.Mutex
	cache map[Ref][]byte
	ts    oauth2.TokenSource
}

// defaultGCP serves the zero Resolver.
var defaultGCP = &GCP{}

// Forget drops the cached values: the next Resolve reads them again.
func (g *GCP) Forget() {
	g.mu.Lock()
	g.cache = nil
	g.mu.Unlock()
}

// Forget drops the values the resolver cached (gcp-secret: ones), so that
// a config reload reads the secrets anew.
func (res Resolver) Forget() {
	res.gcp().Forget()
}

func (res Resolver) gcp() *GCP {
	if res.GCP != nil {
		return res.GCP
	}
	return defaultGCP
}

// secretAccessResponse is the JSON of versions.access.
type secretAccessResponse struct {
	Payload struct {
		Data       string `json:"data"`
		DataCrc32c string `json:"dataCrc32c"`
	} `json:"payload"`
}

// googleError is the JSON error of Google APIs.
type googleError struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Status  string `json:"status"`
	} `json:"error"`
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// resolve reads the secret version name (the part after gcp-secret:).
func (g *GCP) resolve(r Ref, name string) ([]byte, error) {
	g.mu.Lock()
	if v, ok := g.cache[r]; ok {
		g.mu.Unlock()
		return v, nil
	}
	g.mu.Unlock()
	timeout := g.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	ts, err := g.tokenSource(context.Background()) // the source outlives this call
	if err != nil {
		return nil, fmt.Errorf("secret %s: no Google credentials (on Compute Engine, Cloud Run or GKE the metadata server gives them; elsewhere set GOOGLE_APPLICATION_CREDENTIALS): %w", r, err)
	}
	tok, err := ts.Token()
	if err != nil {
		return nil, fmt.Errorf("secret %s: get a Google access token: %w", r, errTimeout(err, ctx, timeout))
	}
	endpoint := g.Endpoint
	if endpoint == "" {
		endpoint = os.Getenv(EndpointEnv)
	}
	if endpoint == "" {
		endpoint = "https://secretmanager.googleapis.com"
	}
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimSuffix(endpoint, "/")+"/v1/"+name+":access", nil)
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w", r, err)
	}
	tok.SetAuthHeader(req)
	client := g.Client
	if client == nil {
		client = &http.Client{Timeout: timeout}
	}
	res, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("secret %s: reach Secret Manager at %s: %w", r, endpoint, errTimeout(err, ctx, timeout))
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("secret %s: read Secret Manager's answer: %w", r, errTimeout(err, ctx, timeout))
	}
	if res.StatusCode != http.StatusOK {
		var ge googleError
		_ = json.Unmarshal(body, &ge)
		msg := ge.Error.Message
		if msg == "" {
			msg = res.Status
		}
		switch res.StatusCode {
		case http.StatusForbidden:
			return nil, fmt.Errorf("secret %s: permission denied: the service account needs roles/secretmanager.secretAccessor on the secret (Secret Manager says: %s)", r, msg)
		case http.StatusNotFound:
			return nil, fmt.Errorf("secret %s: not found: no such secret or version in the project (Secret Manager says: %s)", r, msg)
		case http.StatusUnauthorized:
			return nil, fmt.Errorf("secret %s: the credentials were refused (Secret Manager says: %s)", r, msg)
		}
		return nil, fmt.Errorf("secret %s: Secret Manager answered %s: %s", r, res.Status, msg)
	}
	var out secretAccessResponse
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("secret %s: Secret Manager's answer is not JSON: %w", r, err)
	}
	v, err := base64.StdEncoding.DecodeString(out.Payload.Data)
	if err != nil {
		return nil, fmt.Errorf("secret %s: the payload is not base64", r)
	}
	if c := out.Payload.DataCrc32c; c != "" {
		want, err := strconv.ParseUint(c, 10, 32)
		if err != nil || crc32.Checksum(v, castagnoli) != uint32(want) {
			return nil, fmt.Errorf("secret %s: the payload does not match its checksum (corrupted on the way)", r)
		}
	}
	if len(v) == 0 {
		return nil, fmt.Errorf("secret %s: the version is empty", r)
	}
	g.mu.Lock()
	if g.cache == nil {
		g.cache = map[Ref][]byte{}
	}
	g.cache[r] = v
	g.mu.Unlock()
	return v, nil
}

func (g *GCP) tokenSource(ctx context.Context) (oauth2.TokenSource, error) {
	if g.TokenSource != nil {
		return g.TokenSource, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ts != nil {
		return g.ts, nil
	}
	creds, err := google.FindDefaultCredentials(ctx, "https://www.googleapis.com/auth/cloud-platform")
	if err != nil {
		return nil, err
	}
	g.ts = oauth2.ReuseTokenSource(nil, creds.TokenSource)
	return g.ts, nil
}

// errTimeout says "timed out after D" for an error the deadline caused.
func errTimeout(err error, ctx context.Context, d time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("timed out after %s", d)
	}
	return err
}
