package prefect

import (
	"encoding/json"
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

// SubmittedState wraps the state it replaces, as the original agent does.
func SubmittedState(message string, previous json.RawMessage) json.RawMessage {
	s := baseState("Submitted", message)
	if len(previous) > 0 && string(previous) != "null" {
		s["state"] = previous
	}
	raw, _ := json.Marshal(s)
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

// Finished tells whether a state type is in Prefect's Finished family.
func Finished(stateType string) bool {
	switch stateType {
	case "Success", "Failed", "Cancelled", "Skipped", "Mapped", "Cached", "Looped", "TimedOut", "TriggerFailed", "ValidationFailed":
		return true
	}
	return false
}
