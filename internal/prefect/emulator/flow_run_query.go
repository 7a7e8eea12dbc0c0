package emulator

import (
	"fmt"
	"sort"
	"time"
)

// Hasura's generated flow_run query root, for the columns and arguments the
// agent's own searches use (pkg/prefect/queue.graphql; recovery's
// StrandedFlowRunCandidates in pkg/prefect/operations.graphql): the where
// filters on tenant_id, labels (jsonb) and logs, order_by, offset and limit.
// Server serves the root from Hasura (services/apollo/src/executors.js
// hasuraExecutor; hasura/graphql-engine v2.1.1 in
// docker/infrastructure/docker-compose.yml), whose rules these are: asc
// sorts NULLs last, desc NULLs first; offset applies after the sort, then
// limit; a relationship filter (logs) holds when a related row matches (SQL
// EXISTS), so _not over it holds when none does (filter.go matchBoolExp);
// _like is SQL LIKE (filter.go like); uuids order as Postgres orders them
// (filter.go compareUUID), which a key set on (state_timestamp, id) needs.

// flowRunColumn is matchFlowRun's hook for the columns this file adds; ok is
// false for a column it does not know.
func flowRunColumn(r *FlowRun, column string, cond map[string]any) (matched, ok bool, err error) {
	switch column {
	case "tenant_id":
		matched, err = compareString(r.TenantID, false, cond)
		return matched, true, err
	case "labels":
		matched, err = compareStringArray(r.Labels, cond)
		return matched, true, err
	case "logs":
		for _, l := range r.Logs {
			m, err := matchLog(l, cond)
			if err != nil || m {
				return m, true, err
			}
		}
		return false, true, nil
	}
	return false, false, nil
}

// compareStringArray compares a jsonb column holding an array of strings, as
// Postgres's jsonb operators do: <@ (_contained_in) and @> (_contains) are
// set containment, = and <> compare the arrays element by element.
func compareStringArray(v []string, cond map[string]any) (bool, error) {
	for op, arg := range cond {
		want := asStrings(arg)
		var ok bool
		switch op {
		case "_contained_in":
			ok = true
			for _, s := range v {
				if !contains(want, s) {
					ok = false
					break
				}
			}
		case "_contains":
			ok = true
			for _, s := range want {
				if !contains(v, s) {
					ok = false
					break
				}
			}
		case "_eq":
			ok = equalStrings(v, want)
		case "_neq":
			ok = !equalStrings(v, want)
		default:
			return false, fmt.Errorf("emulator: jsonb comparison %s is not implemented", op)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// sortFlowRuns orders rows by Hasura's order_by argument, a list of
// single-column objects applied in turn. Without order_by the rows keep the
// emulator's insertion order (Postgres's order is then unspecified).
func sortFlowRuns(rows []*FlowRun, orderBy any) error {
	type key struct {
		column, dir string
	}
	var keys []key
	items := asList(orderBy)
	if items == nil {
		if m, ok := orderBy.(map[string]any); ok {
			items = []any{m}
		}
	}
	for _, item := range items {
		m, _ := item.(map[string]any)
		for column, dir := range m {
			switch column {
			case "id", "state_start_time", "state_timestamp":
			default:
				return fmt.Errorf("emulator: ordering flow_run by %s is not implemented", column)
			}
			keys = append(keys, key{column, asString(dir)})
		}
	}
	if len(keys) == 0 {
		return nil
	}
	sort.SliceStable(rows, func(i, j int) bool {
		for _, k := range keys {
			var c int
			switch k.column {
			case "id":
				c = compareNullable(rows[i].ID, rows[j].ID, rows[i].ID == "", rows[j].ID == "", k.dir)
			case "state_start_time":
				c = compareTimes(rows[i].StateStartTime, rows[j].StateStartTime, k.dir)
			case "state_timestamp":
				c = compareTimes(rows[i].StateTimestamp, rows[j].StateTimestamp, k.dir)
			}
			if c != 0 {
				return c < 0
			}
		}
		return false
	})
	return nil
}

func compareTimes(a, b time.Time, dir string) int {
	return compareNullable(a.UnixNano(), b.UnixNano(), a.IsZero(), b.IsZero(), dir)
}

// compareNullable compares two values in the direction dir (Hasura's
// order_by enum), placing NULLs as Postgres does by default: last in
// ascending order, first in descending order, unless the direction says.
func compareNullable[T int64 | string](a, b T, aNull, bNull bool, dir string) int {
	nullsFirst := dir == "desc" || dir == "desc_nulls_first" || dir == "asc_nulls_first"
	switch {
	case aNull && bNull:
		return 0
	case aNull:
		if nullsFirst {
			return -1
		}
		return 1
	case bNull:
		if nullsFirst {
			return 1
		}
		return -1
	}
	c := 0
	if a < b {
		c = -1
	} else if a > b {
		c = 1
	}
	if dir == "desc" || dir == "desc_nulls_first" || dir == "desc_nulls_last" {
		c = -c
	}
	return c
}

// queryFlowRuns is the flow_run root: filter, sort, then offset and limit.
func (e *Emulator) queryFlowRuns(info requestInfo, args map[string]any) ([]any, error) {
	where, _ := args["where"].(map[string]any)
	var rows []*FlowRun
	listed := listedIDs(where)
	for _, id := range e.order {
		if listed != nil && !listed[id] {
			continue
		}
		r := e.runs[id]
		if info.tenantID != "" && r.TenantID != info.tenantID {
			continue
		}
		ok, err := matchFlowRun(r, where)
		if err != nil {
			return nil, err
		}
		if ok {
			rows = append(rows, r)
		}
	}
	if err := sortFlowRuns(rows, args["order_by"]); err != nil {
		return nil, err
	}
	if offset, ok := asInt(args["offset"]); ok && offset > 0 {
		rows = rows[min(offset, len(rows)):]
	}
	if limit, ok := asInt(args["limit"]); ok && limit < len(rows) {
		rows = rows[:max(limit, 0)]
	}
	out := make([]any, 0, len(rows))
	for _, r := range rows {
		out = append(out, e.flowRunObject(r))
	}
	return out, nil
}

// listedIDs returns the ids a where lists at its top level (id: {_in:
// [...]}), or nil when it lists none. Server reads such rows by primary key;
// the emulator looks them up in this set instead of testing every run
// against every listed id (as compareString does, case and all), and still
// applies the whole where to the runs it lets through. A where that lists
// no existing id matches nothing without being evaluated, so an error in the
// rest of it goes unreported there.
func listedIDs(where map[string]any) map[string]bool {
	cond, ok := where["id"].(map[string]any)
	if !ok {
		return nil
	}
	list, ok := cond["_in"].([]any)
	if !ok {
		return nil
	}
	set := make(map[string]bool, len(list))
	for _, v := range list {
		set[asString(v)] = true
	}
	return set
}
