// Command release-check checks the release setup offline: `goreleaser check`,
// a snapshot release (the host platform only, or all six with -all), the
// archives and checksums, the krew manifests with validate-krew-manifest, and
// a krew install of the snapshot, after which `kubectl prefect version`
// must print the snapshot's version. `make release-check` runs it.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/kubectl-prefect/kubectl-prefect/internal/testbed"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "release-check: %v\n", err)
		os.Exit(1)
	}
}

var platforms = []string{"linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64", "windows/amd64", "windows/arm64"}

func run() error {
	all := flag.Bool("all", false, "build all six platforms instead of this machine's")
	flag.Parse()
	root := testbed.RepoRoot()
	tool := func(name string) string { return filepath.Join(testbed.ToolsDir(), name) }

	step("goreleaser check")
	if err := sh(root, nil, tool("goreleaser"), "check"); err != nil {
		return err
	}

	want := platforms
	config := filepath.Join(root, ".goreleaser.yaml")
	if !*all {
		want = []string{runtime.GOOS + "/" + runtime.GOARCH}
		narrowed, err := narrowConfig(config, runtime.GOOS, runtime.GOARCH)
		if err != nil {
			return err
		}
		defer os.Remove(narrowed)
		config = narrowed
	}
	step("goreleaser release --snapshot for %s", strings.Join(want, ", "))
	if err := sh(root, nil, tool("goreleaser"), "release", "--snapshot", "--clean", "--skip=docker", "--config", config); err != nil {
		return err
	}
	dist := filepath.Join(root, "dist")

	step("archives and checksums")
	sums, err := readChecksums(filepath.Join(dist, "checksums.txt"))
	if err != nil {
		return err
	}
	manifest, err := os.ReadFile(filepath.Join(dist, "krew", "prefect.yaml"))
	if err != nil {
		return fmt.Errorf("goreleaser wrote no krew manifest: %w", err)
	}
	var plugin struct {
		Spec struct {
			Version   string
			Platforms []struct {
				URI, Sha256 string
				Selector    struct{ MatchLabels map[string]string }
			}
		}
	}
	if err := yaml.Unmarshal(manifest, &plugin); err != nil {
		return err
	}
	if len(plugin.Spec.Platforms) != len(want) {
		return fmt.Errorf("the krew manifest has %d platforms, want %d", len(plugin.Spec.Platforms), len(want))
	}
	var hostArchive string
	for _, p := range plugin.Spec.Platforms {
		name := filepath.Base(p.URI)
		data, err := os.ReadFile(filepath.Join(dist, name))
		if err != nil {
			return fmt.Errorf("archive %s: %w", name, err)
		}
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != p.Sha256 || sums[name] != p.Sha256 {
			return fmt.Errorf("archive %s: sha256 differs between the file, checksums.txt and the manifest", name)
		}
		out, err := output(dist, nil, "tar", "tzf", name)
		if err != nil {
			return err
		}
		binary := "kubectl-prefect"
		if p.Selector.MatchLabels["os"] == "windows" {
			binary += ".exe"
		}
		// The krew archive carries the plugin alone; the agent binary is for the image.
		got := strings.Fields(out)
		sort.Strings(got)
		if want := []string{"LICENSE", "README.md", binary, "kubectl_complete-prefect"}; strings.Join(got, " ") != strings.Join(want, " ") {
			return fmt.Errorf("archive %s holds %v, want %v", name, got, want)
		}
		if p.Selector.MatchLabels["os"] == runtime.GOOS && p.Selector.MatchLabels["arch"] == runtime.GOARCH {
			hostArchive = filepath.Join(dist, name)
		}
		fmt.Printf("    %s  %s\n", p.Sha256, name)
	}

	step("the agent image's binary")
	agents, _ := filepath.Glob(filepath.Join(dist, "prefect-agent_linux_*", "prefect-agent"))
	if runtime.GOOS == "linux" && len(agents) == 0 {
		return fmt.Errorf("goreleaser built no prefect-agent binary for the image")
	}
	for _, a := range agents {
		if fi, err := os.Stat(a); err == nil {
			fmt.Printf("    %s  %.1f MB\n", strings.TrimPrefix(a, dist+"/"), float64(fi.Size())/1e6)
		}
	}

	step("validate-krew-manifest")
	if err := sh(root, nil, tool("validate-krew-manifest"), "-manifest", filepath.Join(dist, "krew", "prefect.yaml"), "-skip-install"); err != nil {
		return err
	}
	if err := sh(root, nil, tool("validate-krew-manifest"), "-manifest", filepath.Join(root, "plugins", "prefect.yaml"), "-skip-install"); err != nil {
		return err
	}

	step("krew install from the local manifest and archive")
	krewRoot, err := os.MkdirTemp("", "krew-root-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(krewRoot)
	env := []string{"KREW_ROOT=" + krewRoot, "KREW_NO_UPGRADE_CHECK=1", "PATH=" + filepath.Join(krewRoot, "bin") + ":" + os.Getenv("PATH")}
	if err := sh(root, env, tool("krew"), "install", "--manifest="+filepath.Join(dist, "krew", "prefect.yaml"), "--archive="+hostArchive); err != nil {
		return err
	}
	out, err := output(root, env, tool("kubectl"), "prefect", "version", "--client")
	if err != nil {
		return err
	}
	fmt.Print(indent(out))
	if !strings.Contains(out, "Client Version: "+plugin.Spec.Version+"\n") {
		return fmt.Errorf("kubectl prefect version does not print the snapshot version %s", plugin.Spec.Version)
	}
	step("release check passed (%s)", plugin.Spec.Version)
	return nil
}

func step(format string, args ...any) { fmt.Printf("==> "+format+"\n", args...) }

// narrowConfig writes a copy of the goreleaser config that builds one platform.
func narrowConfig(path, goos, goarch string) (string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		return "", err
	}
	builds, _ := cfg["builds"].([]any)
	for _, b := range builds {
		if m, ok := b.(map[string]any); ok {
			m["goos"], m["goarch"] = []string{goos}, []string{goarch}
		}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".goreleaser-host-*.yaml")
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = f.Write(out)
	return f.Name(), err
}

func readChecksums(path string) (map[string]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			out[f[1]] = f[0]
		}
	}
	return out, nil
}

func sh(dir string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", filepath.Base(name), strings.Join(args, " "), err)
	}
	return nil
}

func output(dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n    ") + "\n"
}
