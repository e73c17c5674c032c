package workerbin

import (
	"os"
	"path/filepath"
	"testing"
)

// FindModuleRoot reads go.mod's module directive wherever it is, not only
// on the first line.
func TestFindModuleRootParsesGoMod(t *testing.T) {
	cases := map[string]string{
		"comment first": "// The worker and imagegen.\n\nmodule " + Module + "\n\ngo 1.26\n",
		"quoted":        "module \"" + Module + "\" // it\n",
		"blank first":   "\n\nmodule " + Module + "\n",
	}
	for name, gomod := range cases {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte(gomod), 0o644); err != nil {
				t.Fatal(err)
			}
			sub := filepath.Join(root, "cmd", "worker")
			if err := os.MkdirAll(sub, 0o755); err != nil {
				t.Fatal(err)
			}
			if got, err := FindModuleRoot(sub); err != nil || got != root {
				t.Errorf("FindModuleRoot = %q, %v; want %q", got, err, root)
			}
		})
	}
}

// Another module's go.mod, or one that does not parse, is passed by: the
// search goes on upwards and ends in the --worker-bin hint.
func TestFindModuleRootSkipsOtherModules(t *testing.T) {
	for _, gomod := range []string{"module example.com/other\n", "// " + Module + "\nmodule example.com/other\n", "module " + Module + "/sub\n", "not a go.mod\n"} {
		root := t.TempDir()
		if err := os.WriteFile(filepath.Join(root, "go.mod"), []byte(gomod), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := FindModuleRoot(root); err == nil {
			t.Errorf("go.mod %q: FindModuleRoot = %q, want an error", gomod, got)
		}
	}
}
