package jobs

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/prefect"
)

// TestReportRetriesAfterVersionLocking: when the run changed between the
// agent's read and its Failed (Cloud's version locking), the agent reads the
// run again and sets Failed on the new version; the line is written once.
func TestReportRetriesAfterVersionLocking(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	setVersions := []int{}
	version := 3
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var req struct {
			OperationName string         `json:"operationName"`
			Variables     map[string]any `json:"variables"`
		}
		_ = json.Unmarshal(raw, &req)
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, req.OperationName)
		switch req.OperationName {
		case "FlowRunStates":
			_, _ = io.WriteString(w, `{"data":{"flow_run":[{"id":"run-1","version":`+strconv.Itoa(version)+`,"state":"Running"}]}}`)
		case "WriteRunLogs":
			_, _ = io.WriteString(w, `{"data":{"write_run_logs":{"success":true}}}`)
		case "SetFlowRunStates":
			in := req.Variables["input"].(map[string]any)["states"].([]any)[0].(map[string]any)
			got := int(in["version"].(float64))
			setVersions = append(setVersions, got)
			if len(setVersions) == 1 {
				version++ // the flow moved the run on meanwhile
				_, _ = io.WriteString(w, `{"data":null,"errors":[{"message":"State update failed: version mismatch","extensions":{"code":"VERSION_LOCKING_ERROR"}}]}`)
				return
			}
			_, _ = io.WriteString(w, `{"data":{"set_flow_run_states":{"states":[{"id":"run-1","status":"SUCCESS","message":null}]}}}`)
		default:
			http.Error(w, "unexpected "+req.OperationName, http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	m := testController(newClient(srv.URL, ""), nil, Config{})
	m.now = func() time.Time { return t0 }
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "j", Namespace: "ns", UID: "u"}}
	p := problem{key: "pod/p/failed", reason: "Error", level: prefect.LevelError, unlessFinished: true, message: "Pod p failed"}
	if err := m.report(t.Context(), job, "run-1", []problem{p}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(calls, " "); got != "FlowRunStates WriteRunLogs SetFlowRunStates FlowRunStates SetFlowRunStates" {
		t.Fatalf("calls %q", got)
	}
	if len(setVersions) != 2 || setVersions[0] != 3 || setVersions[1] != 4 {
		t.Fatalf("Failed set on versions %v, want [3 4]", setVersions)
	}
	if !m.reported.of(job)["pod/p/failed"] {
		t.Fatalf("the problem is not recorded as reported")
	}
}
