package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// RunConfig is a flow run's KubernetesRun run config as the backend stores it.
// A UniversalRun or a null run config is a KubernetesRun with nothing set.
type RunConfig struct {
	Type               string          `json:"type"`
	JobTemplate        json.RawMessage `json:"job_template"`
	JobTemplatePath    string          `json:"job_template_path"`
	Image              string          `json:"image"`
	Env                EnvMap          `json:"env"`
	CPULimit           string          `json:"cpu_limit"`
	CPURequest         string          `json:"cpu_request"`
	MemoryLimit        string          `json:"memory_limit"`
	MemoryRequest      string          `json:"memory_request"`
	ServiceAccountName *string         `json:"service_account_name"`
	ImagePullSecrets   []string        `json:"image_pull_secrets"`
	ImagePullPolicy    string          `json:"image_pull_policy"`
	Labels             []string        `json:"labels"`
}

// EnvMap keeps a run config's env in the order it was written.
type EnvMap []EnvVar

// EnvVar is one name and value.
type EnvVar struct{ Name, Value string }

// UnmarshalJSON reads a JSON object of strings, keeping key order. Numbers and
// booleans are turned into their text, as a user writing env in Python
// expects; null is an empty value, as the original sent it (the API server
// reads a null value as empty).
func (m *EnvMap) UnmarshalJSON(raw []byte) error {
	if string(bytes.TrimSpace(raw)) == "null" {
		*m = nil
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return fmt.Errorf("env must be an object of names to values")
	}
	var out EnvMap
	for dec.More() {
		keyTok, err := dec.Token()
		if err != nil {
			return err
		}
		var v any
		if err := dec.Decode(&v); err != nil {
			return err
		}
		name := keyTok.(string)
		switch val := v.(type) {
		case string:
			out = append(out, EnvVar{name, val})
		case json.Number:
			out = append(out, EnvVar{name, val.String()})
		case bool:
			out = append(out, EnvVar{name, fmt.Sprint(val)})
		case nil:
			out = append(out, EnvVar{name, ""})
		default:
			return fmt.Errorf("env %s must be a string, not %s", name, jsonKind(v))
		}
	}
	*m = out
	return nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// ParseRunConfig reads a stored run config. It rejects run config types other
// agents handle, and fields of the wrong type, with a message naming them.
func ParseRunConfig(raw json.RawMessage) (RunConfig, error) {
	var rc RunConfig
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return RunConfig{Type: "KubernetesRun"}, nil
	}
	var probe struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return rc, fmt.Errorf("the run config is not a JSON object: %v", err)
	}
	switch probe.Type {
	case "KubernetesRun":
	case "UniversalRun":
		var u struct {
			Env    EnvMap   `json:"env"`
			Labels []string `json:"labels"`
		}
		if err := json.Unmarshal(raw, &u); err != nil {
			return rc, fmt.Errorf("invalid UniversalRun run config: %v", err)
		}
		return RunConfig{Type: "KubernetesRun", Env: u.Env, Labels: u.Labels}, nil
	case "":
		return rc, fmt.Errorf("the run config has no type: set run_config=KubernetesRun(...) on the flow")
	default:
		return rc, fmt.Errorf("the flow run has a run_config of type %s, only KubernetesRun (or UniversalRun) is supported by the Kubernetes agent: give the flow a KubernetesRun or start an agent for %s", probe.Type, probe.Type)
	}
	if err := json.Unmarshal(raw, &rc); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return rc, fmt.Errorf("invalid KubernetesRun run config: field %s must be %s, not %s", typeErr.Field, goTypeName(typeErr.Type.String()), typeErr.Value)
		}
		return rc, fmt.Errorf("invalid KubernetesRun run config: %v", err)
	}
	if rc.hasJobTemplate() && rc.JobTemplatePath != "" {
		return rc, fmt.Errorf("invalid KubernetesRun run config: job_template and job_template_path are both set, keep one")
	}
	switch rc.ImagePullPolicy {
	case "", "Always", "IfNotPresent", "Never":
	default:
		return rc, fmt.Errorf("invalid KubernetesRun run config: image_pull_policy %q must be Always, IfNotPresent or Never", rc.ImagePullPolicy)
	}
	return rc, nil
}

// hasJobTemplate tells whether the run config brings a template of its own:
// like the original, null and an empty object {} are no template.
func (rc RunConfig) hasJobTemplate() bool {
	var probe map[string]json.RawMessage
	if len(bytes.TrimSpace(rc.JobTemplate)) == 0 || string(bytes.TrimSpace(rc.JobTemplate)) == "null" {
		return false
	}
	if err := json.Unmarshal(rc.JobTemplate, &probe); err == nil && len(probe) == 0 {
		return false
	}
	return true
}

func goTypeName(t string) string {
	switch {
	case t == "string" || t == "*string":
		return "a string"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.Contains(t, "RawMessage"):
		return "an object"
	}
	return t
}

// PythonList renders labels the way Python's repr() prints a list of strings,
// which is what the original agent puts in PREFECT__CLOUD__AGENT__LABELS. The
// items keep their order.
func PythonList(items []string) string {
	parts := make([]string, 0, len(items))
	for _, s := range items {
		parts = append(parts, pythonRepr(s))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// pythonRepr is repr() of a Python str: single quotes unless the text holds a
// single quote and no double quote; backslash, the quote, \t, \n and \r
// escaped; other characters that are not printable as \xNN, \uNNNN or
// \UNNNNNNNN.
func pythonRepr(s string) string {
	quote := byte('\'')
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		quote = '"'
	}
	var b strings.Builder
	b.WriteByte(quote)
	for _, r := range s {
		switch {
		case r == '\\' || r == rune(quote):
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case unicode.IsPrint(r):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteByte(quote)
	return b.String()
}
