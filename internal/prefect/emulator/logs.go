package emulator

import (
	"sort"
)

// logObject resolves a log row: the columns of table log the schema copy
// exposes (services/hasura/migrations: public.log).
func logObject(l Log) object {
	var taskRun any
	if l.TaskRunID != "" {
		taskRun = l.TaskRunID
	}
	return mapObject(map[string]any{"level": l.Level, "message": l.Message, "name": l.Name, "timestamp": l.Timestamp, "task_run_id": taskRun})
}

// orderLogs applies order_by on timestamp, the one ordering the schema copy
// offers: Hasura sorts with SQL ORDER BY, and rows with equal timestamps
// keep no defined order (here: the order they were written in). Without
// order_by the order is arbitrary on Server; here it is insertion order.
func orderLogs(logs []Log, orderBy any) []Log {
	dir := ""
	for _, item := range asList(orderBy) {
		if m, ok := item.(map[string]any); ok {
			dir = asString(m["timestamp"])
		}
	}
	if m, ok := orderBy.(map[string]any); ok {
		dir = asString(m["timestamp"])
	}
	if dir == "" {
		return logs
	}
	out := append([]Log(nil), logs...)
	desc := dir == "desc" || dir == "desc_nulls_first" || dir == "desc_nulls_last"
	sort.SliceStable(out, func(i, j int) bool {
		if desc {
			return out[i].Timestamp.After(out[j].Timestamp)
		}
		return out[i].Timestamp.Before(out[j].Timestamp)
	})
	return out
}
