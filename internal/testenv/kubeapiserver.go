package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"kubinception.dev/kubinception/internal/pki"
)

// KubeAPIServer is a real kube-apiserver process that stores in an etcd
// endpoint the test chooses (for example a tenant's view through the etcd
// gateway), as a tenant's API server does. Unlike StartAPIServer it starts
// no etcd of its own and installs nothing.
type KubeAPIServer struct {
	// Config reaches the API server as a member of system:masters.
	Config *rest.Config
	// Client is a clientset on Config.
	Client *kubernetes.Clientset
	// Dir holds its certificates and log.
	Dir string
}

// KubeAPIServerOptions say where a KubeAPIServer stores.
type KubeAPIServerOptions struct {
	// EtcdEndpoint is the --etcd-servers URL (https).
	EtcdEndpoint string
	// EtcdCAFile verifies the etcd endpoint's serving certificate;
	// EtcdCertFile and EtcdKeyFile are the API server's client
	// certificate on it.
	EtcdCAFile, EtcdCertFile, EtcdKeyFile string
	// Args are more flags, appended last (so they override).
	Args []string
}

// kubeAPIServerStartTimeout is generous: the suite shares two cores.
const kubeAPIServerStartTimeout = 3 * time.Minute

// StartKubeAPIServer starts kube-apiserver, waits until /readyz answers
// and stops it when the test ends, printing the end of its log if the
// test failed.
func StartKubeAPIServer(tb testing.TB, o KubeAPIServerOptions) *KubeAPIServer {
	tb.Helper()
	bin := FindBinaries(tb).KubeAPIServer
	dir := tb.TempDir()
	now := time.Now()
	ca, err := pki.NewCA("test-kube-ca", now)
	if err != nil {
		tb.Fatal(err)
	}
	serving, err := ca.Issue(pki.Spec{CommonName: "kube-apiserver", IPs: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"}, Server: true}, now)
	if err != nil {
		tb.Fatal(err)
	}
	admin, err := ca.Issue(pki.Spec{CommonName: "admin", Organization: []string{"system:masters"}, Client: true}, now)
	if err != nil {
		tb.Fatal(err)
	}
	serviceAccount, err := pki.NewCA("service-accounts", now)
	if err != nil {
		tb.Fatal(err)
	}
	d := pki.Dir{Path: dir}
	for name, kp := range map[string]*pki.KeyPair{"ca": ca, "serving": serving, "sa": serviceAccount} {
		if err := d.Save(name, kp); err != nil {
			tb.Fatal(err)
		}
	}
	port := FreePort(tb)
	args := append([]string{
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port),
		"--tls-cert-file=" + filepath.Join(dir, "serving.crt"), "--tls-private-key-file=" + filepath.Join(dir, "serving.key"),
		"--client-ca-file=" + filepath.Join(dir, "ca.crt"), "--authorization-mode=RBAC",
		"--service-account-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range=10.96.0.0/24",
		"--etcd-servers=" + o.EtcdEndpoint, "--etcd-cafile=" + o.EtcdCAFile,
		"--etcd-certfile=" + o.EtcdCertFile, "--etcd-keyfile=" + o.EtcdKeyFile,
		"--v=1",
	}, o.Args...)
	proc := StartProcess(tb, exec.Command(bin, args...), "kube-apiserver", filepath.Join(dir, "kube-apiserver.log"))
	cfg := &rest.Config{
		Host: fmt.Sprintf("https://127.0.0.1:%d", port),
		TLSClientConfig: rest.TLSClientConfig{
			CAData: ca.CertPEM, CertData: admin.CertPEM, KeyData: admin.KeyPEM,
		},
		QPS: 200, Burst: 400,
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	err = proc.WaitAnswering(500*time.Millisecond, kubeAPIServerStartTimeout, func(ctx context.Context) error {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		return err
	})
	if err != nil {
		tb.Fatalf("kube-apiserver did not become ready within %v: %v\n%s", kubeAPIServerStartTimeout, err, fileTail(proc.LogPath, 16<<10))
	}
	return &KubeAPIServer{Config: cfg, Client: cs, Dir: dir}
}

// fileTail returns the last n bytes of a file.
func fileTail(path string, n int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if int64(len(b)) > n {
		b = b[int64(len(b))-n:]
	}
	return string(b)
}
