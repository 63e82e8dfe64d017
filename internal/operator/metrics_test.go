package operator

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestMetricsNeedAuthorizedToken starts the operator against a real API
// server and scrapes its metrics as Prometheus would: without a token 401,
// with a service account's token not allowed /metrics 403, with one bound
// to the installation's metrics reader role the metrics, all over https.
func TestMetricsNeedAuthorizedToken(t *testing.T) {
	a := testenv.SharedAPIServer(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(a.Config)

	const ns = "metrics-test"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The reader role exactly as the installation renders it.
	objs, err := install.Render(install.Options{Image: "kubinception.local/kubinception:test", Registry: "kubinception.local", ImagePullPolicy: corev1.PullNever})
	if err != nil {
		t.Fatal(err)
	}
	var role *rbacv1.ClusterRole
	for _, o := range objs {
		if o.GetKind() == "ClusterRole" && o.GetName() == install.MetricsReaderName {
			role = &rbacv1.ClusterRole{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, role); err != nil {
				t.Fatal(err)
			}
		}
	}
	if role == nil {
		t.Fatalf("the installation renders no ClusterRole %s", install.MetricsReaderName)
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token := func(sa string) string {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	reader, stranger := token("scraper"), token("stranger")
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "metrics-test-scraper"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: install.MetricsReaderName},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "scraper", Namespace: ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	o := DefaultOptions()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	o.MetricsAddr, o.ProbeAddr, o.LeaderElect = addr, "0", false
	o.Gateway.Namespace, o.Gateway.Image = ns, "kubinception.local/kubinception:test"
	mgr, cleanup, err := NewManager(a.Config, o)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() { cancel(); <-done }()

	// The certificate is self-signed by the operator: this checks who may
	// read, not the server's identity.
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // see above
	scrape := func(token string) (int, string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body, err := scrape(reader)
		if err == nil && code == http.StatusOK && strings.Contains(body, "controller_runtime_") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("scrape with the reader's token: %d, %v:\n%.300s", code, err, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, body, err := scrape(""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("anonymous scrape: %d, %v, want 401:\n%.300s", code, err, body)
	}
	if code, body, err := scrape(stranger); err != nil || code != http.StatusForbidden {
		t.Errorf("scrape with a token not bound to %s: %d, %v, want 403:\n%.300s", install.MetricsReaderName, code, err, body)
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/metrics"); err == nil {
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain http served the metrics")
		}
	}
}
