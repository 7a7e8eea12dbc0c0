package jobtemplate

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// TestBusyOrUnreachableLocationsAreTransient: a template location that
// answers "busy" or cannot be reached gives a TransientError (the run is
// worth another try); one that is missing, denied, too large or fenced out
// gives a final error.
func TestBusyOrUnreachableLocationsAreTransient(t *testing.T) {
	status := map[string]int{"/busy": 503, "/throttled": 429, "/broken": 500, "/missing": 404, "/denied": 403}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/s3/flows/slow.yaml" {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`))
			return
		}
		http.Error(w, "no", status[r.URL.Path])
	}))
	t.Cleanup(srv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "big.yaml"), make([]byte, MaxSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_REGION", "us-east-1")
	l := mustLoader(t, Options{
		Allowed:    []string{srv.URL + "/", "http://" + closed + "/", dir + "/", "s3://flows/"},
		S3Endpoint: srv.URL + "/s3",
	})
	for _, tc := range []struct {
		location  string
		transient bool
	}{
		{srv.URL + "/busy", true},
		{srv.URL + "/throttled", true},
		{srv.URL + "/broken", true},
		{"http://" + closed + "/job.yaml", true},
		{"s3://flows/slow.yaml", true},
		{srv.URL + "/missing", false},
		{srv.URL + "/denied", false},
		{filepath.Join(dir, "absent.yaml"), false},
		{filepath.Join(dir, "big.yaml"), false},
		{"https://elsewhere.example/job.yaml", false},
	} {
		_, err := l.Load(context.Background(), tc.location)
		if err == nil {
			t.Fatalf("%s: read succeeded", tc.location)
		}
		if IsTransient(err) != tc.transient {
			t.Errorf("%s: %v: transient %v, want %v", tc.location, err, IsTransient(err), tc.transient)
		}
		if tc.transient && !errors.As(err, new(*TransientError)) {
			t.Errorf("%s: not a *TransientError", tc.location)
		}
	}
}
