package jobtemplate

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// awsTestEnv gives the AWS SDK static credentials and nothing else to find.
func awsTestEnv(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_SESSION_TOKEN": "", "AWS_REGION": "us-east-1",
		"AWS_PROFILE": "", "AWS_CONFIG_FILE": filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "",
	} {
		t.Setenv(k, v)
	}
}

// TestS3TemplatesThroughTheS3API reads s3:// templates from an in-process S3
// server (gofakes3) with the AWS SDK's S3 client.
func TestS3TemplatesThroughTheS3API(t *testing.T) {
	awsTestEnv(t)
	backend := s3mem.New()
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	if err := backend.CreateBucket("flows"); err != nil {
		t.Fatal(err)
	}
	put := func(key string, data []byte) {
		if _, err := backend.PutObject("flows", key, map[string]string{}, bytes.NewReader(data), int64(len(data)), nil); err != nil {
			t.Fatal(err)
		}
	}
	put("templates/job.yaml", []byte(jobYAML))
	put("templates/big.yaml", bytes.Repeat([]byte("#"), MaxSize+1))
	put("other/job.yaml", []byte(jobYAML))
	ctx := context.Background()

	open := mustLoader(t, Options{S3Endpoint: srv.URL})
	if data, err := open.Load(ctx, "s3://flows/templates/job.yaml"); err != nil || string(data) != jobYAML {
		t.Fatalf("s3 template: %q, %v", data, err)
	}
	_, err := open.Load(ctx, "s3://flows/templates/missing.yaml")
	wantError(t, err, "s3://flows/templates/missing.yaml doesn't exist")
	_, err = open.Load(ctx, "s3://flows/templates/big.yaml")
	wantError(t, err, "is larger than 1048576 bytes")

	fenced := mustLoader(t, Options{S3Endpoint: srv.URL, Allowed: []string{"s3://flows/templates/"}})
	if _, err := fenced.Load(ctx, "s3://flows/templates/job.yaml"); err != nil {
		t.Fatalf("allowed prefix: %v", err)
	}
	_, err = fenced.Load(ctx, "s3://flows/other/job.yaml")
	wantError(t, err, "is not in a location this agent allows", FlagName)
}

// TestS3BucketInAnotherRegion reads from a bucket in another region than the
// SDK's default: S3 answers the first request with a PermanentRedirect naming
// the bucket's region, and the loader asks again there.
func TestS3BucketInAnotherRegion(t *testing.T) {
	awsTestEnv(t)
	backend := s3mem.New()
	fake := gofakes3.New(backend).Server()
	var regions []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		regions = append(regions, map[bool]string{true: "eu-west-1", false: "other"}[strings.Contains(auth, "/eu-west-1/s3/")])
		if !strings.Contains(auth, "/eu-west-1/s3/") {
			w.Header().Set("X-Amz-Bucket-Region", "eu-west-1")
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusMovedPermanently)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be addressed using the specified endpoint.</Message></Error>`)
			return
		}
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	if err := backend.CreateBucket("eu-flows"); err != nil {
		t.Fatal(err)
	}
	if _, err := backend.PutObject("eu-flows", "job.yaml", map[string]string{}, strings.NewReader(jobYAML), int64(len(jobYAML)), nil); err != nil {
		t.Fatal(err)
	}
	l := mustLoader(t, Options{S3Endpoint: srv.URL})
	data, err := l.Load(context.Background(), "s3://eu-flows/job.yaml")
	if err != nil || string(data) != jobYAML {
		t.Fatalf("s3 template in eu-west-1: %q, %v", data, err)
	}
	if strings.Join(regions, " ") != "other eu-west-1" {
		t.Fatalf("requests went to %v, want the default region, then eu-west-1", regions)
	}
}

// TestGCSTemplatesThroughTheJSONAPI reads gs:// and gcs:// templates from an
// in-process GCS server (fake-gcs-server) through the JSON API.
func TestGCSTemplatesThroughTheJSONAPI(t *testing.T) {
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{
		Scheme: "http", Host: "127.0.0.1", Writer: io.Discard,
		InitialObjects: []fakestorage.Object{
			{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "flows", Name: "templates/job.yaml"}, Content: []byte(jobYAML)},
			{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "flows", Name: "templates/big.yaml"}, Content: bytes.Repeat([]byte("#"), MaxSize+1)},
			{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: "flows", Name: "other/job.yaml"}, Content: []byte(jobYAML)},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	ctx := context.Background()

	open := mustLoader(t, Options{GCSEndpoint: srv.URL()})
	for _, loc := range []string{"gs://flows/templates/job.yaml", "gcs://flows/templates/job.yaml"} {
		if data, err := open.Load(ctx, loc); err != nil || string(data) != jobYAML {
			t.Fatalf("%s: %q, %v", loc, data, err)
		}
	}
	_, err = open.Load(ctx, "gs://flows/templates/missing.yaml")
	wantError(t, err, "gs://flows/templates/missing.yaml doesn't exist")
	_, err = open.Load(ctx, "gs://flows/templates/big.yaml")
	wantError(t, err, "is larger than 1048576 bytes")

	fenced := mustLoader(t, Options{GCSEndpoint: srv.URL(), Allowed: []string{"gs://flows/templates/"}})
	if _, err := fenced.Load(ctx, "gcs://flows/templates/job.yaml"); err != nil {
		t.Fatalf("allowed prefix: %v", err)
	}
	_, err = fenced.Load(ctx, "gs://flows/other/job.yaml")
	wantError(t, err, "is not in a location this agent allows", FlagName)
}
