package prefect

import (
	"encoding/json"
	"testing"
	"time"
)

// history builds state rows one second apart from a compact description.
type history struct {
	rows []StateRow
	at   time.Time
}

func newHistory() *history {
	return &history{at: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// add appends a row with id and version; by, when set, makes it a mark.
func (h *history) add(id string, version int, state string, by *Submission) *history {
	var raw json.RawMessage
	switch {
	case state == "Submitted" && by != nil:
		raw = SubmittedState("Submitted for execution", nil, *by)
	case state == "Submitted":
		raw = SubmittedState("Submitted for execution", nil, Submission{})
	default:
		raw, _ = json.Marshal(baseState(state, ""))
	}
	h.rows = append(h.rows, StateRow{ID: id, Version: version, State: state, Timestamp: h.at, Serialized: raw})
	h.at = h.at.Add(time.Second)
	return h
}

// same appends a row with the previous row's timestamp (a clock tie).
func (h *history) same(id string, version int, state string, by *Submission) *history {
	h.at = h.at.Add(-time.Second)
	return h.add(id, version, state, by)
}

func mark(token, stateID string, version int) *Submission {
	return &Submission{Agent: "a", Namespace: "ns-" + token, Token: token, Claims: &Claim{StateID: stateID, Version: version}}
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name  string
		h     *history
		claim Claim
		want  Outcome
		// winner is the winning token (Claimed) or the interrupting row id.
		winner string
		// replaced is, for token "us", the row it put back ("" when none).
		replaced string
	}{{
		name:  "our mark alone wins",
		h:     newHistory().add("s1", 1, "Scheduled", nil).add("m1", 2, "Submitted", mark("us", "s1", 1)),
		claim: Claim{StateID: "s1", Version: 1}, want: Claimed, winner: "us", replaced: "s1",
	}, {
		name: "two marks with the same version: the earlier one wins",
		h: newHistory().add("s1", 1, "Scheduled", nil).add("m1", 2, "Submitted", mark("them", "s1", 1)).
			add("m2", 2, "Submitted", mark("us", "s1", 1)),
		claim: Claim{StateID: "s1", Version: 1}, want: Claimed, winner: "them", replaced: "m1",
	}, {
		name: "two marks at the same instant: the lower row id wins",
		h: newHistory().add("s1", 1, "Scheduled", nil).add("b", 2, "Submitted", mark("us", "s1", 1)).
			same("a", 2, "Submitted", mark("them", "s1", 1)),
		claim: Claim{StateID: "s1", Version: 1}, want: Claimed, winner: "them", replaced: "a",
	}, {
		name: "a stale mark claiming an older state is skipped",
		h: newHistory().add("s0", 1, "Scheduled", nil).add("m0", 2, "Submitted", mark("old", "s0", 1)).
			add("r", 3, "Running", nil).add("s1", 4, "Scheduled", nil).
			add("m1", 5, "Submitted", mark("stale", "s0", 1)).add("m2", 6, "Submitted", mark("us", "s1", 4)),
		claim: Claim{StateID: "s1", Version: 4}, want: Claimed, winner: "us", replaced: "s1",
	}, {
		name: "cancelled before our mark: no one wins, Cancelled is put back",
		h: newHistory().add("s1", 1, "Scheduled", nil).add("c", 2, "Cancelled", nil).
			add("m1", 3, "Submitted", mark("us", "s1", 1)),
		claim: Claim{StateID: "s1", Version: 1}, want: Interrupted, winner: "c", replaced: "c",
	}, {
		name: "cancelled after our mark: the mark won (the cancellation check stops the Job)",
		h: newHistory().add("s1", 1, "Scheduled", nil).add("m1", 2, "Submitted", mark("us", "s1", 1)).
			add("c", 3, "Cancelled", nil),
		claim: Claim{StateID: "s1", Version: 1}, want: Claimed, winner: "us", replaced: "s1",
	}, {
		name: "a 1.4.1 mark claims the Scheduled state before it and wins",
		h: newHistory().add("s1", 1, "Scheduled", nil).add("m1", 2, "Submitted", nil).
			add("m2", 3, "Submitted", mark("us", "s1", 1)),
		claim: Claim{StateID: "s1", Version: 1}, want: Claimed, winner: "", replaced: "m1",
	}, {
		name: "a 1.4.1 mark after a Lazarus reschedule claims the new state",
		h: newHistory().add("s0", 1, "Scheduled", nil).add("m0", 2, "Submitted", mark("old", "s0", 1)).
			add("lz", 3, "Scheduled", nil).add("m1", 4, "Submitted", nil).add("m2", 5, "Submitted", mark("us", "lz", 3)),
		claim: Claim{StateID: "lz", Version: 3}, want: Claimed, winner: "", replaced: "m1",
	}, {
		name: "our copy predates a reschedule: the state we claim was won long ago",
		h: newHistory().add("s0", 1, "Scheduled", nil).add("m0", 2, "Submitted", mark("old", "s0", 1)).
			add("lz", 3, "Scheduled", nil).add("m1", 4, "Submitted", mark("us", "s0", 1)),
		claim: Claim{StateID: "s0", Version: 1}, want: Claimed, winner: "old", replaced: "lz",
	}, {
		name: "rescheduled (Lazarus, a user) between our read and our mark: no one wins the old state",
		h: newHistory().add("s1", 1, "Scheduled", nil).add("lz", 2, "Scheduled", nil).
			add("m1", 3, "Submitted", mark("us", "s1", 1)),
		claim: Claim{StateID: "s1", Version: 1}, want: Interrupted, winner: "lz", replaced: "lz",
	}, {
		name: "a stale mark 40 s late after a finished run: the first mark won, Success is put back",
		h: newHistory().add("s1", 1, "Scheduled", nil).add("m1", 2, "Submitted", mark("first", "s1", 1)).
			add("r", 3, "Running", nil).add("ok", 4, "Success", nil).add("m2", 5, "Submitted", mark("us", "s1", 1)),
		claim: Claim{StateID: "s1", Version: 1}, want: Claimed, winner: "first", replaced: "ok",
	}, {
		name: "losing marks are skipped when putting back",
		h: newHistory().add("s1", 1, "Scheduled", nil).add("m1", 2, "Submitted", mark("first", "s1", 1)).
			add("r", 3, "Running", nil).add("m2", 4, "Submitted", mark("late", "s1", 1)).
			add("m3", 5, "Submitted", mark("us", "s1", 1)),
		claim: Claim{StateID: "s1", Version: 1}, want: Claimed, winner: "first", replaced: "r",
	}, {
		name:  "a claim by version only (no row id) finds the Scheduled state of that version",
		h:     newHistory().add("s1", 1, "Scheduled", nil).add("m1", 2, "Submitted", mark("us", "", 1)),
		claim: Claim{Version: 1}, want: Claimed, winner: "us", replaced: "s1",
	}, {
		name:  "our mark not in the history yet: undecided",
		h:     newHistory().add("s1", 1, "Scheduled", nil),
		claim: Claim{StateID: "s1", Version: 1}, want: Undecided,
	}, {
		name:  "the claimed state is not in the history: undecided",
		h:     newHistory().add("s1", 1, "Scheduled", nil).add("m1", 2, "Submitted", mark("us", "s9", 1)),
		claim: Claim{StateID: "s9", Version: 1}, want: Undecided, replaced: "s1",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			rows := append([]StateRow(nil), tc.h.rows...)
			// The rule does not depend on the order rows are read in.
			for i, j := 0, len(rows)-1; i < j; i, j = i+1, j-1 {
				rows[i], rows[j] = rows[j], rows[i]
			}
			SortHistory(rows)
			d := Decide(rows, tc.claim)
			if d.Outcome != tc.want {
				t.Fatalf("outcome %v, want %v (decision %+v)", d.Outcome, tc.want, d)
			}
			switch tc.want {
			case Claimed:
				if d.WinnerBy.Token != tc.winner {
					t.Errorf("winner %q, want %q", d.WinnerBy.Token, tc.winner)
				}
				if got := d.Won("us"); got != (tc.winner == "us") {
					t.Errorf("Won(us) = %v", got)
				}
			case Interrupted:
				if d.First.ID != tc.winner {
					t.Errorf("interrupted by %q, want %q", d.First.ID, tc.winner)
				}
				if d.Won("us") {
					t.Error("Won(us) on an interrupted claim")
				}
			}
			i := Mark(rows, "us")
			if tc.replaced == "" {
				return
			}
			if i < 0 {
				t.Fatal("our mark is not found")
			}
			r, ok := Replaced(rows, i)
			if !ok || r.ID != tc.replaced {
				t.Errorf("our mark replaced %q (%v), want %q", r.ID, ok, tc.replaced)
			}
		})
	}
}

func TestCurrentSubmission(t *testing.T) {
	h := newHistory().add("s0", 1, "Scheduled", nil).add("m0", 2, "Submitted", mark("a", "s0", 1)).
		add("lz", 3, "Scheduled", nil).add("m1", 4, "Submitted", mark("b", "lz", 3)).
		add("m2", 5, "Submitted", mark("c", "lz", 3)).add("r", 6, "Running", nil)
	_, by, c, ok := CurrentSubmission(h.rows)
	if !ok || by.Token != "b" || c.Version != 3 {
		t.Fatalf("current submission %+v %+v %v, want b's claim of version 3", by, c, ok)
	}
	h2 := newHistory().add("s0", 1, "Scheduled", nil).add("m0", 2, "Submitted", nil)
	_, by, c, ok = CurrentSubmission(h2.rows)
	if !ok || by.Token != "" || c.Version != 1 {
		t.Fatalf("a 1.4.1 mark: %+v %+v %v, want its claim of version 1", by, c, ok)
	}
	if _, _, _, ok := CurrentSubmission(newHistory().add("s0", 1, "Scheduled", nil).rows); ok {
		t.Fatal("a history without marks has a current submission")
	}
	restarted := newHistory().add("s0", 1, "Scheduled", nil).add("m0", 2, "Submitted", mark("a", "s0", 1)).
		add("rs", 3, "Scheduled", nil)
	if _, by, _, ok := CurrentSubmission(restarted.rows); ok {
		t.Fatalf("a run Scheduled again after its mark still has %s's submission as current", by.Token)
	}
}

func TestCurrentRow(t *testing.T) {
	h := newHistory().add("s1", 3, "Scheduled", nil)
	tie := ScheduledState("restart", time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC))
	h.rows = append(h.rows, StateRow{ID: "s2", Version: 3, State: "Scheduled", Timestamp: h.at, Serialized: tie})
	r, ok := CurrentRow(h.rows, 3, "Scheduled", tie)
	if !ok || r.ID != "s2" {
		t.Fatalf("current row %q %v, want the tie whose serialized state is the run's", r.ID, ok)
	}
	if _, ok := CurrentRow(h.rows, 4, "Scheduled", tie); ok {
		t.Fatal("a row found for a version the history does not have")
	}
}
