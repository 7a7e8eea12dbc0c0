package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"slices"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/agent/jobs"
	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// Each Job carries the agent that created it in the prefect.io/agent label,
// and job management watches only the Jobs carrying its own: two agents of
// different labels in one namespace, or this agent beside the 1.4.1 agent
// during a migration, never report, hold back or delete each other's Jobs.
//
// The identity is the agent's name and labels, the pair Prefect registers an
// agent under: replicas of one agent share it, agents that take different
// runs do not. It reads "<name>-<hash>": the name, cut to fit a label value,
// and 10 hex digits of a SHA-256 of the name and the sorted labels.
//
// Jobs made by earlier versions of this agent have no such label. At start
// the agent adopts those of its own (they carry its prefect.io/flow-run-version
// annotation, which the 1.4.1 agent never sets, and its labels in
// PREFECT__CLOUD__AGENT__LABELS) by adding the label; every other Job of
// Prefect's (another agent's, the 1.4.1 agent's) it leaves alone, and says
// how many.

// UniqueLabels sorts labels and drops repeats, as the agent takes its
// --label flags (never nil).
func UniqueLabels(labels []string) []string {
	out := slices.Compact(slices.Sorted(slices.Values(labels)))
	if out == nil {
		out = []string{}
	}
	return out
}

// AgentIdentity is the prefect.io/agent label value of an agent's Jobs.
func AgentIdentity(name string, labels []string) string {
	sorted := slices.Clone(labels)
	slices.Sort(sorted)
	sum := sha256.Sum256([]byte(name + "\x00" + strings.Join(sorted, "\x00")))
	prefix := invalidLabelChars.ReplaceAllString(name, "-")
	if len(prefix) > 52 {
		prefix = prefix[:52]
	}
	prefix = strings.Trim(prefix, "-_.")
	if prefix == "" {
		prefix = "agent"
	}
	return prefix + "-" + hex.EncodeToString(sum[:])[:10]
}

var invalidLabelChars = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// ownJobsSelector selects the Jobs this agent manages.
func (a *Agent) ownJobsSelector() string {
	return manifest.LabelIdentifier + "," + manifest.LabelAgent + "=" + a.cfg.Job.Owner
}

// adoptAndCountOthers adopts this agent's Jobs made before they carried its
// identity and logs how many Jobs of others it leaves alone.
func (a *Agent) adoptAndCountOthers(ctx context.Context, namespace string) {
	log := klog.FromContext(ctx)
	list, err := a.cfg.Kube.BatchV1().Jobs(namespace).List(ctx, metav1.ListOptions{
		LabelSelector: manifest.LabelIdentifier + "," + manifest.LabelAgent + "!=" + a.cfg.Job.Owner,
	})
	if err != nil {
		log.Error(err, "Could not list the Jobs of other agents; Jobs this agent made before it labelled them are not adopted")
		return
	}
	adopted, others := 0, 0
	for i := range list.Items {
		job := &list.Items[i]
		if !a.madeByThisAgent(job) {
			others++
			continue
		}
		patch := []byte(`{"metadata":{"labels":{"` + manifest.LabelAgent + `":"` + a.cfg.Job.Owner + `"}}}`)
		if _, err := a.cfg.Kube.BatchV1().Jobs(job.Namespace).Patch(ctx, job.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: jobs.FieldManager}); err != nil {
			log.Error(err, "Could not adopt a Job this agent made before it labelled its Jobs", "job", klog.KObj(job))
			continue
		}
		adopted++
	}
	log.Info("Managing only this agent's Jobs", "agentIdentity", a.cfg.Job.Owner, "label", manifest.LabelAgent,
		"adoptedFromEarlierVersions", adopted, "othersLeftAlone", others)
}

// madeByThisAgent tells a Job without the identity label that an earlier
// version of this agent made: its version annotation, and its flow container
// given this agent's labels.
func (a *Agent) madeByThisAgent(job *batchv1.Job) bool {
	if _, labelled := job.Labels[manifest.LabelAgent]; labelled {
		return false
	}
	if _, ours := job.Annotations[manifest.AnnotationFlowRunVersion]; !ours {
		return false
	}
	want := manifest.PythonList(a.cfg.Job.Labels)
	for _, c := range job.Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			if e.Name == "PREFECT__CLOUD__AGENT__LABELS" {
				return e.Value == want
			}
		}
	}
	return false
}
