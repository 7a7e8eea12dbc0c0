// Package printing holds what the plugin's listing commands (jobs, runs)
// share to print kubectl-style: the table printer with -o wide and -A, the
// "No resources found" message, -o custom-columns, --sort-by and the List
// that -o json|yaml|name|jsonpath|go-template print.
package printing

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/util/jsonpath"
)

// Table prints a freshly built table (the printer changes it) as kubectl
// does: Priority 1 columns with wide, NAMESPACE with allNamespaces.
func Table(w io.Writer, table *metav1.Table, wide, allNamespaces, noHeaders bool) error {
	tw := printers.GetNewTabWriter(w)
	p := printers.NewTablePrinter(printers.PrintOptions{Wide: wide, WithNamespace: allNamespaces, NoHeaders: noHeaders})
	if err := p.PrintObj(table, tw); err != nil {
		return err
	}
	return tw.Flush()
}

// NoResources is kubectl's message for an empty listing, on stderr.
func NoResources(errOut io.Writer, allNamespaces bool, namespace string) {
	if allNamespaces {
		fmt.Fprintln(errOut, "No resources found")
		return
	}
	fmt.Fprintf(errOut, "No resources found in %s namespace.\n", namespace)
}

// List is what `kubectl get -o json|yaml` prints for many objects: a List
// whose items each carry their own apiVersion and kind.
func List(objs []map[string]any) *unstructured.UnstructuredList {
	list := &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]any{"resourceVersion": ""}}}
	for _, obj := range objs {
		list.Items = append(list.Items, unstructured.Unstructured{Object: obj})
	}
	return list
}

// ParseJSONPath accepts kubectl's forms: '{.a.b}' or '.a.b'.
func ParseJSONPath(expr string) (*jsonpath.JSONPath, error) {
	if !strings.HasPrefix(expr, "{") {
		expr = "{" + expr + "}"
	}
	jp := jsonpath.New("path").AllowMissingKeys(true)
	if err := jp.Parse(expr); err != nil {
		return nil, err
	}
	return jp, nil
}

// SortOrder returns the indexes of objs ordered by a JSONPath value:
// numbers as numbers when every value is one, else as text; stable.
func SortOrder(objs []map[string]any, expr string) ([]int, error) {
	jp, err := ParseJSONPath(expr)
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(objs))
	nums := make([]float64, len(objs))
	numeric := true
	for i, obj := range objs {
		var buf bytes.Buffer
		if err := jp.Execute(&buf, obj); err != nil {
			return nil, fmt.Errorf("--sort-by %q: %v", expr, err)
		}
		keys[i] = buf.String()
		if _, err := fmt.Sscanf(keys[i], "%g", &nums[i]); err != nil {
			numeric = false
		}
	}
	idx := make([]int, len(objs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		if numeric {
			return nums[idx[a]] < nums[idx[b]]
		}
		return keys[idx[a]] < keys[idx[b]]
	})
	return idx, nil
}

// CustomColumns prints -o custom-columns=HEADER:.json.path,...
func CustomColumns(w io.Writer, spec string, objs []map[string]any, noHeaders bool) error {
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
		jp, err := ParseJSONPath(expr)
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
	for _, obj := range objs {
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
