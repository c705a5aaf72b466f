package sqlstore

import (
	"os"
	"slices"
	"testing"
	"testing/fstest"
)

func TestSplitStatements(t *testing.T) {
	for _, tt := range []struct {
		src  string
		want []string
	}{
		{"", nil},
		{"-- only a comment;\n", nil},
		{"CREATE TABLE a (x INT);\n", []string{"CREATE TABLE a (x INT)"}},
		{
			"-- two\nCREATE TABLE a (\n\tx INT\n);\n\nCREATE INDEX i ON a (x);\n",
			[]string{"CREATE TABLE a (\n\tx INT\n)", "CREATE INDEX i ON a (x)"},
		},
		{"SELECT 1;\nSELECT 2", []string{"SELECT 1", "SELECT 2"}},
		{"SELECT 1;\r\nSELECT 2;\r\n", []string{"SELECT 1", "SELECT 2"}},
	} {
		if got := splitStatements(tt.src); !slices.Equal(got, tt.want) {
			t.Errorf("splitStatements(%q) = %q, want %q", tt.src, got, tt.want)
		}
	}
}

func TestLoadMigrations(t *testing.T) {
	file := &fstest.MapFile{Data: []byte("SELECT 1;\n")}
	for _, tt := range []struct {
		files   []string
		want    []int
		wantErr bool
	}{
		{[]string{"0002_b.sql", "0010_c.sql", "0001_a.sql"}, []int{1, 2, 10}, false},
		{[]string{"0001_a.sql", "notes.txt"}, []int{1}, false},
		{nil, nil, true},
		{[]string{"0001_a.sql", "1_b.sql"}, nil, true}, // one version twice
		{[]string{"init.sql"}, nil, true},
		{[]string{"0000_zero.sql"}, nil, true},
		{[]string{"x1_a.sql"}, nil, true},
	} {
		fsys := fstest.MapFS{}
		for _, name := range tt.files {
			fsys["migrations/"+name] = file
		}
		ms, err := loadMigrations(fsys)
		var got []int
		for _, m := range ms {
			got = append(got, m.version)
		}
		if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
			t.Errorf("loadMigrations(%q) = %v, %v, want %v, error %v", tt.files, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestDialectsInStep checks that the dialects have the same migrations: one
// schema, written twice.
func TestDialectsInStep(t *testing.T) {
	versions := func(dir string) []int {
		t.Helper()
		ms, err := loadMigrations(os.DirFS(dir))
		if err != nil {
			t.Fatalf("loadMigrations(%s) = %v", dir, err)
		}
		var vs []int
		for _, m := range ms {
			vs = append(vs, m.version)
		}
		return vs
	}
	sqlite, mysql := versions("../sqlite"), versions("../mysql")
	if !slices.Equal(sqlite, mysql) {
		t.Errorf("migration versions: sqlite %v, mysql %v, want the same", sqlite, mysql)
	}
}
