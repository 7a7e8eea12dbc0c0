package testbed

import (
	"os"
	"path/filepath"
	"syscall"
)

// portLockPath is shared by every test binary on the machine, whichever
// checkout it was built from: kwokctl picks a new cluster's ports by trying
// which are free, so a cluster created while another's kube-apiserver is down
// (or still binding after a restart) can be given that server's port.
var portLockPath = filepath.Join(os.TempDir(), "kubectl-prefect-testbed-ports.lock")

// lockPorts holds the machine-wide lock that makes creating a cluster and
// restarting a kube-apiserver exclusive of each other. It returns the unlock
// function; when the lock file cannot be used it returns a no-op, and the
// test bed runs as it did without the lock.
func lockPorts() (unlock func()) {
	f, err := os.OpenFile(portLockPath, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return func() {}
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		_ = f.Close()
		return func() {}
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		_ = f.Close()
	}
}
