package e2e

import (
	"context"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// TestRecoveryFindsEveryStrandedRunBehindHundredsOfSubmittedOnes SIGKILLs
// the agent during a 1000-run burst once it has created 230 Jobs, so that
// more than 200 of its runs are Submitted with their Job (suspended Jobs: the runs stay Submitted, inside
// the recovery window). Besides what the kill itself strands, 40 of the
// runs it had not reached are marked Submitted as the killed process would
// have marked them (its registration, namespace and a token) and left
// without a Job: added last, they are the ones a query of 200 rows in
// insertion order never reaches. After the restart every stranded run must
// have exactly one Job within 30 s, and the whole burst end exactly once.
// It runs beside the probes' 3-minute test (t.Parallel), which mostly waits.
func TestRecoveryFindsEveryStrandedRunBehindHundredsOfSubmittedOnes(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: skipped under -short")
	}
	t.Parallel() // beside the 3-minute probe test
	const runs, killAt, strand = 1000, 230, 40
	em, srv := startEmulator(t)
	ns := cluster.Namespace(t)
	ids := addSuspendedRuns(t, em, runs)
	vmodule := "--vmodule=recover=1" // recovery's pass figures
	startAgentProcess(t, killableAgent(srv.URL, ns, vmodule)).killAfterJobs(t, killAt)
	afterKill := tallyRuns(t, em, ns, ids)
	if afterKill.submitted <= 200 {
		t.Fatalf("only %d runs Submitted with their Job when the agent was killed, want more than 200: %+v", afterKill.submitted, afterKill)
	}

	// The killed process's marks on the last-added runs it had not taken.
	agents := em.Agents()
	if len(agents) != 1 {
		t.Fatalf("%d agent registrations, want the killed agent's one", len(agents))
	}
	dead := prefect.NewClient(prefect.Config{API: srv.URL})
	dead.SetAgentID(agents[0].ID)
	var marked []string
	for _, id := range slices.Backward(ids) {
		if len(marked) == strand {
			break
		}
		run, _ := em.FlowRun(id)
		if run.State != "Scheduled" {
			continue
		}
		v := run.Version
		by := prefect.Submission{AgentID: agents[0].ID, Agent: "killed-agent", Namespace: ns, Token: "killed-" + strconv.Itoa(len(marked))}
		if err := dead.SetFlowRunState(context.Background(), id, &v, prefect.SubmittedState("Submitted for execution", run.SerializedState, by)); err != nil {
			t.Fatal(err)
		}
		marked = append(marked, id)
	}
	before, jobs := tallyRunsAndJobs(t, em, ns, ids)
	var stranded []string
	for _, id := range ids {
		if run, _ := em.FlowRun(id); run.State == "Submitted" && jobs[id] == 0 {
			stranded = append(stranded, id)
		}
	}
	requestsBefore := em.Requests()

	final := startAgentProcess(t, killableAgent(srv.URL, ns, vmodule))
	restarted := time.Now()
	final.stopAtTheEnd(t)
	got := awaitExactlyOnce(t, em, ns, ids, final, restarted, 3*time.Minute, stranded)

	var times []time.Duration
	for _, id := range stranded {
		if d, ok := got.hadJob[id]; ok {
			times = append(times, d)
		}
	}
	slices.Sort(times)
	var fastest, median, slowest time.Duration
	if len(times) > 0 {
		fastest, median, slowest = times[0], times[len(times)/2], times[len(times)-1]
	}
	requests := 0
	after := em.Requests()
	for op, n := range after {
		requests += n - requestsBefore[op]
	}
	passes := regexp.MustCompile(`"Looked for flow runs Submitted by this agent without a Job line".* candidates=(\d+) checked=(\d+) requests=(\d+)`).FindAllStringSubmatch(final.stderr.String(), -1)
	var pages []string
	for _, m := range passes {
		pages = append(pages, m[1]+" candidates/"+m[3]+" requests")
	}
	t.Logf("killed after %d Jobs created: %d Submitted with their Job, %d stranded (%d by the kill, %d marked as the killed process would); "+
		"after the restart the stranded runs had their one Job in %s (first) to %s (median) to %s (last); no run was Submitted without a Job "+
		"(the restarted agent's own new marks included) from %s; the burst ended %+v; "+
		"recovery passes with candidates: %v; Prefect requests after the restart: %d (StrandedFlowRunCandidates %d, StrandedFlowRun %d, FlowRunHistory %d)",
		killAt, before.submitted, len(stranded), len(stranded)-len(marked), len(marked),
		fastest.Round(100*time.Millisecond), median.Round(100*time.Millisecond), slowest.Round(100*time.Millisecond),
		got.unstranded.Round(100*time.Millisecond), got.final, pages, requests,
		after["StrandedFlowRunCandidates"]-requestsBefore["StrandedFlowRunCandidates"], after["StrandedFlowRun"]-requestsBefore["StrandedFlowRun"],
		after["FlowRunHistory"]-requestsBefore["FlowRunHistory"])
	if len(got.hadJob) < len(stranded) {
		t.Fatalf("%d of %d stranded runs never had exactly one Job", len(stranded)-len(got.hadJob), len(stranded))
	}
	if slowest > 30*time.Second {
		t.Fatalf("the last stranded run had its Job %s after the restart, want within 30 s", slowest)
	}
	if len(passes) == 0 {
		t.Fatalf("no recovery pass reported its candidates:\n%s", tail(final.stderr.String(), 40))
	}
}
