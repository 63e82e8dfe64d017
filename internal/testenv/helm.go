package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
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
