package manifest

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/gcsblob" // gs:// templates
	_ "gocloud.dev/blob/s3blob"  // s3:// templates
	batchv1 "k8s.io/api/batch/v1"
	"sigs.k8s.io/yaml"
)

//go:embed default-job-template.yaml
var defaultTemplate []byte

// DefaultTemplate is the built-in Job template: one container named flow.
func DefaultTemplate() *batchv1.Job {
	job, err := ParseTemplate(defaultTemplate, "the built-in template")
	if err != nil {
		panic(err) // the embedded file is part of the program
	}
	return job
}

// ParseTemplate reads a Job template from YAML or JSON with Kubernetes' own
// types, rejecting fields a Job does not have.
func ParseTemplate(data []byte, source string) (*batchv1.Job, error) {
	var job batchv1.Job
	if err := yaml.UnmarshalStrict(data, &job); err != nil {
		return nil, fmt.Errorf("job template %s is not a valid Job: %v", source, err)
	}
	if job.Kind != "" && job.Kind != "Job" {
		return nil, fmt.Errorf("job template %s is a %s, it must be a Job (apiVersion: batch/v1, kind: Job)", source, job.Kind)
	}
	if job.APIVersion != "" && job.APIVersion != "batch/v1" {
		return nil, fmt.Errorf("job template %s has apiVersion %s, it must be batch/v1", source, job.APIVersion)
	}
	job.APIVersion, job.Kind = "batch/v1", "Job"
	return &job, nil
}

// LoadTemplate reads a Job template from a local path (or file:// or agent://),
// an http(s):// address, or an s3:// or gs:// (gcs://) bucket object. Bucket
// credentials come from the environment, as the cloud SDKs read them.
func LoadTemplate(ctx context.Context, location string) (*batchv1.Job, error) {
	data, err := readLocation(ctx, location)
	if err != nil {
		return nil, err
	}
	return ParseTemplate(data, location)
}

func readLocation(ctx context.Context, location string) ([]byte, error) {
	u, err := url.Parse(location)
	if err != nil || u.Scheme == "" || len(u.Scheme) == 1 { // a Windows drive letter is a path
		return readFile(location)
	}
	switch u.Scheme {
	case "file", "local", "agent":
		return readFile(u.Host + u.Path)
	case "http", "https":
		return readHTTP(ctx, location)
	case "s3", "gs", "gcs":
		return readBucket(ctx, u)
	}
	return nil, fmt.Errorf("job template %s: unsupported scheme %s://, use a local path, https://, s3:// or gs://", location, u.Scheme)
}

func readFile(p string) ([]byte, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading job template: %w", err)
	}
	return data, nil
}

func readHTTP(ctx context.Context, location string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, location, nil)
	if err != nil {
		return nil, fmt.Errorf("job template %s: %w", location, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("job template %s: %w", location, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("job template %s: HTTP %s", location, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

func readBucket(ctx context.Context, u *url.URL) ([]byte, error) {
	scheme := u.Scheme
	if scheme == "gcs" {
		scheme = "gs"
	}
	bucket, err := blob.OpenBucket(ctx, scheme+"://"+u.Host)
	if err != nil {
		return nil, fmt.Errorf("job template %s: opening bucket: %w", u, err)
	}
	defer bucket.Close()
	key := strings.TrimPrefix(path.Clean(u.Path), "/")
	data, err := bucket.ReadAll(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("job template %s doesn't exist or cannot be read: %w", u, err)
	}
	return data, nil
}
