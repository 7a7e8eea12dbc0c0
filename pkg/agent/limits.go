package agent

import (
	"encoding/json"
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// Concurrency limits, enforced by the agent (Prefect Server has none): how
// many of the agent's flow runs may have an unfinished Job at once, for all
// of them, for the runs carrying a label, or for the runs of a flow. They are
// counted from the agent's Job cache, so a restarted agent or a new leader
// starts from what runs in the cluster; submissions whose Job is not in the
// cache yet count too. A run over a limit is not marked Submitted: it stays
// Scheduled and is taken at a later poll, oldest start time first.

// Kinds of limit.
const (
	LimitAll   = "all"
	LimitLabel = "label"
	LimitFlow  = "flow"
)

// Limit caps the unfinished Jobs of the runs it matches.
type Limit struct {
	// Kind is LimitAll, LimitLabel or LimitFlow.
	Kind string
	// Pattern is a label or flow name pattern (path.Match: *, ?, [...]).
	Pattern string
	// Max is how many matching runs may have an unfinished Job (0: none).
	Max int
}

// limitSyntax is the message part that shows how a limit is written.
const limitSyntax = "expected MAX, label=PATTERN:MAX or flow=PATTERN:MAX, such as 50, label=gpu:4 or flow=etl-*:1"

// ParseLimit reads one limit as --limit takes it: "50" for all the agent's
// runs, "label=gpu:4" for the runs carrying a label, "flow=etl-*:1" for the
// runs of the flows a name pattern matches.
func ParseLimit(s string) (Limit, error) {
	s = strings.TrimSpace(s)
	kind, rest, keyed := strings.Cut(s, "=")
	if !keyed {
		n, err := parseMax(s)
		if err != nil {
			return Limit{}, fmt.Errorf("limit %q: %s", s, limitSyntax)
		}
		return Limit{Kind: LimitAll, Max: n}, nil
	}
	kind = strings.TrimSpace(kind)
	if kind != LimitLabel && kind != LimitFlow {
		return Limit{}, fmt.Errorf("limit %q: unknown kind %q, %s", s, kind, limitSyntax)
	}
	i := strings.LastIndex(rest, ":")
	if i < 0 {
		return Limit{}, fmt.Errorf("limit %q: no maximum after the %s pattern, %s", s, kind, limitSyntax)
	}
	pattern := strings.TrimSpace(rest[:i])
	n, err := parseMax(rest[i+1:])
	if err != nil {
		return Limit{}, fmt.Errorf("limit %q: the maximum %q is not a whole number of 0 or more, %s", s, rest[i+1:], limitSyntax)
	}
	if pattern == "" {
		return Limit{}, fmt.Errorf("limit %q: the %s pattern is empty, %s", s, kind, limitSyntax)
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return Limit{}, fmt.Errorf("limit %q: %q is not a valid pattern (use *, ? and [...])", s, pattern)
	}
	return Limit{Kind: kind, Pattern: pattern, Max: n}, nil
}

func parseMax(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a count")
	}
	return n, nil
}

// Name names what the limit counts: "all", "label=gpu", "flow=etl-*".
func (l Limit) Name() string {
	if l.Kind == LimitAll {
		return LimitAll
	}
	return l.Kind + "=" + l.Pattern
}

// String is the limit as --limit takes it.
func (l Limit) String() string {
	if l.Kind == LimitAll {
		return strconv.Itoa(l.Max)
	}
	return fmt.Sprintf("%s=%s:%d", l.Kind, l.Pattern, l.Max)
}

// matches tells whether a run of this flow with these labels counts.
func (l Limit) matches(r runFacts) bool {
	switch l.Kind {
	case LimitAll:
		return true
	case LimitFlow:
		ok, _ := path.Match(l.Pattern, r.flow)
		return ok
	case LimitLabel:
		for _, label := range r.labels {
			if ok, _ := path.Match(l.Pattern, label); ok {
				return true
			}
		}
	}
	return false
}

// Matches tells whether a run of the flow with the labels counts under the
// limit (for `kubectl prefect jobs`).
func (l Limit) Matches(flow string, labels []string) bool {
	return l.matches(runFacts{flow: flow, labels: labels})
}

// runFacts is what a limit looks at: the flow's name and the run's labels.
type runFacts struct {
	flow   string
	labels []string
}

// jobFactsOf reads them from a Job's annotations.
func jobFactsOf(j metav1.Object) runFacts {
	r := runFacts{flow: j.GetAnnotations()[manifest.AnnotationFlowName]}
	if raw := j.GetAnnotations()[manifest.AnnotationFlowRunLabels]; raw != "" {
		_ = json.Unmarshal([]byte(raw), &r.labels)
	}
	return r
}

// reservation holds a slot for a run admitted whose Job is not in the cache
// yet. It goes when the cache has the Job made for the run at version, or
// reservationLinger after the submission ended without one showing up (a run
// another agent took, or whose Job could not be made).
type reservation struct {
	facts   runFacts
	version int
	ended   time.Time
}

// reservationLinger is how long a reservation outlives its submission while
// the Job it may have created reaches the cache.
const reservationLinger = 10 * time.Second

// limiter admits runs under the limits.
type limiter struct {
	limits []Limit
	now    func() time.Time

	mu       sync.Mutex
	reserved map[string]*reservation // flow run id -> its slot
	// noted are the held runs told why, with when they were last held.
	noted map[string]time.Time
	// recoveries counts the recovery passes since the Job controller started:
	// runs a stopped agent marked Submitted without creating their Job are
	// found by the first two, and get their slot before new runs do.
	recoveries int
	// recovering counts recovery workers still deciding: their Jobs may
	// be due, and must be reserved before new runs are admitted.
	recovering int
}

func newLimiter(limits []Limit, now func() time.Time) *limiter {
	return &limiter{limits: limits, now: now, reserved: map[string]*reservation{}, noted: map[string]time.Time{}}
}

// enabled tells whether there is any limit.
func (l *limiter) enabled() bool { return l != nil && len(l.limits) > 0 }

// recoveryStarted and recoveryPassed follow the recovery passes.
func (l *limiter) recoveryStarted() {
	if !l.enabled() {
		return
	}
	l.mu.Lock()
	l.recoveries = 0
	l.mu.Unlock()
}

// recoveryQueued and recoveryDone bracket a recovery worker; recoveryDone
// ends the run's reservation, if it made one.
func (l *limiter) recoveryQueued() {
	if !l.enabled() {
		return
	}
	l.mu.Lock()
	l.recovering++
	l.mu.Unlock()
}

func (l *limiter) recoveryDone(id string) {
	if !l.enabled() {
		return
	}
	l.mu.Lock()
	l.recovering--
	l.mu.Unlock()
	if id != "" {
		l.ended(id)
	}
}

// recoveryPassed tells whether this pass opened the limiter.
func (l *limiter) recoveryPassed() bool {
	if !l.enabled() {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recoveries++
	return l.recoveries == 2
}

// usage is how many runs hold each limit now.
type usage []int

// counts computes the usage from the Job index and the reservations, and
// drops the reservations whose Job is in the index. Callers hold l.mu.
func (l *limiter) counts(index JobIndex, unfinished []metav1.Object) usage {
	now := l.now()
	for id, r := range l.reserved {
		if !r.ended.IsZero() && now.Sub(r.ended) > reservationLinger {
			delete(l.reserved, id)
			continue
		}
		runJobs, _ := index.RunJobs(metav1.NamespaceAll, id)
		for _, j := range runJobs {
			if j.Annotations[manifest.AnnotationFlowRunVersion] == strconv.Itoa(r.version) {
				delete(l.reserved, id)
				break
			}
		}
	}
	u := make(usage, len(l.limits))
	count := func(r runFacts) {
		for i, lim := range l.limits {
			if lim.matches(r) {
				u[i]++
			}
		}
	}
	for _, j := range unfinished {
		if _, mine := l.reserved[j.GetLabels()[manifest.LabelFlowRunID]]; mine {
			continue // an older Job of a run submitted again: the new one counts
		}
		count(jobFactsOf(j))
	}
	for _, r := range l.reserved {
		count(r.facts)
	}
	return u
}

// held says which limit holds a run back, and how many hold that limit.
type held struct {
	limit Limit
	using int
}

// admission is a poll's view of the limits: the usage at its start, raised
// as runs are admitted.
type admission struct {
	l     *limiter
	usage usage
}

// begin starts a poll's admissions; ok is false while the Job index has not
// synced or the recovery passes at start have not run (the truth is not
// known yet), and no run may start then.
func (l *limiter) begin(index JobIndex) (*admission, bool) {
	l.mu.Lock()
	unfinished, synced := index.Unfinished()
	if !synced || l.recoveries < 2 || l.recovering > 0 {
		l.mu.Unlock()
		return nil, false
	}
	for id, at := range l.noted {
		if l.now().Sub(at) > 10*time.Minute {
			delete(l.noted, id) // a held run that left the queue (cancelled, deleted, taken by another agent)
		}
	}
	return &admission{l: l, usage: l.counts(index, unfinished)}, true
}

// end releases the poll's hold on the limiter.
func (ad *admission) end() { ad.l.mu.Unlock() }

// admit reserves a slot under every limit matching the run, or says which
// limit holds it back.
func (ad *admission) admit(id string, version int, r runFacts) *held {
	for i, lim := range ad.l.limits {
		if lim.matches(r) && ad.usage[i] >= lim.Max {
			return &held{limit: lim, using: ad.usage[i]}
		}
	}
	for i, lim := range ad.l.limits {
		if lim.matches(r) {
			ad.usage[i]++
		}
	}
	ad.l.reserved[id] = &reservation{facts: r, version: version}
	delete(ad.l.noted, id)
	return nil
}

// note tells whether a held run is held for the first time (its line is
// due), and remembers it.
func (ad *admission) note(id string) bool {
	_, seen := ad.l.noted[id]
	ad.l.noted[id] = ad.l.now()
	return !seen
}

// reserve counts a run whose Job is about to be made outside admission (a
// recovered run), whatever the limits say: its Job was due before.
func (l *limiter) reserve(id string, version int, r runFacts) {
	if !l.enabled() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reserved[id] = &reservation{facts: r, version: version}
}

// ended marks a submission over: its reservation lingers until the Job is
// in the cache or reservationLinger passed.
func (l *limiter) ended(id string) {
	if !l.enabled() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.reserved[id]; r != nil && r.ended.IsZero() {
		r.ended = l.now()
	}
}

// release drops a reservation whose run was never handed to a worker.
func (l *limiter) release(id string) {
	if !l.enabled() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.reserved, id)
}

// heldRuns is how many runs were held back at their last poll within the
// last minute (for /metrics), forgetting older ones.
func (l *limiter) heldRuns() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for id, at := range l.noted {
		switch age := l.now().Sub(at); {
		case age > 10*time.Minute:
			delete(l.noted, id)
		case age <= time.Minute:
			n++
		}
	}
	return n
}

// inUse is each limit's current usage, for /metrics and the start line.
func (l *limiter) inUse(index JobIndex) usage {
	l.mu.Lock()
	defer l.mu.Unlock()
	unfinished, synced := index.Unfinished()
	if !synced {
		return make(usage, len(l.limits))
	}
	return l.counts(index, unfinished)
}

// jobEnded pokes the poll, while runs are held, when one of the agent's
// Jobs finished or went: a slot may be free. The Job controller calls it.
func (l *limiter) jobEnded(poke func()) {
	if !l.enabled() {
		return
	}
	l.mu.Lock()
	waiting := len(l.noted) > 0
	l.mu.Unlock()
	if waiting {
		poke()
	}
}
