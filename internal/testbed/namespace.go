package testbed

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SkipMessage is why a test that needs the control plane was skipped.
const SkipMessage = "needs the test bed's control plane, which does not start under -short (run `make test` or go test without -short)"

// Require skips the test when there is no cluster (under -short). It is
// safe to call on a nil *Cluster.
func (c *Cluster) Require(t testing.TB) {
	t.Helper()
	if c == nil {
		t.Skip(SkipMessage)
	}
}

// Namespace creates a namespace for one test and deletes it when the test
// ends. Without a cluster (under -short) it skips the test.
func (c *Cluster) Namespace(t testing.TB, labels ...string) string {
	t.Helper()
	c.Require(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-" + slug(t.Name()) + "-", Labels: map[string]string{}}}
	for i := 0; i+1 < len(labels); i += 2 {
		ns.Labels[labels[i]] = labels[i+1]
	}
	created, err := c.Client.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating a test namespace: %v", err)
	}
	t.Cleanup(func() {
		_ = c.Client.CoreV1().Namespaces().Delete(context.Background(), created.Name, metav1.DeleteOptions{})
	})
	return created.Name
}

func slug(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
		if b.Len() >= 30 {
			break
		}
	}
	return strings.Trim(b.String(), "-")
}
