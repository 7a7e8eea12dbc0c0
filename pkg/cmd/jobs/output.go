package jobs

import (
	"io"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/cmd/printing"
)

// toUnstructured turns a Job into a map with its apiVersion and kind set.
func toUnstructured(job *batchv1.Job) (map[string]any, error) {
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(job)
	if err != nil {
		return nil, err
	}
	obj["apiVersion"], obj["kind"] = "batch/v1", "Job"
	return obj, nil
}

func toObjects(jobs []batchv1.Job) ([]map[string]any, error) {
	objs := make([]map[string]any, 0, len(jobs))
	for i := range jobs {
		obj, err := toUnstructured(&jobs[i])
		if err != nil {
			return nil, err
		}
		objs = append(objs, obj)
	}
	return objs, nil
}

// toList is what `kubectl get -o json|yaml` prints for many Jobs.
func toList(jobs []batchv1.Job) (*unstructured.UnstructuredList, error) {
	objs, err := toObjects(jobs)
	if err != nil {
		return nil, err
	}
	return printing.List(objs), nil
}

// parseJSONPath accepts kubectl's forms: '{.a.b}' or '.a.b'.
var parseJSONPath = printing.ParseJSONPath

// sortJobs orders the Jobs by a JSONPath value: numbers as numbers, the rest as text.
func sortJobs(jobs []batchv1.Job, expr string) error {
	objs, err := toObjects(jobs)
	if err != nil {
		return err
	}
	idx, err := printing.SortOrder(objs, expr)
	if err != nil {
		return err
	}
	sorted := make([]batchv1.Job, len(jobs))
	for i, j := range idx {
		sorted[i] = jobs[j]
	}
	copy(jobs, sorted)
	return nil
}

// printCustomColumns prints -o custom-columns=HEADER:.json.path,...
func printCustomColumns(w io.Writer, spec string, jobs []batchv1.Job, noHeaders bool) error {
	objs, err := toObjects(jobs)
	if err != nil {
		return err
	}
	return printing.CustomColumns(w, spec, objs, noHeaders)
}
