package jobs

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/util/jsonpath"
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

// toList is what `kubectl get -o json|yaml` prints for many objects: a List
// whose items each carry their apiVersion and kind.
func toList(jobs []batchv1.Job) (*unstructured.UnstructuredList, error) {
	list := &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]any{"resourceVersion": ""}}}
	for i := range jobs {
		obj, err := toUnstructured(&jobs[i])
		if err != nil {
			return nil, err
		}
		list.Items = append(list.Items, unstructured.Unstructured{Object: obj})
	}
	return list, nil
}

// parseJSONPath accepts kubectl's forms: '{.a.b}' or '.a.b'.
func parseJSONPath(expr string) (*jsonpath.JSONPath, error) {
	if !strings.HasPrefix(expr, "{") {
		expr = "{" + expr + "}"
	}
	jp := jsonpath.New("sort").AllowMissingKeys(true)
	if err := jp.Parse(expr); err != nil {
		return nil, err
	}
	return jp, nil
}

// sortJobs orders the Jobs by a JSONPath value: numbers as numbers, the rest as text.
func sortJobs(jobs []batchv1.Job, expr string) error {
	jp, err := parseJSONPath(expr)
	if err != nil {
		return err
	}
	keys := make([]string, len(jobs))
	nums := make([]float64, len(jobs))
	numeric := true
	for i := range jobs {
		obj, err := toUnstructured(&jobs[i])
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := jp.Execute(&buf, obj); err != nil {
			return fmt.Errorf("--sort-by %q: %v", expr, err)
		}
		keys[i] = buf.String()
		if _, err := fmt.Sscanf(keys[i], "%g", &nums[i]); err != nil {
			numeric = false
		}
	}
	idx := make([]int, len(jobs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		if numeric {
			return nums[idx[a]] < nums[idx[b]]
		}
		return keys[idx[a]] < keys[idx[b]]
	})
	sorted := make([]batchv1.Job, len(jobs))
	for i, j := range idx {
		sorted[i] = jobs[j]
	}
	copy(jobs, sorted)
	return nil
}

// printCustomColumns prints -o custom-columns=HEADER:.json.path,...
func printCustomColumns(w io.Writer, spec string, jobs []batchv1.Job, noHeaders bool) error {
	type column struct {
		header string
		path   *jsonpath.JSONPath
	}
	var cols []column
	for _, part := range strings.Split(spec, ",") {
		header, expr, ok := strings.Cut(part, ":")
		if !ok || header == "" || expr == "" {
			return fmt.Errorf("-o custom-columns: %q is not HEADER:JSONPATH", part)
		}
		jp, err := parseJSONPath(expr)
		if err != nil {
			return fmt.Errorf("-o custom-columns: %q: %v", expr, err)
		}
		cols = append(cols, column{header, jp})
	}
	tw := printers.GetNewTabWriter(w)
	if !noHeaders {
		headers := make([]string, len(cols))
		for i, c := range cols {
			headers[i] = c.header
		}
		fmt.Fprintln(tw, strings.Join(headers, "\t"))
	}
	for i := range jobs {
		obj, err := toUnstructured(&jobs[i])
		if err != nil {
			return err
		}
		cells := make([]string, len(cols))
		for j, c := range cols {
			var buf bytes.Buffer
			if err := c.path.Execute(&buf, obj); err != nil {
				return err
			}
			cells[j] = buf.String()
			if cells[j] == "" {
				cells[j] = "<none>"
			}
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}
