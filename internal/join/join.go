package join

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

// DefaultTTL is how long a token stays valid, as kubeadm's default.
const DefaultTTL = 24 * time.Hour

// Command is a join command for one tenant.
type Command struct {
	// Endpoint is host:port of the tenant's API server.
	Endpoint string
	Token    string
	CAHash   string
}

// String is the command as kubeadm prints it.
func (c Command) String() string {
	return fmt.Sprintf("kubeadm join %s --token %s --discovery-token-ca-cert-hash %s", c.Endpoint, c.Token, c.CAHash)
}

// Args are the arguments after "kubeadm".
func (c Command) Args() []string {
	return []string{"join", c.Endpoint, "--token", c.Token, "--discovery-token-ca-cert-hash", c.CAHash}
}

// CAHash is kubeadm's pin of a CA: sha256 of its public key info.
func CAHash(caPEM []byte) (string, error) {
	block, _ := pem.Decode(caPEM)
	if block == nil {
		return "", errors.New("CA is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

const tokenChars = "0123456789abcdefghijklmnopqrstuvwxyz"

func randomString(n int) (string, error) {
	var b strings.Builder
	for i := 0; i < n; i++ {
		k, err := rand.Int(rand.Reader, big.NewInt(int64(len(tokenChars))))
		if err != nil {
			return "", err
		}
		b.WriteByte(tokenChars[k.Int64()])
	}
	return b.String(), nil
}

// CreateToken stores a new bootstrap token in the tenant, valid for ttl
// from now, usable for authentication (kubeadm join) and for signing
// cluster-info (discovery).
func CreateToken(ctx context.Context, cs kubernetes.Interface, ttl time.Duration, now time.Time) (string, error) {
	id, err := randomString(6)
	if err != nil {
		return "", err
	}
	secret, err := randomString(16)
	if err != nil {
		return "", err
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-" + id, Namespace: "kube-system"},
		Type:       corev1.SecretTypeBootstrapToken,
		StringData: map[string]string{
			"description":                    "created by kubinception join-command",
			"token-id":                       id,
			"token-secret":                   secret,
			"expiration":                     now.Add(ttl).UTC().Format(time.RFC3339),
			"usage-bootstrap-authentication": "true",
			"usage-bootstrap-signing":        "true",
			"auth-extra-groups":              "system:bootstrappers:kubeadm:default-node-token",
		},
	}
	if _, err := cs.CoreV1().Secrets("kube-system").Create(ctx, s, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("create bootstrap token: %w", err)
	}
	return id + "." + secret, nil
}

// Tenant is a Ready tenant's admin access.
type Tenant struct {
	Endpoint   string
	CAPEM      []byte
	Kubeconfig []byte
	Clientset  kubernetes.Interface
}

// ForTenant reads a Ready tenant's endpoint and admin kubeconfig from the
// admin cluster.
func ForTenant(ctx context.Context, admin client.Client, namespace, name string) (*Tenant, error) {
	tc := &kv1.TenantCluster{}
	if err := admin.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, tc); err != nil {
		return nil, fmt.Errorf("tenant cluster %s/%s: %w", namespace, name, err)
	}
	if !meta.IsStatusConditionTrue(tc.Status.Conditions, kv1.ConditionReady) {
		return nil, fmt.Errorf("tenant cluster %s/%s is not Ready yet (kubinception get clusters shows why)", namespace, name)
	}
	secret := &corev1.Secret{}
	if err := admin.Get(ctx, types.NamespacedName{Namespace: namespace, Name: tc.Status.AdminKubeconfigSecret}, secret); err != nil {
		return nil, err
	}
	kc := secret.Data["kubeconfig"]
	rc, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		return nil, err
	}
	rc.Timeout = 20 * time.Second
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &Tenant{Endpoint: tc.Status.Endpoint, CAPEM: rc.CAData, Kubeconfig: kc, Clientset: cs}, nil
}

// NewCommand creates a token in the tenant and returns its join command.
func (t *Tenant) NewCommand(ctx context.Context, ttl time.Duration, now time.Time) (Command, error) {
	hash, err := CAHash(t.CAPEM)
	if err != nil {
		return Command{}, err
	}
	token, err := CreateToken(ctx, t.Clientset, ttl, now)
	if err != nil {
		return Command{}, err
	}
	return Command{Endpoint: strings.TrimPrefix(t.Endpoint, "https://"), Token: token, CAHash: hash}, nil
}
