package prefect

import "encoding/json"

// SkippedState is a Skipped state with a message. Prefect 1's Skipped is a
// Success subclass: a final, successful state whose run did nothing, which
// the agent's --late-runs skip policy gives a run too late to start.
func SkippedState(message string) json.RawMessage {
	raw, _ := json.Marshal(baseState("Skipped", message))
	return raw
}
