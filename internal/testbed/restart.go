package testbed

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// RestartAPIServer kills the cluster's kube-apiserver with SIGKILL, leaves it
// down for down, starts it again with the same command line and waits until
// it answers. Clients see connection errors meanwhile, as in a control-plane
// outage.
func (c *Cluster) RestartAPIServer(ctx context.Context, down time.Duration) error {
	pid, args, env, dir, err := c.findProcess("kube-apiserver")
	if err != nil {
		return err
	}
	// No other cluster may be created until this server has its port back.
	unlock := lockPorts()
	defer unlock()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("killing kube-apiserver (pid %d): %w", pid, err)
	}
	for i := 0; i < 100 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	// Hold the freed port while the server is down, so that a cluster another
	// test binary starts meanwhile cannot be given it; connections are closed
	// at once, as a dead server's would be.
	release := holdPort(flagValue(args, "--bind-address"), flagValue(args, "--secure-port"))
	select {
	case <-ctx.Done():
		release()
		return ctx.Err()
	case <-time.After(down):
	}
	release()
	logFile, err := os.OpenFile(filepath.Join(c.dir(), "kube-apiserver-restarted.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env, cmd.Dir, cmd.Stdout, cmd.Stderr = env, dir, logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting kube-apiserver again: %w", err)
	}
	go func() { _ = cmd.Wait() }()
	c.replacePid(pid, cmd.Process.Pid)
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil, nil
	})
}

// findProcess finds the cluster's process running the named tool: its pid,
// command line, environment and working folder.
func (c *Cluster) findProcess(tool string) (pid int, args, env []string, dir string, err error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, nil, nil, "", err
	}
	for _, e := range entries {
		p, convErr := strconv.Atoi(e.Name())
		if convErr != nil {
			continue
		}
		raw, readErr := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if readErr != nil || len(raw) == 0 {
			continue
		}
		cmdline := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		// kwokctl runs a copy of the tool from the cluster's own folder.
		if filepath.Base(cmdline[0]) != tool || !bytes.Contains(raw, []byte(c.dir())) {
			continue
		}
		rawEnv, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		return p, cmdline, strings.Split(strings.TrimRight(string(rawEnv), "\x00"), "\x00"), cwd, nil
	}
	return 0, nil, nil, "", fmt.Errorf("no %s process of cluster %s found", tool, c.Name)
}

// replacePid points pid files naming the old process at the new one, so the
// cluster's teardown stops the restarted process.
func (c *Cluster) replacePid(old, pid int) {
	_ = filepath.WalkDir(c.dir(), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".pid") {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err == nil && strings.TrimSpace(string(raw)) == strconv.Itoa(old) {
			_ = os.WriteFile(path, []byte(strconv.Itoa(pid)), 0o644)
		}
		return nil
	})
}

// flagValue returns a command line's --name=value or --name value, or "".
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// holdPort listens on host:port, closing every connection it accepts, until
// the returned function is called. Without a port it holds nothing.
func holdPort(host, port string) (release func()) {
	if port == "" {
		return func() {}
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_ = conn.Close()
		}
	}()
	return func() {
		_ = ln.Close()
		<-done
	}
}
