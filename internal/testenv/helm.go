package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"sigs.k8s.io/yaml"
)

// Helm returns the Helm binary: $HELM, bin/tools/helm of this repository
// (hack/deps builds it there), or helm on the PATH. Without one the test
// skips, or fails when binaries are required.
func Helm(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("HELM"); p != "" {
		return p
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		p := filepath.Join(filepath.Dir(file), "..", "..", "bin", "tools", "helm")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	missingTool(tb, "helm is not installed: run hack/deps, which builds it into bin/tools, or set HELM; this test renders the chart with the real helm")
	return ""
}

// WriteHelmValues writes chart values to a file and returns its path.
// Through a file, quantities stay strings, as `kubinception install`
// renders them. The file is not under tb.TempDir(): that name holds the
// test's, and helm splits -f on commas.
func WriteHelmValues(tb testing.TB, values map[string]any) string {
	tb.Helper()
	data, err := yaml.Marshal(values)
	if err != nil {
		tb.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "kubinception-chart-values-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "values.yaml")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}
