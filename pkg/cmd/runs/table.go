package runs

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

// columns of the runs table; Priority 1 columns appear with -o wide.
var columns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name"},
	{Name: "Flow", Type: "string"},
	{Name: "State", Type: "string"},
	{Name: "Age", Type: "string"},
	{Name: "Job", Type: "string"},
	{Name: "Pod", Type: "string"},
	{Name: "Node", Type: "string"},
	{Name: "Attempts", Type: "integer"},
	{Name: "Drift", Type: "string"},
	{Name: "Run ID", Type: "string", Priority: 1},
	{Name: "Pod Name", Type: "string", Priority: 1},
}

// APIVersion and Kind of the objects -o json|yaml|name print for runs:
// flow runs are Prefect's, not Kubernetes objects; these name them.
const (
	APIVersion = "kubectl-prefect.io/v1alpha1"
	Kind       = "FlowRun"
)

// cells are a row's table cells.
func (r *row) cells(now time.Time) []any {
	job, pod, node, podName := "<none>", podStatus(r.Pod), "<none>", "<none>"
	if j := r.job(); j != nil {
		job = j.Name
	}
	if r.Pod != nil {
		podName = r.Pod.Name
		if r.Pod.Spec.NodeName != "" {
			node = r.Pod.Spec.NodeName
		}
	}
	state, age := r.State, "<unknown>"
	if !r.known {
		state = "<not in Prefect>"
	}
	if !r.StateTimestamp.IsZero() {
		age = duration.HumanDuration(now.Sub(r.StateTimestamp))
	}
	return []any{orNone(r.Name), orNone(r.Flow), state, age, job, pod, node, int64(len(r.Jobs)), joinOrNone(r.Drift), r.RunID, podName}
}

// toTable builds a fresh table (the printer changes it).
func toTable(rows []*row, now time.Time) *metav1.Table {
	t := &metav1.Table{ColumnDefinitions: append([]metav1.TableColumnDefinition{}, columns...)}
	for _, r := range rows {
		t.Rows = append(t.Rows, metav1.TableRow{Cells: r.cells(now), Object: rawObject(r)})
	}
	return t
}

// object is the row as -o json|yaml|jsonpath|custom-columns see it.
func (r *row) object() map[string]any {
	var jobs []any
	for _, j := range r.Jobs {
		jobs = append(jobs, j.Name)
	}
	status := map[string]any{"state": r.State, "attempts": int64(len(r.Jobs)), "jobs": jobs, "drift": toAny(r.Drift), "inPrefect": r.known}
	if !r.StateTimestamp.IsZero() {
		status["stateTimestamp"] = r.StateTimestamp.UTC().Format(time.RFC3339)
	}
	if j := r.job(); j != nil {
		status["job"] = j.Name
	}
	if r.Pod != nil {
		status["pod"] = map[string]any{"name": r.Pod.Name, "status": podStatus(r.Pod), "node": r.Pod.Spec.NodeName}
	}
	name := r.Name
	if name == "" {
		name = r.RunID
	}
	return map[string]any{
		"apiVersion": APIVersion, "kind": Kind,
		"metadata": map[string]any{"name": name, "namespace": r.Namespace},
		"spec":     map[string]any{"id": r.RunID, "flow": r.Flow},
		"status":   status,
	}
}

// rawObject carries the row's namespace for the table's NAMESPACE column.
func rawObject(r *row) runtime.RawExtension {
	return runtime.RawExtension{Object: &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": APIVersion, "kind": Kind, "metadata": map[string]any{"name": r.Name, "namespace": r.Namespace}}}}
}

func toAny(s []string) []any {
	out := make([]any, 0, len(s))
	for _, v := range s {
		out = append(out, v)
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
