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

// TestRotateEncryptionKeyNeedsOneCluster checks that the command names
// what it wants before it reaches for an admin cluster.
func TestRotateEncryptionKeyNeedsOneCluster(t *testing.T) {
	cmd := newRotateCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs([]string{"encryption-key", "--kubeconfig", "/nonexistent/admin.conf"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "exactly one cluster") {
		t.Fatalf("rotate encryption-key without a cluster: err = %v\n%s", err, out.String())
	}
}
