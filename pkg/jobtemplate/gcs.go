package jobtemplate

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"strings"

	"golang.org/x/oauth2/google"
)

// gcsReader reads gs:// objects through the GCS JSON API, with Google
// application default credentials (GOOGLE_APPLICATION_CREDENTIALS, workload
// identity, the metadata server).
type gcsReader struct {
	client *http.Client
	base   string // ends with /storage/v1/
}

const gcsReadScope = "https://www.googleapis.com/auth/devstorage.read_only"

func (l *Loader) gcsReader(ctx context.Context) (*gcsReader, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gcs != nil {
		return l.gcs, nil
	}
	endpoint := l.opts.GCSEndpoint
	if endpoint == "" {
		if host := os.Getenv("STORAGE_EMULATOR_HOST"); host != "" {
			endpoint = host
			if !strings.Contains(host, "://") {
				endpoint = "http://" + host
			}
		}
	}
	if endpoint != "" {
		l.gcs = &gcsReader{client: &http.Client{Timeout: l.trusted.Timeout}, base: strings.TrimRight(endpoint, "/") + "/storage/v1/"}
		return l.gcs, nil
	}
	// The credentials are found with a background context: the token
	// source outlives this request.
	client, err := google.DefaultClient(context.WithoutCancel(ctx), gcsReadScope)
	if err != nil {
		return nil, shown("cannot be read: no Google credentials found (set GOOGLE_APPLICATION_CREDENTIALS or use workload identity)")
	}
	client.Timeout = l.trusted.Timeout
	l.gcs = &gcsReader{client: client, base: "https://storage.googleapis.com/storage/v1/"}
	return l.gcs, nil
}

// read downloads one object's content (alt=media).
func (g *gcsReader) read(ctx context.Context, loc location) ([]byte, error) {
	u := g.base + "b/" + url.PathEscape(loc.host) + "/o/" + url.PathEscape(loc.path) + "?alt=media"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, shown("doesn't exist")
	case http.StatusUnauthorized, http.StatusForbidden:
		return nil, shown("cannot be read with the agent's Google credentials (HTTP %d)", resp.StatusCode)
	default:
		if busyStatus(resp.StatusCode) {
			return nil, shownBusy("cannot be read (GCS answered HTTP %d)", resp.StatusCode)
		}
		return nil, shown("cannot be read (GCS answered HTTP %d)", resp.StatusCode)
	}
	if resp.ContentLength > MaxSize {
		return nil, shown("is larger than %d bytes (1 MiB), the most the agent reads", MaxSize)
	}
	return readCapped(resp.Body)
}
