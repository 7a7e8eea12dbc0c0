package prefect

import (
	"encoding/json"
	"reflect"
	"sort"
	"time"
)

// The claim rule: how every agent, on every replica, decides from a run's
// state history which Submitted mark won a Scheduled state.
//
// Prefect Server has no compare-and-set on states: a Submitted mark is
// refused only within 30 s of another on the same GraphQL process, versions
// are ignored, and two writes can get the same version. It keeps every state,
// though (flow_run.states, task_run.states). So a mark names the Scheduled
// state it claims to replace (Claim, in the Submitted state's context), and
// the history decides:
//
//   - The history is read in one total order, the same for every reader: by
//     timestamp, then by row id. Versions play no part (they can tie).
//   - From the claimed Scheduled state on, the first state that is neither a
//     Submitted mark claiming another state decides: a Submitted mark
//     claiming this state wins it; any other state (Cancelled, Running,
//     Failed, a new Scheduled...) means no mark wins it.
//   - A Submitted mark with no claim (the 1.4.1 agent, or this agent before
//     claims) claims the latest Scheduled-family state before it.
//
// Only the winner acts (creates the Job, fails the run). A loser acts on
// nothing, and if the run's current state is still its own mark, puts back
// the state its mark replaced (Replaced).

// StateRow is one row of a run's state history.
type StateRow struct {
	ID         string
	Version    int
	State      string
	Timestamp  time.Time
	Serialized json.RawMessage
}

// Claim names the Scheduled state a Submitted mark claims to replace: its
// history row and its version.
type Claim struct {
	StateID string `json:"state_id,omitempty"`
	Version int    `json:"version"`
}

// Outcome is what the rule says about one claimed state.
type Outcome int

const (
	// Undecided: the claimed state or anything after it is not in the
	// history (yet).
	Undecided Outcome = iota
	// Claimed: a Submitted mark won the state (Decision.Winner).
	Claimed
	// Interrupted: another state came first; no mark wins the state.
	Interrupted
)

// Decision is the rule's answer for one claimed state.
type Decision struct {
	Outcome Outcome
	// Winner is the winning mark's row and submission (Claimed only).
	Winner   StateRow
	WinnerBy Submission
	// First is the state that decided: the winning mark, or the one that
	// interrupted.
	First StateRow
}

// Won tells whether the mark with token won.
func (d Decision) Won(token string) bool {
	return d.Outcome == Claimed && token != "" && d.WinnerBy.Token == token
}

// SortHistory puts rows in the rule's order: timestamp, then id.
func SortHistory(rows []StateRow) {
	sort.SliceStable(rows, func(i, j int) bool {
		if !rows[i].Timestamp.Equal(rows[j].Timestamp) {
			return rows[i].Timestamp.Before(rows[j].Timestamp)
		}
		return rows[i].ID < rows[j].ID
	})
}

// ClaimOf returns the state a Submitted row claims: its own claim, else the
// latest Scheduled-family row before it. rows must be in the rule's order.
func ClaimOf(rows []StateRow, i int) (Claim, bool) {
	if by, ok := SubmittedBy(rows[i].Serialized); ok && by.Claims != nil {
		return *by.Claims, true
	}
	for j := i - 1; j >= 0; j-- {
		if ScheduledFamily(rows[j].State) {
			return Claim{StateID: rows[j].ID, Version: rows[j].Version}, true
		}
	}
	return Claim{}, false
}

// claimsRow tells whether claim names row s.
func claimsRow(c Claim, s StateRow) bool {
	if c.StateID != "" {
		return c.StateID == s.ID
	}
	return c.Version == s.Version
}

// findClaimed returns the index of the claimed row, or -1. Without a row id
// the last Scheduled-family row of the claimed version is taken.
func findClaimed(rows []StateRow, c Claim) int {
	found := -1
	for i, r := range rows {
		if c.StateID != "" {
			if r.ID == c.StateID {
				return i
			}
			continue
		}
		if ScheduledFamily(r.State) && r.Version == c.Version {
			found = i
		}
	}
	return found
}

// Decide applies the rule to the claimed state. rows must be in the rule's
// order (SortHistory).
func Decide(rows []StateRow, c Claim) Decision {
	start := findClaimed(rows, c)
	if start < 0 {
		return Decision{}
	}
	for i := start + 1; i < len(rows); i++ {
		r := rows[i]
		if r.State != "Submitted" {
			return Decision{Outcome: Interrupted, First: r}
		}
		other, ok := ClaimOf(rows, i)
		if ok && claimsRow(other, rows[start]) {
			by, _ := SubmittedBy(r.Serialized)
			return Decision{Outcome: Claimed, Winner: r, WinnerBy: by, First: r}
		}
		// A mark claiming another state: a loser by its own rule.
	}
	return Decision{}
}

// Mark returns the index of the Submitted row carrying token, or -1.
func Mark(rows []StateRow, token string) int {
	for i, r := range rows {
		if r.State != "Submitted" {
			continue
		}
		if by, ok := SubmittedBy(r.Serialized); ok && by.Token == token {
			return i
		}
	}
	return -1
}

// winning tells whether the Submitted row i won the state it claims.
func winning(rows []StateRow, i int) bool {
	c, ok := ClaimOf(rows, i)
	if !ok {
		return false
	}
	d := Decide(rows, c)
	return d.Outcome == Claimed && d.Winner.ID == rows[i].ID
}

// Replaced returns the state the mark at index i replaced: the latest row
// before it that is not a losing Submitted mark. A loser puts it back.
func Replaced(rows []StateRow, i int) (StateRow, bool) {
	for j := i - 1; j >= 0; j-- {
		if rows[j].State == "Submitted" && !winning(rows, j) {
			continue
		}
		return rows[j], true
	}
	return StateRow{}, false
}

// CurrentSubmission returns the latest winning Submitted mark of the
// history, with the state it claims: the run's current submission. A run
// Scheduled again after that mark (a user's restart, Lazarus, the agent
// handing it back) has none until a new mark wins.
func CurrentSubmission(rows []StateRow) (StateRow, Submission, Claim, bool) {
	for i := len(rows) - 1; i >= 0; i-- {
		if rows[i].State == "Scheduled" {
			return StateRow{}, Submission{}, Claim{}, false
		}
		if rows[i].State != "Submitted" || !winning(rows, i) {
			continue
		}
		c, _ := ClaimOf(rows, i)
		if c.StateID != "" {
			if k := findClaimed(rows, c); k >= 0 {
				c.Version = rows[k].Version
			}
		}
		by, _ := SubmittedBy(rows[i].Serialized)
		return rows[i], by, c, true
	}
	return StateRow{}, Submission{}, Claim{}, false
}

// CurrentRow returns the history row that is the run's current state: of
// the rows at the run's version and state, the one whose serialized state
// equals the run's, else the latest of them.
func CurrentRow(rows []StateRow, version int, state string, serialized json.RawMessage) (StateRow, bool) {
	var found, exact StateRow
	ok, same := false, false
	for _, r := range rows {
		if r.Version != version || r.State != state {
			continue
		}
		found, ok = r, true
		if sameJSON(r.Serialized, serialized) {
			exact, same = r, true
		}
	}
	if same {
		return exact, true
	}
	return found, ok
}

// sameJSON compares two JSON documents by value.
func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
