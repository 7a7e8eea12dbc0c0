package emulator

import (
	"encoding/json"
	"io"
	"net/http"
	"time"
)

// registerRunnerControl adds the control API for runs of registered flows:
//
//	POST /emulator/flows                 a serialized flow; answers the registered flow
//	POST /emulator/flows/{id}/runs       a RunOfFlow (flow_id from the path); answers the run
//	POST /emulator/task-runs/{id}/start  {"start_time": ...}: move the current state's start
func (e *Emulator) registerRunnerControl(mux *http.ServeMux) {
	mux.HandleFunc("POST /emulator/flows", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f, err := e.RegisterFlow(body, r.URL.Query().Get("tenant_id"))
		if err != nil {
			http.Error(w, "body must be a serialized Prefect flow (Flow.serialize()): "+err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusCreated, f)
	})
	mux.HandleFunc("POST /emulator/flows/{id}/runs", func(w http.ResponseWriter, r *http.Request) {
		var spec RunOfFlow
		if err := json.NewDecoder(r.Body).Decode(&spec); err != nil && err != io.EOF {
			http.Error(w, `body must be {"labels": [...], "run_config": {...}, "parameters": {...}} or empty: `+err.Error(), http.StatusBadRequest)
			return
		}
		spec.FlowID = r.PathValue("id")
		run, err := e.CreateFlowRun(spec)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusCreated, run)
	})
	mux.HandleFunc("POST /emulator/task-runs/{id}/start", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			StartTime time.Time `json:"start_time"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.StartTime.IsZero() {
			http.Error(w, `body must be {"start_time": "<RFC 3339>"}`, http.StatusBadRequest)
			return
		}
		if err := e.MoveTaskRunStart(r.PathValue("id"), body.StartTime); err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
