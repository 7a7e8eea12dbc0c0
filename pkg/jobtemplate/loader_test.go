package jobtemplate

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const jobYAML = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: from-url}\n"

// templateServer serves a template, a too large one (with and without a
// Content-Length), and redirects, on 127.0.0.1.
func templateServer(t *testing.T) (srv *httptest.Server, other string) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/templates/job.yaml", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(jobYAML)) })
	mux.HandleFunc("/templates/big.yaml", func(w http.ResponseWriter, _ *http.Request) { w.Write(bytes.Repeat([]byte("#"), MaxSize+1)) })
	mux.HandleFunc("/templates/big-chunked.yaml", func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i < 17; i++ { // 17 × 64 KiB, flushed so that no Content-Length is sent
			w.Write(bytes.Repeat([]byte("#"), 64<<10))
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/templates/moved.yaml", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/templates/job.yaml", http.StatusFound)
	})
	mux.HandleFunc("/templates/escape.yaml", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/private/job.yaml", http.StatusFound)
	})
	mux.HandleFunc("/private/job.yaml", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(jobYAML)) })
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	other = "localhost:" + port // the same server under another host name
	mux.HandleFunc("/templates/cross-host.yaml", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+other+"/templates/job.yaml", http.StatusFound)
	})
	return srv, other
}

func mustLoader(t *testing.T, o Options) *Loader {
	t.Helper()
	l, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func wantError(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("read succeeded, want an error with %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not say %q", err, p)
		}
	}
}

func TestDefaultFenceRefusesLoopbackURLs(t *testing.T) {
	srv, _ := templateServer(t)
	l := mustLoader(t, Options{})
	_, err := l.Load(context.Background(), srv.URL+"/templates/job.yaml")
	wantError(t, err, "loopback, link-local or private address", FlagName)
	for _, addr := range []string{"http://169.254.169.254/latest/meta-data/", "http://[::1]:9/x", "http://10.0.0.1:9/x", "http://100.64.0.1:9/x"} {
		_, err := l.Load(context.Background(), addr)
		wantError(t, err, "loopback, link-local or private address")
	}
}

func TestAllowedPrefixReachesItsHostOnly(t *testing.T) {
	srv, other := templateServer(t)
	ctx := context.Background()
	l := mustLoader(t, Options{Allowed: []string{srv.URL + "/templates/", "http://" + other + "/templates/"}})

	data, err := l.Load(ctx, srv.URL+"/templates/job.yaml")
	if err != nil || string(data) != jobYAML {
		t.Fatalf("allowed template: %q, %v", data, err)
	}
	if data, err := l.Load(ctx, srv.URL+"/templates/moved.yaml"); err != nil || string(data) != jobYAML {
		t.Fatalf("redirect within the host and prefix: %q, %v", data, err)
	}
	_, err = l.Load(ctx, srv.URL+"/private/job.yaml")
	wantError(t, err, "is not in a location this agent allows", FlagName)
	_, err = l.Load(ctx, srv.URL+"/templates/../private/job.yaml")
	wantError(t, err, "is not in a location this agent allows")
	_, err = l.Load(ctx, srv.URL+"/templates/escape.yaml")
	wantError(t, err, "redirects to a location this agent does not allow")
	_, err = l.Load(ctx, srv.URL+"/templates/cross-host.yaml")
	wantError(t, err, "redirects to another host")
	_, err = l.Load(ctx, srv.URL+"/templates/missing.yaml")
	wantError(t, err, "answered HTTP 404")

	// A prefix naming the host wins over a scheme alone listed before it.
	both := mustLoader(t, Options{Allowed: []string{"http://", srv.URL + "/templates/"}})
	if data, err := both.Load(ctx, srv.URL+"/templates/job.yaml"); err != nil || string(data) != jobYAML {
		t.Fatalf("named host after http://: %q, %v", data, err)
	}
	_, err = both.Load(ctx, srv.URL+"/private/job.yaml")
	wantError(t, err, "loopback, link-local or private address")
}

func TestReadsAreCappedAtOneMiB(t *testing.T) {
	srv, _ := templateServer(t)
	l := mustLoader(t, Options{Allowed: []string{srv.URL + "/"}})
	for _, p := range []string{"/templates/big.yaml", "/templates/big-chunked.yaml"} {
		_, err := l.Load(context.Background(), srv.URL+p)
		wantError(t, err, "is larger than 1048576 bytes (1 MiB)")
	}
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("#"), MaxSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := l.LoadTrusted(context.Background(), big)
	wantError(t, err, "is larger than 1048576 bytes")
}

func TestTransportErrorsStayInTheAgentLog(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	l := mustLoader(t, Options{Allowed: []string{"http://" + addr + "/"}})
	_, err = l.Load(context.Background(), "http://"+addr+"/job.yaml")
	wantError(t, err, "cannot be read (the agent's log has the cause)")
	if strings.Contains(err.Error(), "refused") || strings.Contains(err.Error(), "dial") {
		t.Fatalf("the run would see the transport error: %v", err)
	}
}

func TestLocalFilesOnlyNextToTheAgentTemplate(t *testing.T) {
	root := t.TempDir()
	agentDir, secretDir := filepath.Join(root, "agent"), filepath.Join(root, "secret")
	for _, d := range []string{agentDir, secretDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p string) {
		if err := os.WriteFile(p, []byte(jobYAML), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(agentDir, "job.yaml"))
	write(filepath.Join(agentDir, "run.yaml"))
	write(filepath.Join(secretDir, "x.yaml"))
	if err := os.Symlink(filepath.Join(secretDir, "x.yaml"), filepath.Join(agentDir, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l := mustLoader(t, Options{AgentTemplate: filepath.Join(agentDir, "job.yaml")})

	for _, ok := range []string{filepath.Join(agentDir, "run.yaml"), "agent://" + filepath.Join(agentDir, "run.yaml"), "file://" + filepath.Join(agentDir, "run.yaml")} {
		if data, err := l.Load(ctx, ok); err != nil || string(data) != jobYAML {
			t.Fatalf("%s: %q, %v", ok, data, err)
		}
	}
	for _, refused := range []string{"file:///etc/passwd", "/etc/passwd", filepath.Join(secretDir, "x.yaml"), filepath.Join(agentDir, "..", "secret", "x.yaml"),
		filepath.Join(agentDir, "link.yaml"), filepath.Join(secretDir, "missing.yaml")} {
		_, err := l.Load(ctx, refused)
		wantError(t, err, "is not in a location this agent allows run configs to use", FlagName)
	}
	_, err := l.Load(ctx, filepath.Join(agentDir, "missing.yaml"))
	wantError(t, err, "doesn't exist")

	none := mustLoader(t, Options{Allowed: []string{"none"}, AgentTemplate: filepath.Join(agentDir, "job.yaml")})
	_, err = none.Load(ctx, filepath.Join(agentDir, "run.yaml"))
	wantError(t, err, "is not in a location this agent allows")
	if data, err := none.LoadTrusted(ctx, filepath.Join(secretDir, "x.yaml")); err != nil || string(data) != jobYAML {
		t.Fatalf("the agent's own template is trusted: %q, %v", data, err)
	}

	// An agent template at the root does not open every file.
	atRoot := mustLoader(t, Options{AgentTemplate: "/job.yaml"})
	_, err = atRoot.Load(ctx, filepath.Join(secretDir, "x.yaml"))
	wantError(t, err, "is not in a location this agent allows run configs to use", FlagName)
}

func TestBadAllowedLocationsNameTheFlag(t *testing.T) {
	for _, bad := range []string{"s3:///dir/", "ftp://host/", "https://"[:6]} {
		if _, err := New(Options{Allowed: []string{bad}}); err == nil || !strings.Contains(err.Error(), FlagName) {
			t.Errorf("%q: %v, want an error naming %s", bad, err, FlagName)
		}
	}
}

func TestPublicAddresses(t *testing.T) {
	for addr, want := range map[string]bool{
		"93.184.216.34": true, "2606:2800:220:1:248:1893:25c8:1946": true, "64:ff9b::5db8:d822": true,
		"127.0.0.1": false, "::1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.169.254": false, "fe80::1": false, "fd00:ec2::254": false, "100.64.0.1": false,
		"0.0.0.0": false, "::": false, "::ffff:127.0.0.1": false, "64:ff9b::a9fe:a9fe": false, "224.0.0.1": false,
	} {
		if got := publicAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("publicAddr(%s) = %v, want %v", addr, got, want)
		}
	}
}
