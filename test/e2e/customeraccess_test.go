package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

// TestCustomerAccess issues customer kubeconfigs with the CLI and uses
// them with the upstream kubectl: they are cluster-admin through a group,
// not system:masters; one command revokes every one issued so far, the
// stored one included, after which they are refused (Forbidden) while a
// freshly issued one works and the operator keeps reconciling the tenant.
// It also shows the API server refusing a downgrade and a skipped minor
// of spec.version.
func TestCustomerAccess(t *testing.T) {
	requireE2E(t)
	upAndInstall(t)
	const name = "access"
	t.Cleanup(func() { removeTenants(t, name) })
	createTenants(t, name)
	waitTenantReady(t, name)

	first := tenantKubeconfig(t, name)
	who := mustTkube(t, first, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}")
	if !strings.HasPrefix(who, "kubinception:customer:g1:") || !strings.Contains(who, "kubinception:customer-admins:g1") || strings.Contains(who, "system:masters") {
		t.Fatalf("customer kubeconfig is %q: want user kubinception:customer:g1:..., group kubinception:customer-admins:g1, not system:masters", who)
	}
	mustTkube(t, first, "create", "namespace", "made-by-customer")
	mustTkube(t, first, "-n", "kube-system", "get", "secrets")
	stored := filepath.Join(t.TempDir(), "stored.kubeconfig")
	writeStored(t, stored, name)
	mustTkube(t, stored, "get", "namespaces")

	// Lifetimes: --ttl sets NotAfter; out of bounds is refused naming
	// the flag.
	r := run(t, "kubeconfig", name, "--ttl", "2m", "--kubeconfig", adminKubeconfig())
	if r.err != nil {
		t.Fatalf("kubeconfig --ttl 2m:\n%s", r)
	}
	if left := time.Until(notAfter(t, []byte(r.stdout))); left > 2*time.Minute || left < time.Minute {
		t.Errorf("kubeconfig --ttl 2m expires in %s", left)
	}
	if r := run(t, "kubeconfig", name, "--ttl", "720h", "--kubeconfig", adminKubeconfig()); r.err == nil || !strings.Contains(r.stderr, "--ttl") {
		t.Errorf("kubeconfig --ttl 720h was not refused naming the flag:\n%s", r)
	}

	// Revoke: every kubeconfig issued so far is refused, immediately.
	start := time.Now()
	if r := run(t, "revoke", "kubeconfigs", name, "--kubeconfig", adminKubeconfig()); r.err != nil {
		t.Fatalf("revoke kubeconfigs:\n%s", r)
	} else {
		t.Logf("revoke took %s:\n%s", time.Since(start).Round(time.Millisecond), r.stdout)
	}
	for what, kc := range map[string]string{"issued": first, "stored before the revocation": stored} {
		out, err := tkube(t, kc, "get", "namespaces")
		if err == nil || !strings.Contains(out, "Forbidden") {
			t.Errorf("revoked %s kubeconfig: kubectl get namespaces answered %v: %s; want Forbidden", what, err, out)
		}
	}
	second := tenantKubeconfig(t, name)
	if who := mustTkube(t, second, "auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}"); !strings.Contains(who, "kubinception:customer-admins:g2") {
		t.Errorf("kubeconfig after the revocation is in %s, want kubinception:customer-admins:g2", who)
	}
	if !slices.Contains(names(t, second, "get", "namespaces"), "namespace/made-by-customer") {
		t.Errorf("the customer's namespace is not visible with the new kubeconfig")
	}
	writeStored(t, stored, name)
	mustTkube(t, stored, "get", "namespaces")
	// The operator reaches the tenant with its own credential: the binding
	// that lets generation 2 in was written into the tenant by the
	// operator after the revocation (the new kubeconfig works above), and
	// the tenant stays Ready.
	waitTenantReady(t, name)

	// Version transitions the API server refuses, naming the field and
	// the rule.
	for version, rule := range map[string]string{"v1.34.2": "spec.version: downgrades are not supported (v1.35.4 → v1.34.2)", "v1.37.0": "spec.version: minor versions cannot be skipped (v1.35.4 → v1.37.0)"} {
		out, err := kube(t, "-n", "default", "patch", "tenantcluster", name, "--type", "merge", "-p", `{"spec":{"version":"`+version+`"}}`)
		if err == nil || !strings.Contains(out, rule) {
			t.Errorf("spec.version → %s answered %v: %s; want %q", version, err, out, rule)
		}
	}
}

// notAfter is the end of the client certificate of a kubeconfig.
func notAfter(t *testing.T, kubeconfig []byte) time.Time {
	t.Helper()
	rc, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(rc.CertData)
	if b == nil {
		t.Fatal("no certificate in the kubeconfig")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert.NotAfter
}

// writeStored writes the kubeconfig of the tenant's Secret
// NAME-admin-kubeconfig to path.
func writeStored(t *testing.T, path, tenant string) {
	t.Helper()
	kc := mustKube(t, "-n", "default", "get", "secret", tenant+"-admin-kubeconfig", "-o", "go-template={{.data.kubeconfig | base64decode}}")
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
}
