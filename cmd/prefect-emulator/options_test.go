package main

import (
	"io"
	"strings"
	"testing"
)

func TestFlagsAreCheckedWithAdvice(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--backend", "cloud"}, "--backend cloud needs --api-key"},
		{[]string{"--replicas", "0"}, "--replicas must be at least 1"},
		{[]string{"--lazarus-period", "0s"}, "use --lazarus-off"},
		{[]string{"--lazarus-attempts", "0"}, "--lazarus-attempts must be at least 1"},
		{[]string{"--runs", "/nonexistent/runs.json"}, "--runs: open /nonexistent/runs.json"},
		{[]string{"--backend", "mars"}, `unknown backend "mars"`},
	} {
		cmd := newCommand(io.Discard)
		cmd.SetArgs(append(tc.args, "--addr", "127.0.0.1:0"))
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want one saying %q", tc.args, err, tc.want)
		}
	}
}
