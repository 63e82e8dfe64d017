package join

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"kubinception.dev/kubinception/internal/pki"
)

func TestCAHashPinsThePublicKey(t *testing.T) {
	ca, err := pki.NewCA("tenant", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got, err := CAHash(ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(ca.Cert.RawSubjectPublicKeyInfo)
	if got != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("CAHash = %s", got)
	}
	if _, err := CAHash([]byte("junk")); err == nil {
		t.Fatal("junk hashed")
	}
}

func TestCreateToken(t *testing.T) {
	cs := fake.NewSimpleClientset()
	now := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	token, err := CreateToken(context.Background(), cs, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`).MatchString(token) {
		t.Fatalf("token %q is not of kubeadm's form", token)
	}
	id := strings.Split(token, ".")[0]
	s, err := cs.CoreV1().Secrets("kube-system").Get(context.Background(), "bootstrap-token-"+id, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Type != corev1.SecretTypeBootstrapToken || s.StringData["expiration"] != "2026-11-21T13:00:00Z" ||
		s.StringData["auth-extra-groups"] != "system:bootstrappers:kubeadm:default-node-token" {
		t.Fatalf("token secret %+v", s)
	}
	cmd := Command{Endpoint: "10.199.0.1:31000", Token: token, CAHash: "sha256:ab"}
	if cmd.String() != "kubeadm join 10.199.0.1:31000 --token "+token+" --discovery-token-ca-cert-hash sha256:ab" {
		t.Fatalf("command %q", cmd.String())
	}
}
