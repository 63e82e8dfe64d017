package kubeconfig

import (
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"kubinception.dev/kubinception/internal/pki"
)

func TestRenderRoundTrips(t *testing.T) {
	ca, err := pki.NewCA("ca", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	admin, err := ca.Issue(pki.Spec{CommonName: "admin", Client: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	data, err := Render(Config{ClusterName: "demo", Server: "https://10.0.0.1:6443", CAPEM: ca.CertPEM, UserName: "admin", CertPEM: admin.CertPEM, KeyPEM: admin.KeyPEM})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		t.Fatalf("rendered kubeconfig does not load: %v", err)
	}
	if rc.Host != "https://10.0.0.1:6443" || string(rc.CAData) != string(ca.CertPEM) || string(rc.CertData) != string(admin.CertPEM) {
		t.Fatalf("rendered kubeconfig lost data: host=%s", rc.Host)
	}
	if _, err := Render(Config{ClusterName: "demo", Server: "https://x"}); err == nil {
		t.Fatal("a kubeconfig without credentials was rendered")
	}
}
