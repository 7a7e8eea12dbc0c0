package jobs

import (
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// columns of the jobs table; Priority 1 columns appear with -o wide.
var columns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name"},
	{Name: "Flow", Type: "string"},
	{Name: "Flow Run", Type: "string"},
	{Name: "Status", Type: "string"},
	{Name: "Completions", Type: "string"},
	{Name: "Duration", Type: "string"},
	{Name: "Age", Type: "string"},
	{Name: "Flow Run ID", Type: "string", Priority: 1},
	{Name: "Image", Type: "string", Priority: 1},
	{Name: "Node", Type: "string", Priority: 1},
	{Name: "Agent", Type: "string", Priority: 1},
}

// toTable builds a fresh table for the jobs (the printer changes it).
func toTable(jobs []batchv1.Job, podsByJob map[string][]*corev1.Pod, now time.Time) *metav1.Table {
	t := &metav1.Table{ColumnDefinitions: append([]metav1.TableColumnDefinition{}, columns...)}
	for i := range jobs {
		job := &jobs[i]
		pods := podsByJob[job.Namespace+"/"+job.Name]
		status := jobStatus(job, pods)
		if waiting, ok := waitingStatus(job, now); ok {
			status = waiting
		}
		t.Rows = append(t.Rows, metav1.TableRow{
			Cells: []any{
				job.Name,
				orNone(job.Annotations[manifest.AnnotationFlowName]),
				orNone(job.Annotations[manifest.AnnotationFlowRunName]),
				status,
				completions(job),
				jobDuration(job, now),
				age(job.CreationTimestamp.Time, now),
				orNone(job.Labels[manifest.LabelFlowRunID]),
				orNone(flowImage(job)),
				orNone(nodes(pods)),
				orNone(job.Labels[manifest.LabelAgent]),
			},
			Object: runtime.RawExtension{Object: job},
		})
	}
	return t
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func flowImage(job *batchv1.Job) string {
	cs := job.Spec.Template.Spec.Containers
	for _, c := range cs {
		if c.Name == manifest.FlowContainer {
			return c.Image
		}
	}
	if len(cs) > 0 {
		return cs[0].Image
	}
	return ""
}

func nodes(pods []*corev1.Pod) string {
	var out []string
	seen := map[string]bool{}
	for _, p := range pods {
		if n := p.Spec.NodeName; n != "" && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return strings.Join(out, ",")
}
