package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// runHealthcheck asks a gateway's /.sekisho/healthz and exits 0 only on
// 200: a container HEALTHCHECK for images without a shell or curl.
func runHealthcheck(env Env, args []string) error {
	fs := flags(env, "healthcheck", "healthcheck [--url http://127.0.0.1:8080/.sekisho/healthz] [--timeout 3s]")
	target := fs.String("url", "http://127.0.0.1:8080/.sekisho/healthz", "the health endpoint to ask")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	u, err := url.Parse(*target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError{fmt.Sprintf("--url %q: want http://HOST:PORT/.sekisho/healthz", *target)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", u.String(), nil)
	if err != nil {
		return usageError{err.Error()}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("unhealthy: %w", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("unhealthy: %s: %s", res.Status, strings.TrimSpace(string(body)))
	}
	fmt.Fprintln(env.Stdout, "healthy")
	return nil
}
