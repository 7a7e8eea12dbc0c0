// Package jobtemplate reads the Job templates the agent uses: its own
// --job-template, and the job_template_path a run config names. Run config
// locations are fenced in: only the prefixes allowed with
// --allowed-template-locations may be read (by default public http(s)
// addresses, s3:// and gs:// buckets, and local files next to the agent's
// own template). Every read is capped at MaxSize.
package jobtemplate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"

	"k8s.io/klog/v2"
)

// MaxSize caps every template read, local, HTTP or bucket.
const MaxSize = 1 << 20

// Options configure a Loader.
type Options struct {
	// Allowed are the location prefixes run configs may name: directories,
	// http(s)://host/path/, s3://bucket/dir/, gs://bucket/dir/, or a scheme
	// alone (https://, s3://) for any host or bucket (HTTP then only to
	// public addresses). Nil means the defaults; "none" allows nothing.
	Allowed []string
	// AgentTemplate is the agent's own --job-template; by default run
	// configs may read local files in its directory.
	AgentTemplate string
	// S3Endpoint, when set, is the S3 API address (path-style requests), for
	// S3-compatible stores and tests. Else the AWS SDK's configuration
	// (AWS_ENDPOINT_URL_S3, AWS_REGION, credentials) applies.
	S3Endpoint string
	// GCSEndpoint, when set, is the GCS JSON API base address (for example
	// http://127.0.0.1:4443), read without credentials; else
	// STORAGE_EMULATOR_HOST, else https://storage.googleapis.com with Google
	// application default credentials.
	GCSEndpoint string
}

// Loader reads templates; it is safe for concurrent use.
type Loader struct {
	rules  []rule
	public *http.Client // only public addresses
	any    *http.Client // any address: hosts the operator allowed by name
	// trusted reads the agent's own template, wherever the operator put it.
	trusted *http.Client
	opts    Options

	mu  sync.Mutex
	s3  *s3Reader
	gcs *gcsReader
}

// New checks the allowed prefixes and returns a Loader.
func New(o Options) (*Loader, error) {
	l := &Loader{opts: o}
	l.public = newHTTPClient(true, l.allowedURL)
	l.any = newHTTPClient(false, l.allowedURL)
	l.trusted = newHTTPClient(false, func(*url.URL) bool { return true })
	switch {
	case o.Allowed == nil:
		l.rules = defaultRules(o.AgentTemplate)
	case len(o.Allowed) == 1 && strings.EqualFold(o.Allowed[0], "none"):
	default:
		for _, raw := range o.Allowed {
			if strings.TrimSpace(raw) == "" {
				continue
			}
			r, err := parseRule(strings.TrimSpace(raw))
			if err != nil {
				return nil, err
			}
			l.rules = append(l.rules, r)
		}
	}
	return l, nil
}

// Load reads the template a run config names, if the fence allows it.
// Errors are fit for the run's log: they name the location and the cause
// without the raw transport error, which goes to the agent's log.
func (l *Loader) Load(ctx context.Context, raw string) ([]byte, error) {
	loc, err := parseLocation(raw)
	if err != nil {
		return nil, fmt.Errorf("job template %s: %v", raw, err)
	}
	r, ok := l.allowed(loc)
	if !ok {
		return nil, refused(raw)
	}
	if loc.kind == kindFile {
		// Only now look at the file system: a link must not lead out.
		if loc, err = resolveFile(loc); err != nil {
			return nil, fmt.Errorf("job template %s %v", raw, err)
		}
		if _, ok := l.allowed(loc); !ok {
			return nil, refused(raw)
		}
	}
	client := l.any
	if r.kind == kindHTTP && r.anyHost {
		client = l.public
	}
	return l.read(ctx, raw, loc, client)
}

// LoadTrusted reads the agent's own --job-template: the operator chose it,
// so no fence applies; the size cap does.
func (l *Loader) LoadTrusted(ctx context.Context, raw string) ([]byte, error) {
	loc, err := parseLocation(raw)
	if err != nil {
		return nil, fmt.Errorf("job template %s: %v", raw, err)
	}
	return l.read(ctx, raw, loc, l.trusted)
}

// allowedURL tells whether a redirect target is inside the fence.
func (l *Loader) allowedURL(u *url.URL) bool {
	loc, err := parseLocation(u.String())
	if err != nil {
		return false
	}
	_, ok := l.allowed(loc)
	return ok
}

// allowed finds a rule allowing the location, preferring one that names the
// host or bucket (it may reach private addresses) over a scheme alone.
func (l *Loader) allowed(loc location) (rule, bool) {
	var found *rule
	for i, r := range l.rules {
		if !r.matches(loc) {
			continue
		}
		if !r.anyHost {
			return r, true
		}
		found = &l.rules[i]
	}
	if found == nil {
		return rule{}, false
	}
	return *found, true
}

func refused(raw string) error {
	return fmt.Errorf("job template %s is not in a location this agent allows run configs to use: the agent's operator can allow it with %s", raw, FlagName)
}

func (l *Loader) read(ctx context.Context, raw string, loc location, client *http.Client) ([]byte, error) {
	var data []byte
	var err error
	switch loc.kind {
	case kindFile:
		data, err = readFile(loc.path)
	case kindHTTP:
		data, err = readHTTP(ctx, client, loc)
	case kindS3:
		var s *s3Reader
		if s, err = l.s3Reader(ctx); err == nil {
			data, err = s.read(ctx, loc)
		}
	case kindGCS:
		var g *gcsReader
		if g, err = l.gcsReader(ctx); err == nil {
			data, err = g.read(ctx, loc)
		}
	}
	if err != nil {
		var shown *shownError
		var b busy
		transient := errors.As(err, &b)
		if !errors.As(err, &shown) {
			// Not a cause worth showing. Over the network it is a transport
			// error (DNS, refused, reset, timeout), which may pass unless the
			// context ended; on the file system (permission denied, ...) it
			// is final.
			klog.FromContext(ctx).Info("Cannot read a job template", "location", raw, "err", err.Error())
			err = &shownError{"cannot be read (the agent's log has the cause)"}
			transient = loc.kind != kindFile && ctx.Err() == nil
		}
		if transient {
			return nil, &TransientError{fmt.Sprintf("job template %s %v", raw, err)}
		}
		return nil, fmt.Errorf("job template %s %v", raw, err)
	}
	return data, nil
}

// shownError is a cause worth showing on the run: it says what is wrong
// without echoing a transport error.
type shownError struct{ msg string }

func (e *shownError) Error() string { return e.msg }

func shown(format string, args ...any) error { return &shownError{fmt.Sprintf(format, args...)} }

func readFile(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, shown("doesn't exist")
		}
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, shown("is not a regular file")
	}
	return readCapped(f)
}

// readCapped reads at most MaxSize bytes, refusing more.
func readCapped(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxSize {
		return nil, shown("is larger than %d bytes (1 MiB), the most the agent reads", MaxSize)
	}
	return data, nil
}
