package testbed

import (
	"os"
	"path/filepath"
)

// brokenPrefectInit is the package that shadows Prefect for
// ImageImportError: it says what it does on stdout, then fails to import a
// dependency the image lacks, so Python prints the traceback on stderr and
// the process exits 1 before any of Prefect runs.
const brokenPrefectInit = `# Written by the kubectl-prefect test bed (fate:import-error).
print("Loading the flow's Python environment", flush=True)
import testbed_missing_dependency  # noqa: F401  (no such module)
`

// BrokenPrefectMessage is the last line an ImageImportError container
// prints: Python's error for the missing dependency.
const BrokenPrefectMessage = "ModuleNotFoundError: No module named 'testbed_missing_dependency'"

// brokenPrefect returns the folder to put first on PYTHONPATH for
// ImageImportError, writing it once.
func (x *executor) brokenPrefect() (string, error) {
	x.brokenOnce.Do(func() {
		dir := filepath.Join(x.root, "import-error")
		if err := os.MkdirAll(filepath.Join(dir, "prefect"), 0o755); err != nil {
			x.brokenErr = err
			return
		}
		x.brokenErr = os.WriteFile(filepath.Join(dir, "prefect", "__init__.py"), []byte(brokenPrefectInit), 0o644)
		x.brokenDir = dir
	})
	return x.brokenDir, x.brokenErr
}
