package testbed

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

var cluster *Cluster

func TestMain(m *testing.M) { os.Exit(Run(m, &cluster)) }

func job(name, image string, requests corev1.ResourceList) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: batchv1.JobSpec{
			BackoffLimit: new(int32),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers:    []corev1.Container{{Name: "flow", Image: image, Resources: corev1.ResourceRequirements{Requests: requests}}},
			}},
		},
	}
}

// podOf waits until the Job's pod satisfies cond and returns it.
func podOf(t *testing.T, ns, jobName string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var found *corev1.Pod
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		pods, err := cluster.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + jobName})
		if err != nil {
			return false, err
		}
		for i := range pods.Items {
			if cond(&pods.Items[i]) {
				found = &pods.Items[i]
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		pods, _ := cluster.Client.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "job-name=" + jobName})
		t.Fatalf("pod of job %s never reached the expected state: %v; pods: %+v", jobName, err, pods.Items)
	}
	return found
}

func createJob(t *testing.T, ns string, j *batchv1.Job) {
	t.Helper()
	if _, err := cluster.Client.BatchV1().Jobs(ns).Create(context.Background(), j, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestJobRunsToCompletion(t *testing.T) {
	ns := cluster.Namespace(t)
	createJob(t, ns, job("ok", "prefecthq/prefect:1.4.1", nil))
	podOf(t, ns, "ok", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded && p.Spec.NodeName != "" })
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		j, err := cluster.Client.BatchV1().Jobs(ns).Get(ctx, "ok", metav1.GetOptions{})
		return err == nil && j.Status.Succeeded == 1 && j.Status.CompletionTime != nil, err
	})
	if err != nil {
		t.Fatalf("the Job controller never marked the job complete: %v", err)
	}
}

func TestImagePullFailure(t *testing.T) {
	ns := cluster.Namespace(t)
	createJob(t, ns, job("pull", ImageImagePull, nil))
	pod := podOf(t, ns, "pull", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Waiting != nil &&
			p.Status.ContainerStatuses[0].State.Waiting.Reason == "ImagePullBackOff"
	})
	if pod.Status.Phase != corev1.PodPending {
		t.Fatalf("a pod that cannot pull its image is %s, want Pending", pod.Status.Phase)
	}
	if msg := pod.Status.ContainerStatuses[0].State.Waiting.Message; !strings.Contains(msg, ImageImagePull) {
		t.Fatalf("waiting message %q does not name the image", msg)
	}
}

func TestUnschedulablePod(t *testing.T) {
	ns := cluster.Namespace(t)
	createJob(t, ns, job("big", "prefecthq/prefect:1.4.1", corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(UnschedulableCPU)}))
	pod := podOf(t, ns, "big", func(p *corev1.Pod) bool {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonUnschedulable {
				return true
			}
		}
		return false
	})
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && !strings.Contains(c.Message, "Insufficient cpu") {
			t.Fatalf("scheduler message %q does not say why", c.Message)
		}
	}
}

func TestContainerFates(t *testing.T) {
	for _, tc := range []struct {
		image, reason string
		exit          int32
	}{{ImageExit1, "Error", 1}, {ImageOOM, "OOMKilled", 137}} {
		t.Run(tc.reason, func(t *testing.T) {
			ns := cluster.Namespace(t)
			createJob(t, ns, job("fate", tc.image, nil))
			pod := podOf(t, ns, "fate", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
			term := pod.Status.ContainerStatuses[0].State.Terminated
			if term == nil || term.Reason != tc.reason || term.ExitCode != tc.exit {
				t.Fatalf("terminated state = %+v, want reason %s exit %d", term, tc.reason, tc.exit)
			}
		})
	}
}
