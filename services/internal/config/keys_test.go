package config

import (
	"strings"
	"testing"
)

func TestKeys(t *testing.T) {
	keys := Keys("POSTCOVE_AUTH", defaults())
	want := map[string]KeyInfo{
		"listen":            {Key: "listen", Env: "POSTCOVE_AUTH_LISTEN", Type: "string", Default: "127.0.0.1:9100", Help: "gRPC listen address"},
		"database.max_open": {Key: "database.max_open", Env: "POSTCOVE_AUTH_DATABASE_MAX_OPEN", Type: "integer", Default: "10"},
		"lockout.base":      {Key: "lockout.base", Env: "POSTCOVE_AUTH_LOCKOUT_BASE", Type: "duration", Default: "1s"},
		"lockout.factor":    {Key: "lockout.factor", Env: "POSTCOVE_AUTH_LOCKOUT_FACTOR", Type: "number", Default: "2"},
		"domains":           {Key: "domains", Env: "POSTCOVE_AUTH_DOMAINS", Type: "list of strings", Default: "example.org"},
		"debug":             {Key: "debug", Env: "POSTCOVE_AUTH_DEBUG", Type: "bool", Default: "false"},
	}
	if len(keys) != 11 {
		t.Errorf("Keys() returned %d keys, want 11: %+v", len(keys), keys)
	}
	if keys[0].Key != "listen" {
		t.Errorf("Keys()[0] = %q, want declaration order starting with listen", keys[0].Key)
	}
	for _, k := range keys {
		if k.Key == "Ignored" || k.Key == "-" {
			t.Errorf("Keys() includes the ignored field: %+v", k)
		}
		if w, ok := want[k.Key]; ok && k != w {
			t.Errorf("Keys() %s = %+v, want %+v", k.Key, k, w)
		}
	}
}

func TestKeysUnsupportedEnv(t *testing.T) {
	type c struct {
		Routes map[string]string `toml:"routes"`
		Ports  []int             `toml:"ports"`
	}
	for _, k := range Keys("P", c{}) {
		if k.Env != "" {
			t.Errorf("Keys() %s Env = %q, want none for a type the environment cannot set", k.Key, k.Env)
		}
	}
}

func TestWriteReference(t *testing.T) {
	var b strings.Builder
	if err := WriteReference(&b, "POSTCOVE_AUTH", defaults()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"KEY", "lockout.base", "POSTCOVE_AUTH_LOCKOUT_BASE", "duration", "1s", "gRPC listen address", `""`} {
		if !strings.Contains(out, want) {
			t.Errorf("WriteReference() lacks %q:\n%s", want, out)
		}
	}
	if lines := strings.Count(out, "\n"); lines != 12 {
		t.Errorf("WriteReference() wrote %d lines, want a header and 11 keys:\n%s", lines, out)
	}
}
