package emulator

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Hasura bool_exp evaluation for the columns the schema copy exposes. Nested
// relationship filters (flow_run.task_runs) hold when any related row matches.

func matchFlowRun(r *FlowRun, where map[string]any) (bool, error) {
	return matchBoolExp(where, func(column string, cond map[string]any) (bool, error) {
		if matched, ok, err := flowRunColumn(r, column, cond); ok {
			return matched, err
		}
		switch column {
		case "id":
			return compareUUID(r.ID, false, cond)
		case "flow_id":
			return compareString(r.Flow.ID, false, cond)
		case "state":
			return compareString(r.State, r.State == "", cond)
		case "state_start_time":
			return compareTime(r.StateStartTime, cond)
		case "state_timestamp":
			return compareTime(r.StateTimestamp, cond)
		case "updated":
			return compareTime(r.Updated, cond)
		case "agent_id":
			return compareString(r.AgentID, r.AgentID == "", cond)
		case "agent":
			// flow_run.agent is the object relationship on agent_id
			// (services/hasura/migrations/metadata.yaml, table flow_run): a
			// run without an agent matches no agent condition.
			if r.AgentID == "" {
				return false, nil
			}
			return matchBoolExp(cond, func(column string, c map[string]any) (bool, error) {
				switch column {
				case "id":
					return compareString(r.AgentID, false, c)
				case "name":
					return compareString(r.agentName, r.agentName == "", c)
				case "labels":
					return compareStringArray(r.agentLabels, c)
				}
				return false, fmt.Errorf("emulator: filtering agent on %s is not implemented", column)
			})
		case "name":
			return compareString(r.Name, r.Name == "", cond)
		case "heartbeat":
			return compareTime(r.Heartbeat, cond)
		case "times_resurrected":
			return compareInt(r.TimesResurrected, false, cond)
		case "task_runs":
			for _, tr := range r.TaskRuns {
				ok, err := matchTaskRun(tr, cond)
				if err != nil || ok {
					return ok, err
				}
			}
			return false, nil
		}
		return false, fmt.Errorf("emulator: filtering flow_run on %s is not implemented", column)
	})
}

func matchTaskRun(tr *TaskRun, where map[string]any) (bool, error) {
	return matchBoolExp(where, func(column string, cond map[string]any) (bool, error) {
		switch column {
		case "id":
			return compareString(tr.ID, false, cond)
		case "state":
			return compareString(tr.State, tr.State == "", cond)
		case "state_start_time":
			return compareTime(tr.StateStartTime, cond)
		}
		return false, fmt.Errorf("emulator: filtering task_run on %s is not implemented", column)
	})
}

func matchLog(l Log, where map[string]any) (bool, error) {
	return matchBoolExp(where, func(column string, cond map[string]any) (bool, error) {
		switch column {
		case "level":
			return compareString(l.Level, false, cond)
		case "message":
			return compareString(l.Message, false, cond)
		case "name":
			return compareString(l.Name, false, cond)
		case "timestamp":
			return compareTime(l.Timestamp, cond)
		}
		return false, fmt.Errorf("emulator: filtering log on %s is not implemented", column)
	})
}

// matchBoolExp applies _and, _or and _not, and hands every column condition
// to column. Hasura turns a bool_exp into one SQL boolean expression
// (graphql-engine server/src-lib/Hasura/Backends/Postgres/Translate/BoolExp.hs):
// the keys of one object and _and are AND, _or is OR, _not is NOT, and a
// condition on an array relationship (flow_run.logs, flow_run.task_runs) is
// EXISTS (a related row matching it), so _not over a relationship holds
// exactly when no related row matches. A comparison with a NULL column is
// false here where SQL says NULL; NOT of it differs, which no operation the
// agent sends relies on (it negates only relationships).
func matchBoolExp(where map[string]any, column func(string, map[string]any) (bool, error)) (bool, error) {
	for key, value := range where {
		var ok bool
		var err error
		switch key {
		case "_and":
			ok = true
			for _, sub := range asList(value) {
				m, _ := sub.(map[string]any)
				if ok, err = matchBoolExp(m, column); err != nil || !ok {
					break
				}
			}
		case "_or":
			for _, sub := range asList(value) {
				m, _ := sub.(map[string]any)
				if ok, err = matchBoolExp(m, column); err != nil || ok {
					break
				}
			}
		case "_not":
			m, _ := value.(map[string]any)
			ok, err = matchBoolExp(m, column)
			ok = !ok
		default:
			m, _ := value.(map[string]any)
			ok, err = column(key, m)
		}
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

func compareString(v string, isNull bool, cond map[string]any) (bool, error) {
	for op, arg := range cond {
		var ok bool
		switch op {
		case "_eq":
			ok = !isNull && v == asString(arg)
		case "_neq":
			ok = !isNull && v != asString(arg)
		case "_in":
			ok = !isNull && contains(asStrings(arg), v)
		case "_nin":
			ok = !isNull && !contains(asStrings(arg), v)
		case "_is_null":
			want, _ := arg.(bool)
			ok = isNull == want
		case "_like":
			ok = !isNull && like(v, asString(arg))
		default:
			return false, fmt.Errorf("emulator: comparison %s is not implemented", op)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// compareUUID compares a uuid column: equality as a string, order as
// Postgres orders uuids (byte by byte, which is the order of their
// lower-case text form).
func compareUUID(v string, isNull bool, cond map[string]any) (bool, error) {
	rest := map[string]any{}
	for op, arg := range cond {
		var ok bool
		c := strings.Compare(strings.ToLower(v), strings.ToLower(asString(arg)))
		switch op {
		case "_gt":
			ok = c > 0
		case "_gte":
			ok = c >= 0
		case "_lt":
			ok = c < 0
		case "_lte":
			ok = c <= 0
		default:
			rest[op] = arg
			continue
		}
		if isNull || !ok {
			return false, nil
		}
	}
	return compareString(v, isNull, rest)
}

func compareTime(v time.Time, cond map[string]any) (bool, error) {
	for op, arg := range cond {
		if op == "_is_null" {
			want, _ := arg.(bool)
			if v.IsZero() != want {
				return false, nil
			}
			continue
		}
		if v.IsZero() {
			return false, nil
		}
		t, err := time.Parse(time.RFC3339Nano, asString(arg))
		if err != nil {
			return false, fmt.Errorf("invalid input syntax for type timestamp with time zone: %q", asString(arg))
		}
		var ok bool
		switch op {
		case "_eq":
			ok = v.Equal(t)
		case "_gt":
			ok = v.After(t)
		case "_gte":
			ok = !v.Before(t)
		case "_lt":
			ok = v.Before(t)
		case "_lte":
			ok = !v.After(t)
		default:
			return false, fmt.Errorf("emulator: comparison %s is not implemented", op)
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// like is SQL LIKE: % matches any run of characters, _ any one character.
func like(v, pattern string) bool {
	var re strings.Builder
	re.WriteString("^")
	for _, r := range pattern {
		switch r {
		case '%':
			re.WriteString("(?s:.*)")
		case '_':
			re.WriteString("(?s:.)")
		default:
			re.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	re.WriteString("$")
	ok, _ := regexp.MatchString(re.String(), v)
	return ok
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}
