package jobtemplate

import (
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// FlagName is the flag that lists the locations run configs may use; refusals name it.
const FlagName = "--allowed-template-locations"

// kind is a family of locations.
type kind int

const (
	kindFile kind = iota
	kindHTTP
	kindS3
	kindGCS
)

// location is a parsed template location.
type location struct {
	kind kind
	// scheme is http or https for kindHTTP.
	scheme string
	// host is the HTTP host (with port) or the bucket.
	host string
	// path is the cleaned absolute file path, the URL path or the object key.
	path string
	url  *url.URL
}

// parseLocation reads a local path (or file://, local://, agent://), an
// http(s):// address, or an s3://, gs:// or gcs:// object.
func parseLocation(raw string) (location, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || len(u.Scheme) == 1 { // a Windows drive letter is a path
		return fileLocation(raw)
	}
	switch strings.ToLower(u.Scheme) {
	case "file", "local", "agent":
		return fileLocation(u.Host + u.Path)
	case "http", "https":
		if u.Host == "" {
			return location{}, fmt.Errorf("%s has no host", raw)
		}
		return location{kind: kindHTTP, scheme: strings.ToLower(u.Scheme), host: strings.ToLower(u.Host), path: cleanURLPath(u.Path), url: u}, nil
	case "s3":
		return location{kind: kindS3, host: u.Host, path: strings.TrimPrefix(u.Path, "/"), url: u}, nil
	case "gs", "gcs":
		return location{kind: kindGCS, host: u.Host, path: strings.TrimPrefix(u.Path, "/"), url: u}, nil
	}
	return location{}, fmt.Errorf("unsupported scheme %s://, use a local path, https://, s3:// or gs://", u.Scheme)
}

func fileLocation(p string) (location, error) {
	if p == "" {
		return location{}, fmt.Errorf("empty path")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return location{}, err
	}
	return location{kind: kindFile, path: abs}, nil
}

// cleanURLPath resolves . and .. so that a prefix check cannot be walked out of.
func cleanURLPath(p string) string {
	if p == "" {
		return "/"
	}
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// rule is one allowed prefix.
type rule struct {
	location
	// anyHost: a scheme alone (https://, s3://): every host or bucket; for
	// HTTP only public addresses.
	anyHost bool
	// unresolved is a directory's path as given, before its links are resolved.
	unresolved string
}

// parseRule reads one allowed location prefix.
func parseRule(raw string) (rule, error) {
	switch strings.ToLower(raw) {
	case "http://", "https://", "s3://", "gs://", "gcs://":
		l := location{scheme: strings.ToLower(strings.TrimSuffix(raw, "://"))}
		switch l.scheme {
		case "http", "https":
			l.kind = kindHTTP
		case "s3":
			l.kind = kindS3
		default:
			l.kind, l.scheme = kindGCS, ""
		}
		return rule{location: l, anyHost: true}, nil
	}
	l, err := parseLocation(raw)
	if err != nil {
		return rule{}, fmt.Errorf("%s %q: %v", FlagName, raw, err)
	}
	if (l.kind == kindS3 || l.kind == kindGCS) && l.host == "" {
		return rule{}, fmt.Errorf("%s %q: name a bucket (s3://bucket/dir/) or give the scheme alone (s3://) for every bucket", FlagName, raw)
	}
	return fileRule(l), nil
}

// fileRule allows the files under a directory, as given and as resolved.
func fileRule(l location) rule {
	r := rule{location: l, unresolved: l.path}
	if l.kind == kindFile {
		if resolved, err := filepath.EvalSymlinks(l.path); err == nil {
			r.path = resolved
		}
	}
	return r
}

// matches tells whether the rule allows the location; for files l.path must
// already have its symbolic links resolved.
func (r rule) matches(l location) bool {
	if r.kind != l.kind {
		return false
	}
	switch l.kind {
	case kindFile:
		return under(r.path, l.path) || under(r.unresolved, l.path)
	case kindHTTP:
		if r.scheme != l.scheme {
			return false
		}
	}
	if r.anyHost {
		return true
	}
	return strings.EqualFold(r.host, l.host) && strings.HasPrefix(l.path, r.path)
}

// under tells whether p is dir or below it.
func under(dir, p string) bool {
	if dir == "" {
		return false
	}
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// defaultRules are the prefixes allowed when the flag is not given: remote
// schemes to public addresses, and local files under the directory of the
// agent's own template (when it is a local file).
func defaultRules(agentTemplate string) []rule {
	var rules []rule
	for _, s := range []string{"https://", "http://", "s3://", "gs://"} {
		r, _ := parseRule(s)
		rules = append(rules, r)
	}
	if agentTemplate == "" {
		return rules
	}
	if l, err := parseLocation(agentTemplate); err == nil && l.kind == kindFile {
		// A template at the root would open every file: its directory is
		// allowed only when it is not the root (name the root in the flag
		// to allow it).
		if dir, err := filepath.Abs(filepath.Dir(l.path)); err == nil && dir != filepath.Dir(dir) {
			rules = append(rules, fileRule(location{kind: kindFile, path: dir}))
		}
	}
	return rules
}

// resolveFile resolves a file location's symbolic links, so that a link
// inside an allowed directory cannot point out of it.
func resolveFile(l location) (location, error) {
	resolved, err := filepath.EvalSymlinks(l.path)
	if err != nil {
		if os.IsNotExist(err) {
			return l, shown("doesn't exist")
		}
		return l, shown("cannot be read")
	}
	l.path = resolved
	return l, nil
}
