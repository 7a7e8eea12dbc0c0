package prefect

import (
	"encoding/json"
	"fmt"
	"time"
)

// Serialized Prefect states, in the shape Prefect 1's StateSchema writes them.

func baseState(stateType, message string) map[string]any {
	return map[string]any{
		"type":          stateType,
		"message":       message,
		"context":       map[string]any{},
		"cached_inputs": map[string]any{},
		"_result":       map[string]any{"type": "NoResultType", "__version__": CoreVersion},
		"__version__":   CoreVersion,
	}
}

// Submission identifies one submission attempt. It goes into the Submitted
// state's context under "submitted_by", so the agent can tell, after an
// answer it did not get, whether the run's Submitted state is its own: Server
// records the agent id on the run, and the token also tells apart two
// replicas sharing one registration.
type Submission struct {
	AgentID string `json:"agent_id,omitempty"`
	Agent   string `json:"agent,omitempty"`
	// Namespace is where the submitting agent creates Jobs: agents sharing
	// one registration (same name and labels) in other namespaces are told
	// apart by it.
	Namespace string `json:"namespace,omitempty"`
	Token     string `json:"token"`
	// Claims names the Scheduled state the mark claims to replace (the
	// claim rule, claim.go); nil on marks from before claims.
	Claims *Claim `json:"claims,omitempty"`
}

// Describe names the submission in a log line.
func (s Submission) Describe() string {
	if s.Token == "" {
		return "an agent that records no claim, such as the Prefect 1.4.1 agent"
	}
	return fmt.Sprintf("agent %q in namespace %q", s.Agent, s.Namespace)
}

// submittedByKey is the Submitted state's context key holding the Submission.
const submittedByKey = "submitted_by"

// SubmittedState wraps the state it replaces, as the original agent does, and
// records the submission in its context.
func SubmittedState(message string, previous json.RawMessage, by Submission) json.RawMessage {
	s := baseState("Submitted", message)
	if by.Token != "" {
		s["context"] = map[string]any{submittedByKey: by}
	}
	if len(previous) > 0 && string(previous) != "null" {
		s["state"] = previous
	}
	raw, _ := json.Marshal(s)
	return raw
}

// SubmittedBy returns the submission recorded in a serialized Submitted state.
func SubmittedBy(state json.RawMessage) (Submission, bool) {
	var s struct {
		Context map[string]json.RawMessage `json:"context"`
	}
	var by Submission
	if json.Unmarshal(state, &s) != nil || s.Context[submittedByKey] == nil || json.Unmarshal(s.Context[submittedByKey], &by) != nil {
		return Submission{}, false
	}
	return by, by.Token != ""
}

// PreviousState returns the state a Submitted state wrapped (null when none).
func PreviousState(state json.RawMessage) json.RawMessage {
	var s struct {
		State json.RawMessage `json:"state"`
	}
	_ = json.Unmarshal(state, &s)
	return s.State
}

// ScheduledState is a Scheduled state starting at start, for a run handed back
// to the queue.
func ScheduledState(message string, start time.Time) json.RawMessage {
	s := baseState("Scheduled", message)
	s["start_time"] = start.UTC().Format(time.RFC3339Nano)
	raw, _ := json.Marshal(s)
	return raw
}

// CancelledState is a Cancelled state with a message.
func CancelledState(message string) json.RawMessage {
	raw, _ := json.Marshal(baseState("Cancelled", message))
	return raw
}

// FailedState is a Failed state with a message.
func FailedState(message string) json.RawMessage {
	raw, _ := json.Marshal(baseState("Failed", message))
	return raw
}

// StateStartTime returns a serialized state's start_time (Scheduled states have one).
func StateStartTime(state json.RawMessage) (time.Time, bool) {
	var s struct {
		StartTime string `json:"start_time"`
	}
	if json.Unmarshal(state, &s) != nil || s.StartTime == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s.StartTime)
	return t, err == nil
}

// StateType returns a serialized state's type.
func StateType(state json.RawMessage) string {
	var s struct {
		Type string `json:"type"`
	}
	_ = json.Unmarshal(state, &s)
	return s.Type
}

// ScheduledFamily tells whether a state type is one the agent may submit from.
func ScheduledFamily(stateType string) bool {
	switch stateType {
	case "Scheduled", "Paused", "Resume", "Retrying", "Queued":
		return true
	}
	return false
}

// finishedTypes are the state types of Prefect 1's Finished family.
var finishedTypes = []string{"Success", "Failed", "Cancelled", "Skipped", "Mapped", "Cached", "Looped", "TimedOut", "TriggerFailed", "ValidationFailed"}

// Finished tells whether a state type is in Prefect's Finished family.
func Finished(stateType string) bool {
	for _, t := range finishedTypes {
		if t == stateType {
			return true
		}
	}
	return false
}

// endedTypes are the state types after which a run's Job has nothing left
// to do or is told to stop: Cancelling and the Finished family.
func endedTypes() []string {
	return append([]string{"Cancelling"}, finishedTypes...)
}
