package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testConfig has one field of every supported kind.
type testConfig struct {
	Listen   string `toml:"listen" help:"gRPC listen address"`
	LogLevel string `toml:"log_level"`
	Database struct {
		Driver  string `toml:"driver"`
		DSN     string `toml:"dsn"`
		MaxOpen int    `toml:"max_open"`
	} `toml:"database"`
	Lockout struct {
		Base      time.Duration `toml:"base"`
		Threshold uint32        `toml:"threshold"`
		Factor    float64       `toml:"factor"`
	} `toml:"lockout"`
	Quota   int64    `toml:"quota"`
	Debug   bool     `toml:"debug"`
	Domains []string `toml:"domains"`
	Ignored string   `toml:"-"`
}

func (c *testConfig) Validate() error {
	var errs Errors
	CheckOneOf(&errs, "database.driver", c.Database.Driver, "sqlite", "mysql")
	CheckAddr(&errs, "listen", c.Listen)
	if c.Lockout.Base <= 0 {
		errs.Add("lockout.base", "must be positive, got %s", c.Lockout.Base)
	}
	return errs.Err()
}

func defaults() *testConfig {
	c := &testConfig{Listen: "127.0.0.1:9100", LogLevel: "info", Quota: 1 << 30}
	c.Database.Driver = "sqlite"
	c.Database.MaxOpen = 10
	c.Lockout.Base = time.Second
	c.Lockout.Threshold = 5
	c.Lockout.Factor = 2
	c.Domains = []string{"example.org"}
	return c
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test.toml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

func TestLoadPrecedence(t *testing.T) {
	file := `
listen = "0.0.0.0:9100"
domains = ["a.example", "b.example"]
debug = true

[database]
driver = "mysql"
dsn = "user:pw@tcp(db:3306)/mail"

[lockout]
base = "5s"
factor = 1.5
`
	tests := []struct {
		name string
		file string // "" means no file
		env  map[string]string
		want func(*testConfig)
	}{
		{
			name: "defaults only",
			want: func(*testConfig) {},
		},
		{
			name: "file over defaults",
			file: file,
			want: func(c *testConfig) {
				c.Listen = "0.0.0.0:9100"
				c.Domains = []string{"a.example", "b.example"}
				c.Debug = true
				c.Database.Driver = "mysql"
				c.Database.DSN = "user:pw@tcp(db:3306)/mail"
				c.Lockout.Base = 5 * time.Second
				c.Lockout.Factor = 1.5
			},
		},
		{
			name: "env over file",
			file: file,
			env: map[string]string{
				"T_LISTEN":            ":9101",
				"T_DATABASE_DSN":      "other",
				"T_LOCKOUT_BASE":      "1m30s",
				"T_LOCKOUT_THRESHOLD": "7",
				"T_LOCKOUT_FACTOR":    "3.25",
				"T_QUOTA":             "5000000000",
				"T_DEBUG":             "no",
				"T_DOMAINS":           "x.example, y.example,",
				"T_DATABASE_MAX_OPEN": "20",
				"T_IGNORED":           "never read",
				"OTHER_LISTEN":        "never read either",
			},
			want: func(c *testConfig) {
				c.Listen = ":9101"
				c.Domains = []string{"x.example", "y.example"}
				c.Database.Driver = "mysql"
				c.Database.DSN = "other"
				c.Database.MaxOpen = 20
				c.Lockout.Base = 90 * time.Second
				c.Lockout.Threshold = 7
				c.Lockout.Factor = 3.25
				c.Quota = 5000000000
			},
		},
		{
			name: "empty env sets empty string and empty list",
			env:  map[string]string{"T_LOG_LEVEL": "", "T_DOMAINS": ""},
			want: func(c *testConfig) {
				c.LogLevel = ""
				c.Domains = []string{}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = writeFile(t, tt.file)
			}
			got := defaults()
			if err := load(path, "T", got, env(tt.env)); err != nil {
				t.Fatalf("load() = %v, want nil", err)
			}
			want := defaults()
			tt.want(want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("load() gave\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestLoadRealEnvironment(t *testing.T) {
	t.Setenv("POSTCOVE_TEST_DATABASE_DSN", "from-env")
	c := defaults()
	if err := Load("", "POSTCOVE_TEST", c); err != nil {
		t.Fatalf("Load() = %v", err)
	}
	if c.Database.DSN != "from-env" {
		t.Errorf("database.dsn = %q, want from-env", c.Database.DSN)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		want []string // substrings of the error
		// invalid is set for errors from Validate, which have no file
		// context since values may come from the environment too.
		invalid bool
	}{
		{
			name: "unknown key",
			file: "[database]\ndnss = \"x\"\n",
			want: []string{`unknown key "database.dnss"`},
		},
		{
			name: "unknown table reported once",
			file: "listen = \":1\"\n[databse]\ndriver = \"x\"\ndsn = \"y\"\n[other]\na = 1\n",
			want: []string{`unknown keys "databse", "other"`},
		},
		{
			name: "type error names line and key",
			file: "listen = \":1\"\n\n[database]\nmax_open = \"ten\"\n",
			want: []string{"line 4", `"database.max_open"`, "incompatible types"},
		},
		{
			name: "bad duration in file",
			file: "[lockout]\nbase = \"x\"\n",
			want: []string{"line 2", `"lockout.base"`, `invalid duration`},
		},
		{
			name: "integer duration refused",
			file: "[lockout]\nbase = 5\n",
			want: []string{"lockout.base", "not an integer"},
		},
		{
			name: "syntax error",
			file: "listen = \n",
			want: []string{"line 1"},
		},
		{
			name: "bad env duration names variable and key",
			env:  map[string]string{"POSTCOVE_AUTH_LOCKOUT_BASE": "x"},
			want: []string{`POSTCOVE_AUTH_LOCKOUT_BASE (lockout.base): invalid duration "x"`},
		},
		{
			name: "every bad env value reported",
			env: map[string]string{
				"POSTCOVE_AUTH_DEBUG":             "maybe",
				"POSTCOVE_AUTH_LOCKOUT_THRESHOLD": "-1",
				"POSTCOVE_AUTH_QUOTA":             "lots",
			},
			want: []string{
				`POSTCOVE_AUTH_DEBUG (debug): invalid boolean "maybe"`,
				`POSTCOVE_AUTH_LOCKOUT_THRESHOLD (lockout.threshold): invalid non-negative integer "-1"`,
				`POSTCOVE_AUTH_QUOTA (quota): invalid integer "lots"`,
			},
		},
		{
			name: "out of range",
			env:  map[string]string{"POSTCOVE_AUTH_LOCKOUT_THRESHOLD": "4294967296"},
			want: []string{`"4294967296" is out of range for uint32`},
		},
		{
			name: "validate lists every bad key",
			file: "listen = \"nowhere\"\n[database]\ndriver = \"postgres\"\n",
			want: []string{
				`invalid configuration: database.driver: must be one of "sqlite", "mysql", got "postgres"; listen: invalid address "nowhere" (want host:port)`,
			},
			invalid: true,
		},
		{
			name: "validate names the variable a bad value came from",
			env:  map[string]string{"POSTCOVE_AUTH_LOCKOUT_BASE": "-1s"},
			want: []string{`lockout.base (from POSTCOVE_AUTH_LOCKOUT_BASE): must be positive, got -1s`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.file != "" {
				path = writeFile(t, tt.file)
			}
			err := load(path, "POSTCOVE_AUTH", defaults(), env(tt.env))
			if err == nil {
				t.Fatalf("load() = nil, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("load() = %q, want it to contain %q", err, w)
				}
			}
			if path != "" && !tt.invalid && !strings.HasPrefix(err.Error(), "config "+path+": ") {
				t.Errorf("load() = %q, want it to start with %q", err, "config "+path+": ")
			}
		})
	}
}

func TestLoadErrorTypes(t *testing.T) {
	err := load("", "P", defaults(), env(map[string]string{"P_LOCKOUT_BASE": "x"}))
	var envErr *EnvError
	if !errors.As(err, &envErr) || envErr.Var != "P_LOCKOUT_BASE" || envErr.Key != "lockout.base" {
		t.Errorf("load() = %v, want an *EnvError for P_LOCKOUT_BASE", err)
	}

	c := defaults()
	c.Database.Driver = "x"
	err = load("", "P", c, env(nil))
	var fe FieldError
	if !errors.As(err, &fe) || fe.Key != "database.driver" {
		t.Errorf("load() = %v, want a FieldError for database.driver", err)
	}

	path := writeFile(t, "nope = 1\n")
	err = load(path, "P", defaults(), env(nil))
	var uk *UnknownKeysError
	if !errors.As(err, &uk) || !reflect.DeepEqual(uk.Keys, []string{"nope"}) {
		t.Errorf("load() = %v, want an *UnknownKeysError for nope", err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.toml")
	err := Load(path, "P", defaults())
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Errorf("Load(%q) = %v, want a not-exist error naming the file", path, err)
	}
}

func TestLoadBadDestination(t *testing.T) {
	var c testConfig
	for _, dst := range []any{c, (*testConfig)(nil), new(int), nil} {
		if err := Load("", "P", dst); err == nil {
			t.Errorf("Load(%T) = nil, want an error", dst)
		}
	}
}

type embedded struct {
	Common struct {
		Name string `toml:"name"`
	} `toml:"common"`
}

type withEmbedded struct {
	embedded
	Level string `toml:"level"`
}

type outer struct {
	Inner *struct {
		Size int `toml:"size"`
	} `toml:"inner"`
	Shared withEmbedded `toml:"shared"`
}

func TestLoadNested(t *testing.T) {
	c := &outer{Inner: &struct {
		Size int `toml:"size"`
	}{Size: 1}}
	path := writeFile(t, "[shared]\nlevel = \"x\"\n[shared.common]\nname = \"file\"\n")
	vars := map[string]string{"P_INNER_SIZE": "2", "P_SHARED_COMMON_NAME": "env"}
	if err := load(path, "P", c, env(vars)); err != nil {
		t.Fatalf("load() = %v", err)
	}
	if c.Inner.Size != 2 || c.Shared.Common.Name != "env" || c.Shared.Level != "x" {
		t.Errorf("load() gave %+v %+v, want size 2, name env, level x", *c.Inner, c.Shared)
	}
}

func TestSetDefault(t *testing.T) {
	n, d, kept := 0, -time.Second, int64(7)
	SetDefault(&n, 5)
	SetDefault(&d, time.Minute)
	SetDefault(&kept, 9)
	if n != 5 || d != time.Minute || kept != 7 {
		t.Errorf("SetDefault gave %d, %v, %d; want 5, 1m0s, 7 (set values kept)", n, d, kept)
	}
}
