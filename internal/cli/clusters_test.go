package cli

import (
	"bytes"
	"strings"
	"testing"
)

// TestCreateClusterRefusesUnsupportedVersion checks that the CLI refuses
// a version before it reaches for an admin cluster, naming the flag.
func TestCreateClusterRefusesUnsupportedVersion(t *testing.T) {
	cmd := newCreateCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"cluster", "x", "--version", "v1.99.0", "--kubeconfig", "/nonexistent/admin.conf"})
	err := cmd.Execute()
	if err == nil || !strings.Contains(err.Error(), "--version") || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("create cluster --version v1.99.0: err = %v, want a refusal naming --version\n%s", err, out.String())
	}
}
