package emulator

import (
	"fmt"
	"sort"
	"sync"
	"time"
)

// Server's towel service runs two loops beside the GraphQL processes
// (src/prefect_server/services/towel/__main__.py): Lazarus and the zombie
// killer. The emulator runs them as goroutines started by New and stopped by
// Close; RunLazarus and RunZombieKiller run one pass at once.

// Defaults of Server's towel services.
const (
	// DefaultLazarusPeriod is Lazarus.loop_seconds_default (lazarus.py line 25).
	DefaultLazarusPeriod = 10 * time.Minute
	// DefaultLazarusCutoff is the heartbeat age Lazarus acts on (lazarus.py line 80).
	DefaultLazarusCutoff = 10 * time.Minute
	// DefaultLazarusAttempts is services.lazarus.resurrection_attempt_limit (config.toml line 82).
	DefaultLazarusAttempts = 3
	// DefaultZombieKillerPeriod is ZombieKiller.loop_seconds_default (zombie_killer.py line 16).
	DefaultZombieKillerPeriod = 2 * time.Minute
	// DefaultZombieKillerCutoff is the heartbeat age the zombie killer acts on (zombie_killer.py lines 48, 130).
	DefaultZombieKillerCutoff = 10 * time.Minute
)

// Lazarus configures the service that reschedules runs whose heartbeat
// stopped. Zero fields take Server's defaults.
type Lazarus struct {
	Off          bool          `json:"off,omitempty"`
	Period       time.Duration `json:"period,omitempty"`
	Cutoff       time.Duration `json:"cutoff,omitempty"`
	AttemptLimit int           `json:"attempt_limit,omitempty"`
}

// ZombieKiller configures the service that fails or retries task runs and
// Cancelling flow runs whose flow run's heartbeat stopped. Zero fields take
// Server's defaults.
type ZombieKiller struct {
	Off    bool          `json:"off,omitempty"`
	Period time.Duration `json:"period,omitempty"`
	Cutoff time.Duration `json:"cutoff,omitempty"`
}

func (l Lazarus) withDefaults() Lazarus {
	if l.Period == 0 {
		l.Period = DefaultLazarusPeriod
	}
	if l.Cutoff == 0 {
		l.Cutoff = DefaultLazarusCutoff
	}
	if l.AttemptLimit == 0 {
		l.AttemptLimit = DefaultLazarusAttempts
	}
	return l
}

func (z ZombieKiller) withDefaults() ZombieKiller {
	if z.Period == 0 {
		z.Period = DefaultZombieKillerPeriod
	}
	if z.Cutoff == 0 {
		z.Cutoff = DefaultZombieKillerCutoff
	}
	return z
}

func (l Lazarus) validate() error {
	if l.Period < 0 || l.Cutoff < 0 || l.AttemptLimit < 0 {
		return fmt.Errorf("lazarus: period, cutoff and attempt limit must not be negative (got %s, %s, %d)", l.Period, l.Cutoff, l.AttemptLimit)
	}
	return nil
}

func (z ZombieKiller) validate() error {
	if z.Period < 0 || z.Cutoff < 0 {
		return fmt.Errorf("zombie killer: period and cutoff must not be negative (got %s, %s)", z.Period, z.Cutoff)
	}
	return nil
}

// towel runs the two loops.
type towel struct {
	mu      sync.Mutex
	lazarus Lazarus
	zombies ZombieKiller
	changed [2]chan struct{} // wakes a loop to read its new period
	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
}

// lazarusExclude are the task run states that keep Lazarus away from a flow
// run: the subclasses of Scheduled and Running (lazarus.py lines 16-20).
var lazarusExclude = map[string]bool{
	"Scheduled": true, "Paused": true, "Resume": true, "Retrying": true, "Running": true, "Cancelling": true,
}

const (
	lazarusMaxRuns      = 500  // lazarus.py line 89
	zombieKillerMaxRows = 5000 // zombie_killer.py lines 55, 152
)

func (e *Emulator) startTowel(l Lazarus, z ZombieKiller) {
	e.towel.lazarus, e.towel.zombies = l.withDefaults(), z.withDefaults()
	e.towel.stop = make(chan struct{})
	for i := range e.towel.changed {
		e.towel.changed[i] = make(chan struct{}, 1)
	}
	e.towel.wg.Add(2)
	go e.loop(e.towel.changed[0], func() (time.Duration, bool) {
		e.towel.mu.Lock()
		defer e.towel.mu.Unlock()
		return e.towel.lazarus.Period, e.towel.lazarus.Off
	}, func() { e.RunLazarus() })
	go e.loop(e.towel.changed[1], func() (time.Duration, bool) {
		e.towel.mu.Lock()
		defer e.towel.mu.Unlock()
		return e.towel.zombies.Period, e.towel.zombies.Off
	}, func() { e.RunZombieKiller() })
}

// loop is Server's LoopService.run (services/loop_service.py lines 50-85): a
// pass at start, then one every period after the previous one started.
func (e *Emulator) loop(changed <-chan struct{}, period func() (time.Duration, bool), pass func()) {
	defer e.towel.wg.Done()
	for {
		started := time.Now()
		if _, off := period(); !off {
			pass()
		}
		for {
			p, _ := period()
			timer := time.NewTimer(time.Until(started.Add(p)))
			select {
			case <-e.towel.stop:
				timer.Stop()
				return
			case <-changed:
				timer.Stop()
				continue
			case <-timer.C:
			}
			break
		}
	}
}

// Close stops Lazarus and the zombie killer.
func (e *Emulator) Close() {
	e.towel.stopped.Do(func() { close(e.towel.stop) })
	e.towel.wg.Wait()
}

// SetLazarus replaces Lazarus's configuration; zero fields take Server's defaults.
func (e *Emulator) SetLazarus(l Lazarus) error {
	if err := l.validate(); err != nil {
		return err
	}
	e.towel.mu.Lock()
	e.towel.lazarus = l.withDefaults()
	e.towel.mu.Unlock()
	wake(e.towel.changed[0])
	return nil
}

// SetZombieKiller replaces the zombie killer's configuration; zero fields
// take Server's defaults.
func (e *Emulator) SetZombieKiller(z ZombieKiller) error {
	if err := z.validate(); err != nil {
		return err
	}
	e.towel.mu.Lock()
	e.towel.zombies = z.withDefaults()
	e.towel.mu.Unlock()
	wake(e.towel.changed[1])
	return nil
}

// Towel returns the configuration of Lazarus and the zombie killer.
func (e *Emulator) Towel() (Lazarus, ZombieKiller) {
	e.towel.mu.Lock()
	defer e.towel.mu.Unlock()
	return e.towel.lazarus, e.towel.zombies
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// RunLazarus runs one pass of Lazarus now (lazarus.py reschedule_flow_runs,
// lines 77-169) and returns how many runs it rescheduled. It picks Submitted
// and Running runs whose heartbeat is at least the cutoff old, with no task
// run in a Scheduled or Running state, that their flow allows it for, at most
// 500, least recently updated first. Each is set Scheduled ("Rescheduled by a
// Lazarus process."), its times_resurrected goes up by one and a log line
// says which attempt this is; a run already rescheduled attempt-limit times
// is set Failed instead.
func (e *Emulator) RunLazarus() int {
	cfg, _ := e.Towel()
	e.mu.Lock()
	defer e.mu.Unlock()
	cutoff := e.now().Add(-cfg.Cutoff)
	var picked []*FlowRun
	for _, id := range e.order {
		r := e.runs[id]
		if (r.State != "Running" && r.State != "Submitted") || !stale(r.Heartbeat, cutoff) || r.Flow.HeartbeatDisabled || r.Flow.LazarusDisabled {
			continue
		}
		busy := false
		for _, tr := range r.TaskRuns {
			busy = busy || lazarusExclude[tr.State]
		}
		if !busy {
			picked = append(picked, r)
		}
	}
	sort.SliceStable(picked, func(i, j int) bool { return picked[i].Updated.Before(picked[j].Updated) })
	if len(picked) > lazarusMaxRuns {
		picked = picked[:lazarusMaxRuns]
	}
	rescheduled := 0
	for _, r := range picked {
		if r.TimesResurrected < cfg.AttemptLimit {
			msg := "Rescheduled by a Lazarus process."
			e.setFlowRunState(r, newState{typ: "Scheduled", message: msg, raw: serializedState("Scheduled", msg, timePtr(e.now()))}, "")
			r.TimesResurrected++
			e.touch(r)
			e.serviceLog(r, "", "prefect-server.Lazarus.FlowRun", "INFO", fmt.Sprintf("%s This is attempt %d.", msg, r.TimesResurrected))
			rescheduled++
			continue
		}
		msg := fmt.Sprintf("A Lazarus process attempted to reschedule this run %d times without success. Marking as failed.", cfg.AttemptLimit)
		e.setFlowRunState(r, newState{typ: "Failed", message: msg, raw: serializedState("Failed", msg, nil)}, "")
		e.serviceLog(r, "", "prefect-server.Lazarus.FlowRun", "ERROR", msg)
	}
	return rescheduled
}

// RunZombieKiller runs one pass of the zombie killer now
// (zombie_killer.py run_once, lines 218-223) and returns how many task runs
// and flow runs it handled. First the Running task runs whose flow run's
// heartbeat is at least the cutoff old: Retrying (after the task's retry
// delay) when the flow run is Running and the task has retries left, counted
// by the task run's Retrying states; Failed otherwise (lines 118-216). Then
// the Cancelling flow runs with such a heartbeat: Failed (lines 37-93).
func (e *Emulator) RunZombieKiller() int {
	_, cfg := e.Towel()
	e.mu.Lock()
	defer e.mu.Unlock()
	cutoff := e.now().Add(-cfg.Cutoff)
	handled := 0
	for _, id := range e.order {
		r := e.runs[id]
		if !stale(r.Heartbeat, cutoff) || r.Flow.HeartbeatDisabled {
			continue
		}
		for _, tr := range r.TaskRuns {
			if tr.State != "Running" || handled >= zombieKillerMaxRows {
				continue
			}
			retries := 0
			for _, s := range tr.States {
				if s.Type == "Retrying" {
					retries++
				}
			}
			var msg string
			if r.State == "Running" && retries < tr.MaxRetries {
				msg = fmt.Sprintf("No heartbeat detected from the remote task; retrying the run.This will be retry %d of %d.", retries+1, tr.MaxRetries)
				start := e.now().Add(tr.RetryDelay)
				e.insertTaskRunState(tr, newState{typ: "Retrying", message: msg, raw: serializedState("Retrying", msg, &start), start: &start})
			} else {
				name := tr.Name
				if name == "" {
					name = "None"
				}
				msg = fmt.Sprintf("No heartbeat detected from the remote task; marking the task run %s (%s) as failed.", tr.ID, name)
				e.insertTaskRunState(tr, newState{typ: "Failed", message: msg, raw: serializedState("Failed", msg, nil)})
			}
			e.serviceLog(r, tr.ID, "prefect-server.ZombieKiller.TaskRun", "ERROR", msg)
			handled++
		}
	}
	for _, id := range e.order {
		r := e.runs[id]
		if r.State != "Cancelling" || !stale(r.Heartbeat, cutoff) || r.Flow.HeartbeatDisabled {
			continue
		}
		msg := "No heartbeat detected from the flow run; marking the run as failed."
		e.setFlowRunState(r, newState{typ: "Failed", message: msg, raw: serializedState("Failed", msg, nil)}, "")
		e.serviceLog(r, "", "prefect-server.ZombieKiller.FlowRun", "ERROR", msg)
		handled++
	}
	return handled
}

// stale is heartbeat <= cutoff; a NULL heartbeat matches no comparison.
func stale(heartbeat, cutoff time.Time) bool {
	return !heartbeat.IsZero() && !heartbeat.After(cutoff)
}

// serviceLog writes a run log line as the towel services do
// (api/logs.py create_logs). Callers hold e.mu.
func (e *Emulator) serviceLog(r *FlowRun, taskRunID, name, level, message string) {
	r.Logs = append(r.Logs, Log{FlowRunID: r.ID, TaskRunID: taskRunID, Name: name, Level: level, Message: message, Timestamp: e.now()})
}

func timePtr(t time.Time) *time.Time { return &t }
