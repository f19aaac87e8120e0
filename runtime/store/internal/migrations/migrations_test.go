package migrations

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoad(t *testing.T) {
	ok := fstest.MapFS{
		"m/0002_leases.sql": {Data: []byte("B")},
		"m/0001_init.sql":   {Data: []byte("A")},
	}
	ms, err := Load(ok, "m")
	if err != nil || len(ms) != 2 || ms[0].Name != "init" || ms[1].SQL != "B" || ms[1].Version != 2 {
		t.Fatalf("Load: %+v %v", ms, err)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"contiguous": {"m/0001_init.sql": {}, "m/0003_x.sql": {}},
		"NNNN_name":  {"m/1_init.sql": {}},
	} {
		if _, err := Load(fsys, "m"); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
