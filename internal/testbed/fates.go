package testbed

// Images that make a simulated pod meet a fate (see stages.yaml). Any other
// image runs, and succeeds when a Job owns the pod.
const (
	ImageExit1     = "testbed.invalid/fate:exit-1"
	ImageOOM       = "testbed.invalid/fate:oom"
	ImageImagePull = "testbed.invalid/fate:image-pull"
	ImageRun       = "testbed.invalid/fate:run"
	// ImageSidecarExit1 keeps the container named flow running and makes
	// every other container of the pod exit 1 (a crashing sidecar).
	ImageSidecarExit1 = "testbed.invalid/fate:sidecar-exit-1"
	// ImagePrefect runs the flow container's command for real: the pod
	// executor (executor.go) runs it with Prefect 1.4.1's flow runner and
	// writes its exit to the pod, once a test started the executor with
	// RequireFlowRunner. kwok only makes such a pod Running.
	ImagePrefect = "testbed.invalid/fate:prefect"
	// ImageImportError is an image whose Python environment is broken: the
	// pod executor runs the flow container's command as for ImagePrefect,
	// but `import prefect` fails on a missing dependency, so the process
	// prints a line to stdout and Python's traceback to stderr, and exits 1
	// before Prefect starts (nothing reaches the run's Prefect log).
	ImageImportError = "testbed.invalid/fate:import-error"
)

// executorImages are the images whose flow container the pod executor runs.
var executorImages = map[string]bool{ImagePrefect: true, ImageImportError: true}

// UnschedulableCPU is a CPU request no simulated node can hold (they have 32).
const UnschedulableCPU = "1000"
