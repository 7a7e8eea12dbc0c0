package memlimit

import (
	"runtime/debug"
	"testing"
	"testing/fstest"
)

func TestCgroupLimit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  int64
		ok    bool
	}{
		{"v2 container with its own namespace", map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "536870912\n",
		}, 536870912, true},
		{"v2 on the host's hierarchy", map[string]string{
			"proc/self/cgroup": "0::/kubepods.slice/pod1/ctr\n",
			"sys/fs/cgroup/kubepods.slice/pod1/ctr/memory.max": "268435456\n",
			"sys/fs/cgroup/memory.max":                         "max\n",
		}, 268435456, true},
		{"v2 without a limit", map[string]string{
			"proc/self/cgroup":         "0::/\n",
			"sys/fs/cgroup/memory.max": "max\n",
		}, 0, false},
		{"v1 with a limit", map[string]string{
			"proc/self/cgroup": "12:cpu,cpuacct:/x\n11:memory:/kubepods/pod1/ctr\n",
			"sys/fs/cgroup/memory/kubepods/pod1/ctr/memory.limit_in_bytes": "134217728\n",
		}, 134217728, true},
		{"v1 without a limit", map[string]string{
			"proc/self/cgroup":                           "11:memory:/\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
		}, 0, false},
		{"no cgroup files", map[string]string{}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fstest.MapFS{}
			for name, data := range tc.files {
				root[name] = &fstest.MapFile{Data: []byte(data)}
			}
			got, ok := CgroupLimit(root)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("CgroupLimit = %d, %v; want %d, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestGOMEMLIMITWins(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "123MiB")
	// The runtime read GOMEMLIMIT at start (before t.Setenv), so only the
	// source is checked here: Set must not replace a limit the user chose.
	if _, from := Set(); from != "GOMEMLIMIT" {
		t.Fatalf("limit taken from %q with GOMEMLIMIT set", from)
	}
}

func TestContainerLimitFromTheEnvironment(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	t.Setenv(ContainerLimitEnv, "536870912") // 512Mi, as resourceFieldRef writes it
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	got, from := Set()
	if from != ContainerLimitEnv || got != 536870912*9/10 || debug.SetMemoryLimit(-1) != got {
		t.Fatalf("Set = %d from %q (runtime %d), want 90%% of 512Mi from %s", got, from, debug.SetMemoryLimit(-1), ContainerLimitEnv)
	}
}

func TestGOGCWins(t *testing.T) {
	t.Setenv("GOGC", "100")
	if SetGCPercent() {
		t.Fatal("SetGCPercent replaced the GOGC the user set")
	}
}

func TestGCPercentWithoutGOGC(t *testing.T) {
	t.Setenv("GOGC", "")
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	if !SetGCPercent() {
		t.Fatal("SetGCPercent did nothing with GOGC unset")
	}
	if got := debug.SetGCPercent(100); got != GCPercent {
		t.Fatalf("GC percent %d, want %d", got, GCPercent)
	}
}
