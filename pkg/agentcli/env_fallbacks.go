package agentcli

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/kubectl-prefect/kubectl-prefect/pkg/manifest"
)

// applyEnvFallbacks sets each flag the user did not give from the first of its
// environment variables that is set and not empty.
func applyEnvFallbacks(fs *pflag.FlagSet, fallbacks map[string][]string) error {
	return ApplyEnvFallbacksFrom(fs, fallbacks, os.Getenv)
}

// ApplyEnvFallbacksFrom is applyEnvFallbacks reading the variables through
// getenv: the plugin reads an installed agent's container environment so.
func ApplyEnvFallbacksFrom(fs *pflag.FlagSet, fallbacks map[string][]string, getenv func(string) string) error {
	names := make([]string, 0, len(fallbacks))
	for name := range fallbacks {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		flag := fs.Lookup(name)
		if flag == nil || flag.Changed {
			continue
		}
		for _, envName := range fallbacks[name] {
			raw := getenv(envName)
			if raw == "" {
				continue
			}
			if err := setFromEnv(flag, envName, raw); err != nil {
				return err
			}
			break
		}
	}
	return nil
}

func setFromEnv(flag *pflag.Flag, envName, raw string) error {
	switch envName {
	case "PREFECT__CLOUD__AGENT__ENV_VARS":
		return nil // parsed as a JSON object by SettingsFlags.Complete
	case "PREFECT__CLOUD__AGENT__LABELS":
		labels, err := parseListLiteral(raw)
		if err != nil {
			return fmt.Errorf("%s=%q: %w", envName, raw, err)
		}
		for _, l := range labels {
			if err := flag.Value.Set(l); err != nil {
				return err
			}
		}
		return nil
	case "PREFECT__CLOUD__SEND_FLOW_RUN_LOGS":
		send, err := parseBool(raw)
		if err != nil {
			return fmt.Errorf("%s=%q: %w", envName, raw, err)
		}
		return flag.Value.Set(strconv.FormatBool(!send))
	}
	if flag.Value.Type() == "bool" {
		b, err := parseBool(raw)
		if err != nil {
			return fmt.Errorf("%s=%q: %w", envName, raw, err)
		}
		raw = strconv.FormatBool(b)
	}
	if err := flag.Value.Set(raw); err != nil {
		return fmt.Errorf("%s=%q: %w", envName, raw, err)
	}
	return nil
}

// parseBool accepts the spellings Python and Go users write.
func parseBool(raw string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(raw)) {
	case "true", "1", "yes", "on":
		return true, nil
	case "false", "0", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("expected true or false")
}

// parseListLiteral reads a JSON array of strings or a Python list literal
// such as ['a', "b"], the forms PREFECT__CLOUD__AGENT__LABELS takes.
func parseListLiteral(raw string) ([]string, error) {
	s := strings.TrimSpace(raw)
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") {
		return nil, fmt.Errorf(`expected a list such as ["k8s", "prod"]`)
	}
	var out []string
	if err := json.Unmarshal([]byte(s), &out); err == nil {
		return out, nil
	}
	body := strings.TrimSpace(s[1 : len(s)-1])
	for body != "" {
		q := body[0]
		if q != '\'' && q != '"' {
			return nil, fmt.Errorf(`expected a list of quoted strings such as ["k8s", "prod"]`)
		}
		var b strings.Builder
		i := 1
		for ; i < len(body) && body[i] != q; i++ {
			if body[i] == '\\' && i+1 < len(body) {
				i++
			}
			b.WriteByte(body[i])
		}
		if i >= len(body) {
			return nil, fmt.Errorf("unterminated string in the list")
		}
		out = append(out, b.String())
		body = strings.TrimSpace(body[i+1:])
		if strings.HasPrefix(body, ",") {
			body = strings.TrimSpace(body[1:])
		} else if body != "" {
			return nil, fmt.Errorf("expected a comma between list items")
		}
	}
	return out, nil
}

// parseEnvObject reads a JSON object of names to string values, in order.
func parseEnvObject(raw string) ([]manifest.EnvVar, error) {
	var env manifest.EnvMap
	if err := json.Unmarshal([]byte(raw), &env); err != nil {
		return nil, fmt.Errorf(`expected a JSON object such as {"KEY": "value"}: %v`, err)
	}
	return env, nil
}
