package emulator

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// The state history (flow_run.states, task_run.states) as Hasura serves the
// flow_run_state and task_run_state tables: filtered by where, sorted by
// order_by, then offset and limit. Without order_by Hasura promises no order;
// the emulator answers in insertion order.

// stateRows answers a states(where, order_by, limit, offset) field.
func stateRows(records []StateRecord, args map[string]any, row func(StateRecord) object) (any, error) {
	where, _ := args["where"].(map[string]any)
	var rows []StateRecord
	for _, rec := range records {
		ok, err := matchStateRecord(rec, where)
		if err != nil {
			return nil, err
		}
		if ok {
			rows = append(rows, rec)
		}
	}
	keys, err := orderKeys(args["order_by"])
	if err != nil {
		return nil, err
	}
	if len(keys) > 0 {
		var sortErr error
		sort.SliceStable(rows, func(i, j int) bool {
			for _, k := range keys {
				c, err := compareStateColumn(rows[i], rows[j], k)
				if err != nil {
					sortErr = err
					return false
				}
				if c != 0 {
					return c < 0
				}
			}
			return false
		})
		if sortErr != nil {
			return nil, sortErr
		}
	}
	if offset, ok := asInt(args["offset"]); ok && offset > 0 {
		if offset > len(rows) {
			offset = len(rows)
		}
		rows = rows[offset:]
	}
	if limit, ok := asInt(args["limit"]); ok && limit >= 0 && limit < len(rows) {
		rows = rows[:limit]
	}
	out := make([]any, 0, len(rows))
	for _, rec := range rows {
		out = append(out, row(rec))
	}
	return out, nil
}

// flowRunStateObject resolves a flow_run_state row.
func flowRunStateObject(runID string, rec StateRecord) object {
	return stateObject("flow_run_id", runID, rec)
}

// taskRunStateObject resolves a task_run_state row.
func taskRunStateObject(taskRunID string, rec StateRecord) object {
	return stateObject("task_run_id", taskRunID, rec)
}

func stateObject(parentColumn, parentID string, rec StateRecord) object {
	return func(field string, _ map[string]any) (any, error) {
		switch field {
		case "id":
			return rec.ID, nil
		case parentColumn:
			return parentID, nil
		case "version":
			return rec.Version, nil
		case "state":
			return rec.Type, nil
		case "timestamp":
			return rec.Timestamp, nil
		case "message":
			return rec.Message, nil
		case "serialized_state":
			return jsonValue(rec.State), nil
		case "start_time":
			if rec.StartTime == nil {
				return nil, nil
			}
			return *rec.StartTime, nil
		}
		return nil, fmt.Errorf("emulator: %s state row field %s is not implemented", strings.TrimSuffix(parentColumn, "_id"), field)
	}
}

func matchStateRecord(rec StateRecord, where map[string]any) (bool, error) {
	return matchBoolExp(where, func(column string, cond map[string]any) (bool, error) {
		switch column {
		case "id":
			return compareString(rec.ID, false, cond)
		case "version":
			return compareInt(rec.Version, false, cond)
		case "state":
			return compareString(rec.Type, false, cond)
		case "message":
			return compareString(rec.Message, false, cond)
		case "timestamp":
			return compareTime(rec.Timestamp, cond)
		case "start_time":
			var start time.Time
			if rec.StartTime != nil {
				start = *rec.StartTime
			}
			return compareTime(start, cond)
		}
		return false, fmt.Errorf("emulator: filtering state rows on %s is not implemented", column)
	})
}

// orderKey is one column of an order_by argument and its direction.
type orderKey struct {
	column     string
	desc       bool
	nullsFirst bool
}

// orderKeys reads an order_by argument: a list of objects, or one object (a
// list of one, by GraphQL's input coercion). Hasura's asc puts NULLs last,
// desc puts them first (schema.graphql, enum order_by). An object naming
// several columns is refused: Hasura follows the order of its keys, which
// the emulator does not see.
func orderKeys(v any) ([]orderKey, error) {
	if v == nil {
		return nil, nil
	}
	items := asList(v)
	if m, ok := v.(map[string]any); ok {
		items = []any{m}
	}
	var keys []orderKey
	for _, item := range items {
		m, _ := item.(map[string]any)
		if len(m) > 1 {
			return nil, fmt.Errorf("emulator: an order_by object with several columns is not implemented: pass a list of one-column objects")
		}
		for column, dir := range m {
			k := orderKey{column: column}
			switch asString(dir) {
			case "asc", "asc_nulls_last":
			case "asc_nulls_first":
				k.nullsFirst = true
			case "desc", "desc_nulls_first":
				k.desc, k.nullsFirst = true, true
			case "desc_nulls_last":
				k.desc = true
			default:
				return nil, fmt.Errorf("emulator: unknown order_by direction %v", dir)
			}
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// compareStateColumn orders two state rows by one key: negative when a comes first.
func compareStateColumn(a, b StateRecord, k orderKey) (int, error) {
	var c int
	switch k.column {
	case "id":
		c = strings.Compare(a.ID, b.ID)
	case "version":
		c = a.Version - b.Version
	case "state":
		c = strings.Compare(a.Type, b.Type)
	case "message":
		c = strings.Compare(a.Message, b.Message)
	case "timestamp":
		c = a.Timestamp.Compare(b.Timestamp)
	case "start_time":
		switch {
		case a.StartTime == nil && b.StartTime == nil:
			return 0, nil
		case a.StartTime == nil || b.StartTime == nil:
			// NULLs go first or last whatever the direction.
			if (a.StartTime == nil) == k.nullsFirst {
				return -1, nil
			}
			return 1, nil
		}
		c = a.StartTime.Compare(*b.StartTime)
	default:
		return 0, fmt.Errorf("emulator: ordering state rows by %s is not implemented", k.column)
	}
	if k.desc {
		c = -c
	}
	return c, nil
}

func compareInt(v int, isNull bool, cond map[string]any) (bool, error) {
	for op, arg := range cond {
		if op == "_is_null" {
			want, _ := arg.(bool)
			if isNull != want {
				return false, nil
			}
			continue
		}
		if isNull {
			return false, nil
		}
		var ok bool
		switch op {
		case "_in", "_nin":
			found := false
			for _, item := range asList(arg) {
				if n, good := asInt(item); good && n == v {
					found = true
				}
			}
			ok = found == (op == "_in")
		default:
			n, good := asInt(arg)
			if !good {
				return false, fmt.Errorf("emulator: %s needs an Int, got %v", op, arg)
			}
			switch op {
			case "_eq":
				ok = v == n
			case "_neq":
				ok = v != n
			case "_gt":
				ok = v > n
			case "_gte":
				ok = v >= n
			case "_lt":
				ok = v < n
			case "_lte":
				ok = v <= n
			default:
				return false, fmt.Errorf("emulator: comparison %s is not implemented", op)
			}
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}
