package agent

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Permission is one set of verbs the agent needs on a resource. Watched
// permissions apply where the agent manages Jobs: its namespace, or every
// namespace with --watch-all-namespaces (then a ClusterRole must grant them).
type Permission struct {
	Group    string
	Resource string
	Verbs    []string
	// ResourceName limits the permission to one object (the agent's Lease).
	ResourceName string
	// Watched marks what the agent needs in every namespace it watches; the
	// rest it needs in its own namespace only.
	Watched bool
}

// RequiredPermissions lists every verb the agent uses, so that the install
// Role and the start-up check come from one list. lease names the leader
// election Lease ("" without leader election): the agent creates it, then
// reads and renews only that one.
func RequiredPermissions(lease string) []Permission {
	perms := []Permission{
		{Group: "batch", Resource: "jobs", Verbs: []string{"create", "get"}},
		{Group: "batch", Resource: "jobs", Verbs: []string{"list", "watch", "patch", "delete"}, Watched: true},
		{Resource: "pods", Verbs: []string{"list", "watch"}, Watched: true},
		{Resource: "events", Verbs: []string{"list", "watch"}, Watched: true},
		// Events on its Jobs (jobs/events.go): created, and patched when repeated.
		{Resource: "events", Verbs: []string{"create", "patch"}, Watched: true},
		// A failed flow container's last lines, saved into the run log (jobs/evidence.go).
		{Resource: "pods/log", Verbs: []string{"get"}, Watched: true},
	}
	if lease != "" {
		perms = append(perms,
			Permission{Group: "coordination.k8s.io", Resource: "leases", Verbs: []string{"create"}},
			Permission{Group: "coordination.k8s.io", Resource: "leases", Verbs: []string{"get", "update"}, ResourceName: lease})
	}
	return perms
}

// CheckPermissions asks the API server (SelfSubjectAccessReview) whether the
// agent's identity holds every permission it needs, and names what is
// missing and how to grant it.
func CheckPermissions(ctx context.Context, kube kubernetes.Interface, namespace string, allNamespaces bool, lease string) error {
	var missing []string
	for _, p := range RequiredPermissions(lease) {
		ns, where := namespace, fmt.Sprintf("in namespace %q", namespace)
		if p.Watched && allNamespaces {
			ns, where = metav1.NamespaceAll, "in all namespaces (--watch-all-namespaces)"
		}
		for _, verb := range p.Verbs {
			resource, subresource, _ := strings.Cut(p.Resource, "/") // pods/log: resource pods, subresource log
			review := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
				ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Group: p.Group, Resource: resource, Subresource: subresource, Name: p.ResourceName},
			}}
			got, err := kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("checking the agent's permissions (%s %s): %w", verb, p.Resource, err)
			}
			if !got.Status.Allowed {
				missing = append(missing, fmt.Sprintf("%s %s %s", verb, resourceName(p.Group, p.Resource), where))
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	fix := "grant them with `kubectl prefect agent install --rbac`, or add them to the agent's Role"
	if allNamespaces {
		fix = "grant them with a ClusterRole and ClusterRoleBinding for the agent's ServiceAccount, or drop --watch-all-namespaces"
	}
	return fmt.Errorf("the agent may not %s: %s", strings.Join(missing, ", "), fix)
}

func resourceName(group, resource string) string {
	if group == "" {
		return resource
	}
	return resource + "." + group
}

// accessProblems holds the verbs the API server refused to the Job controller's
// watches, by resource, for /api/health.
type accessProblems struct {
	mu       sync.Mutex
	problems map[string]accessProblem
}

type accessProblem struct{ verb, message string }

// Observe records a refusal of verb on resource, and forgets it once the
// same verb succeeds.
func (p *accessProblems) Observe(resource, verb string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case err == nil:
		if p.problems[resource].verb == verb {
			delete(p.problems, resource)
		}
	case apierrors.IsForbidden(err):
		if p.problems == nil {
			p.problems = map[string]accessProblem{}
		}
		p.problems[resource] = accessProblem{verb: verb, message: fmt.Sprintf(
			"job management is stopped: the agent may not %s %s (%v); grant it with `kubectl prefect agent install --rbac` or add the verb to the agent's Role", verb, resource, err)}
	}
}

// message is the current problems, or "".
func (p *accessProblems) message() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	msgs := make([]string, 0, len(p.problems))
	for _, m := range p.problems {
		msgs = append(msgs, m.message)
	}
	sort.Strings(msgs)
	return strings.Join(msgs, "; ")
}
