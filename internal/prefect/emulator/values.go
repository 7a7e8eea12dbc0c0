package emulator

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Argument values come from gqlparser: literals as int64/float64/string/bool,
// variables as decoded JSON with json.Number. These helpers read either.

func asString(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case json.Number:
		return s.String()
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func asInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), true
	case float64:
		return int(n), true
	case json.Number:
		i, err := strconv.Atoi(n.String())
		return i, err == nil
	}
	return 0, false
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func asStrings(v any) []string {
	out := []string{}
	for _, item := range asList(v) {
		out = append(out, asString(item))
	}
	return out
}

func asAnyList(in []string) []any {
	out := make([]any, 0, len(in))
	for _, s := range in {
		out = append(out, s)
	}
	return out
}
