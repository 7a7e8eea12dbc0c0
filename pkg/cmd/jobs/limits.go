package jobs

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	batchv1 "k8s.io/api/batch/v1"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// limitLines say how much of each agent concurrency limit is in use: the
// limits recorded on the Jobs (prefect.io/concurrency-limits), each with the
// unfinished Jobs it counts among those listed, one line per set of limits.
func limitLines(jobs []batchv1.Job) []string {
	sets := map[string][]agent.Limit{}
	for _, j := range jobs {
		text := j.Annotations[manifest.AnnotationConcurrencyLimits]
		if _, seen := sets[text]; seen || text == "" {
			continue
		}
		var limits []agent.Limit
		for _, item := range strings.Split(text, ",") {
			if l, err := agent.ParseLimit(item); err == nil {
				limits = append(limits, l)
			}
		}
		sets[text] = limits
	}
	texts := make([]string, 0, len(sets))
	for text := range sets {
		texts = append(texts, text)
	}
	sort.Strings(texts)
	var out []string
	for _, text := range texts {
		limits := sets[text]
		used := make([]int, len(limits))
		for _, j := range jobs {
			if j.Annotations[manifest.AnnotationConcurrencyLimits] != text || manifest.JobFinished(&j) || j.DeletionTimestamp != nil {
				continue
			}
			var labels []string
			_ = json.Unmarshal([]byte(j.Annotations[manifest.AnnotationFlowRunLabels]), &labels)
			for i, l := range limits {
				if l.Matches(j.Annotations[manifest.AnnotationFlowName], labels) {
					used[i]++
				}
			}
		}
		parts := make([]string, len(limits))
		for i, l := range limits {
			parts[i] = fmt.Sprintf("%s %d/%d", l.Name(), used[i], l.Max)
		}
		out = append(out, "Concurrency limits in use (--limit "+text+"): "+strings.Join(parts, ", "))
	}
	return out
}

// printLimits writes the limit lines on stderr under a table of every Job
// of the namespace (filters would leave Jobs out of the count).
func (o *Options) printLimits(jobs []batchv1.Job) {
	if (o.output != "" && o.output != "wide") || o.Watch || len(o.names) > 0 || o.Flow != "" || o.FlowRun != "" || o.Selector != "" {
		return
	}
	for _, line := range limitLines(jobs) {
		fmt.Fprintln(o.ErrOut, line)
	}
}
