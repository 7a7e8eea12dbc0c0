package runlog

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// recorder keeps the lines it is given, or refuses them all.
type recorder struct {
	lines  []prefect.RunLog
	refuse error
}

func (r *recorder) WriteRunLogs(_ context.Context, logs ...prefect.RunLog) error {
	if r.refuse != nil {
		return r.refuse
	}
	r.lines = append(r.lines, logs...)
	return nil
}

// TestModes: a line goes out under the writer's name and clock; a must-land
// line's failure reaches the caller, a best-effort one's does not.
func TestModes(t *testing.T) {
	at := time.Unix(1700000000, 0)
	r := &recorder{}
	w := New(r, "agent-a", func() time.Time { return at })
	if err := w.MustLand(t.Context(), "run-1", prefect.LevelError, "failed"); err != nil {
		t.Fatal(err)
	}
	w.BestEffort(t.Context(), "run-2", prefect.LevelInfo, "submitted")
	want := []prefect.RunLog{
		{FlowRunID: "run-1", Name: "agent-a", Level: prefect.LevelError, Message: "failed", Time: at},
		{FlowRunID: "run-2", Name: "agent-a", Level: prefect.LevelInfo, Message: "submitted", Time: at},
	}
	if len(r.lines) != len(want) {
		t.Fatalf("lines %+v, want %+v", r.lines, want)
	}
	for i := range want {
		if r.lines[i] != want[i] {
			t.Errorf("line %d = %+v, want %+v", i, r.lines[i], want[i])
		}
	}
	r.refuse = errors.New("prefect API WriteRunLogs: writing logs failed")
	if err := w.MustLand(t.Context(), "run-1", prefect.LevelError, "failed"); !errors.Is(err, r.refuse) {
		t.Fatalf("a must-land line's failure came back as %v", err)
	}
	w.BestEffort(t.Context(), "run-2", prefect.LevelInfo, "submitted") // logged, not returned
}
