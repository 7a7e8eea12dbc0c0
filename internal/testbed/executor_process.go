package testbed

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// podProcess is the local process of one pod's flow container.
type podProcess struct {
	x         *executor
	pod       *corev1.Pod
	container int
	done      chan struct{}

	mu       sync.Mutex
	cmd      *exec.Cmd
	killed   string // why the executor killed it; "" when it exited by itself
	oom      bool
	finished bool
}

func (p *podProcess) dir() string {
	return filepath.Join(p.x.root, p.pod.Namespace+"_"+p.pod.Name+"_"+string(p.pod.UID))
}

func (p *podProcess) logPath() string {
	return filepath.Join(p.dir(), p.pod.Spec.Containers[p.container].Name+".log")
}

// memoryPoll is how often the executor sums the container's resident memory.
const memoryPoll = 100 * time.Millisecond

func (p *podProcess) run(ctx context.Context) {
	defer close(p.done)
	started := time.Now()
	code, reason, message := p.execute(ctx)
	p.mu.Lock()
	killed := p.killed
	p.finished = true
	p.mu.Unlock()
	if killed != "" {
		// The pod is gone or going: there is no status to write, as a
		// kubelet whose pod is deleted writes none that anyone reads.
		return
	}
	if err := p.writeTerminated(ctx, code, reason, message, started); err != nil && ctx.Err() == nil {
		p.x.logger("pod %s/%s: writing the container's terminated state: %v", p.pod.Namespace, p.pod.Name, err)
	}
}

// execute runs the process to its end and returns its exit code, the
// container's reason (Completed, Error, OOMKilled) and a message.
func (p *podProcess) execute(ctx context.Context) (int32, string, string) {
	c := &p.pod.Spec.Containers[p.container]
	if err := os.MkdirAll(filepath.Join(p.dir(), "home"), 0o755); err != nil {
		return 128, "ContainerCannotRun", err.Error()
	}
	env, err := containerEnv(ctx, p.x.c.Client, p.pod, c)
	if err != nil {
		// A real kubelet keeps such a container waiting (CreateContainerConfigError);
		// the executor ends it instead so that a test sees the cause at once.
		return 128, "CreateContainerConfigError", err.Error()
	}
	argv := append(append([]string{}, c.Command...), c.Args...)
	if len(argv) == 0 {
		return 128, "ContainerCannotRun", "the container has neither command nor args"
	}
	path := os.Getenv("PATH")
	pythonPath := FlowsDir()
	if c.Image == ImageImportError {
		broken, err := p.x.brokenPrefect()
		if err != nil {
			return 128, "ContainerCannotRun", err.Error()
		}
		pythonPath = broken + ":" + pythonPath
	}
	base := []string{
		"PATH=" + p.x.bin + ":" + path,
		"HOME=" + filepath.Join(p.dir(), "home"),
		"PYTHONPATH=" + pythonPath,
		"PYTHONUNBUFFERED=1",
		"LANG=C.UTF-8",
		"HOSTNAME=" + p.pod.Name,
	}
	exe := argv[0]
	if !strings.Contains(exe, "/") {
		if found, err := lookPath(exe, p.x.bin+":"+path); err == nil {
			exe = found
		}
	}
	cmd := exec.Command(exe, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Env = append(base, env...)
	cmd.Dir = filepath.Join(p.dir(), "home")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	logFile, err := os.Create(p.logPath())
	if err != nil {
		return 128, "ContainerCannotRun", err.Error()
	}
	defer logFile.Close()
	if err := p.serveLog(ctx); err != nil {
		p.x.logger("pod %s/%s: kubectl logs will not serve its log: %v", p.pod.Namespace, p.pod.Name, err)
	}
	var logMu sync.Mutex
	// Pipes of our own: the container ends when its main process does, and
	// a child still holding them must not keep the executor reading.
	outR, outW, err := os.Pipe()
	if err != nil {
		return 128, "ContainerCannotRun", err.Error()
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return 128, "ContainerCannotRun", err.Error()
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	p.mu.Lock()
	if p.killed != "" {
		p.mu.Unlock()
		outR.Close()
		outW.Close()
		errR.Close()
		errW.Close()
		return 137, "Error", p.killed
	}
	startErr := cmd.Start()
	outW.Close()
	errW.Close()
	if startErr != nil {
		p.mu.Unlock()
		outR.Close()
		errR.Close()
		return 128, "ContainerCannotRun", startErr.Error()
	}
	p.cmd = cmd
	p.mu.Unlock()
	var copies sync.WaitGroup
	for stream, r := range map[string]*os.File{"stdout": outR, "stderr": errR} {
		copies.Add(1)
		go func() {
			defer copies.Done()
			defer r.Close()
			criLines(r, stream, logFile, &logMu)
		}()
	}
	limit := c.Resources.Limits.Memory().Value()
	watchDone := make(chan struct{})
	if limit > 0 {
		go p.watchMemory(cmd.Process.Pid, limit, watchDone)
	}
	err = cmd.Wait()
	close(watchDone)
	// What the main process left behind ends with it, as in a container.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	copies.Wait()
	p.mu.Lock()
	oom := p.oom
	p.mu.Unlock()
	if oom {
		return 137, "OOMKilled", ""
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0, "Completed", ""
	case errors.As(err, &exitErr):
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int32(ws.Signal()), "Error", p.fallbackMessage(c)
		}
		return int32(exitErr.ExitCode()), "Error", p.fallbackMessage(c)
	}
	return 128, "Error", err.Error()
}

// The kubelet's bounds on a termination message taken from the log.
const (
	fallbackMessageLines = 80
	fallbackMessageBytes = 2048
)

// fallbackMessage is the termination message of a container that failed
// under terminationMessagePolicy FallbackToLogsOnError, as the kubelet makes
// it: the last 80 lines of its log, at most the last 2048 bytes. The
// executor cannot give the process a termination-log file of its own, so
// the File policy (the default) always leaves the message empty here.
func (p *podProcess) fallbackMessage(c *corev1.Container) string {
	if c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
		return ""
	}
	raw, err := os.ReadFile(p.logPath())
	if err != nil {
		return ""
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(string(raw), "\n"), "\n") {
		// timestamp stream tag content
		if parts := strings.SplitN(l, " ", 4); len(parts) == 4 {
			lines = append(lines, parts[3])
		}
	}
	if len(lines) > fallbackMessageLines {
		lines = lines[len(lines)-fallbackMessageLines:]
	}
	msg := strings.Join(lines, "\n")
	if len(msg) > fallbackMessageBytes {
		msg = msg[len(msg)-fallbackMessageBytes:]
	}
	return msg
}

// criLines copies a stream into the log in the container runtime's format,
// which kubelet and kwok read: "<RFC 3339 time> <stream> F <line>".
func criLines(r io.Reader, stream string, w io.Writer, mu *sync.Mutex) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		mu.Lock()
		fmt.Fprintf(w, "%s %s F %s\n", time.Now().UTC().Format(time.RFC3339Nano), stream, sc.Text())
		mu.Unlock()
	}
	_, _ = io.Copy(io.Discard, r)
}

// watchMemory kills the process group, as the kernel's OOM killer kills a
// cgroup's processes, once their resident memory passes the limit.
func (p *podProcess) watchMemory(pgid int, limit int64, done <-chan struct{}) {
	t := time.NewTicker(memoryPoll)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		if groupRSS(pgid) > limit {
			p.mu.Lock()
			p.oom = true
			p.mu.Unlock()
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			return
		}
	}
}

// groupRSS sums the resident memory of a process group's processes.
func groupRSS(pgid int) int64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	page := int64(os.Getpagesize())
	var total int64
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ... ; comm may hold spaces: cut after ')'.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) < 22 {
			continue
		}
		if g, _ := strconv.Atoi(fields[2]); g != pgid {
			continue
		}
		rss, _ := strconv.ParseInt(fields[21], 10, 64)
		total += rss * page
	}
	return total
}

// terminate stops the process as a kubelet stops a deleted pod's container:
// SIGTERM, then SIGKILL after the grace period (at most 5 s here).
func (p *podProcess) terminate(why string, grace time.Duration) {
	p.mu.Lock()
	if p.finished {
		p.mu.Unlock()
		return
	}
	first := p.killed == ""
	if first {
		p.killed = why
	}
	cmd := p.cmd
	p.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	pgid := cmd.Process.Pid
	if grace <= 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		return
	}
	if !first {
		return
	}
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	if grace > 5*time.Second {
		grace = 5 * time.Second
	}
	go func() {
		select {
		case <-p.done:
		case <-time.After(grace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		}
	}()
}

// writeTerminated writes the container's terminated state and the pod's
// phase, as a kubelet does when a container of a pod that never restarts ends.
func (p *podProcess) writeTerminated(ctx context.Context, code int32, reason, message string, started time.Time) error {
	pods := p.x.c.Client.CoreV1().Pods(p.pod.Namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pod, err := pods.Get(ctx, p.pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && (pod.UID != p.pod.UID || pod.DeletionTimestamp != nil)) {
			return nil
		}
		if err != nil {
			return err
		}
		now := metav1.Now()
		name := pod.Spec.Containers[p.container].Name
		term := &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason, Message: message,
			StartedAt: metav1.NewTime(started), FinishedAt: now}
		found := false
		for i := range pod.Status.ContainerStatuses {
			cs := &pod.Status.ContainerStatuses[i]
			if cs.Name == name {
				cs.State = corev1.ContainerState{Terminated: term}
				cs.Ready, found = false, true
				f := false
				cs.Started = &f
			}
		}
		if !found {
			pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{
				Name: name, Image: pod.Spec.Containers[p.container].Image, State: corev1.ContainerState{Terminated: term}})
		}
		phase := corev1.PodSucceeded
		condReason := "PodCompleted"
		if code != 0 {
			phase, condReason = corev1.PodFailed, "PodFailed"
		}
		if len(pod.Spec.Containers) > 1 && pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			// Other containers keep running; the pod ends when they all have.
			for _, cs := range pod.Status.ContainerStatuses {
				if cs.State.Terminated == nil {
					phase = pod.Status.Phase
				}
			}
		}
		pod.Status.Phase = phase
		for i := range pod.Status.Conditions {
			cond := &pod.Status.Conditions[i]
			if cond.Type == corev1.PodReady || cond.Type == corev1.ContainersReady {
				cond.Status, cond.Reason, cond.LastTransitionTime = corev1.ConditionFalse, condReason, now
			}
		}
		_, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
		return err
	})
}

// lookPath finds a program on a PATH other than the test process's own.
func lookPath(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}
