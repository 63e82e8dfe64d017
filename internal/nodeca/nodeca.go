// Package nodeca moves a joined node's kubelet to a tenant's new CA during
// a CA rotation, on the node, without re-joining: it writes the tenant's
// CA bundle where the kubelet reads its trust (kubelet.conf and the
// client CA file the kubelet checks the API server's client certificate
// against), obtains a client and a serving certificate of the new CA
// through CertificateSigningRequests made with the kubelet's own
// credentials (the controller manager approves the first, the operator
// the second, as for any renewal), and restarts the kubelet alone: pods
// keep running.
package nodeca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Paths are where the node keeps the kubelet's files, as this process
// sees them (a local worker's live under its own directory).
type Paths struct {
	// KubeletConf is /etc/kubernetes/kubelet.conf.
	KubeletConf string
	// CAFile is /etc/kubernetes/pki/ca.crt (the kubelet's
	// authentication.x509.clientCAFile).
	CAFile string
	// PKIDir is /var/lib/kubelet/pki.
	PKIDir string
}

// resolve follows a symbolic link in PKIDir the way the kubelet sees it:
// the kubelet links kubelet-*-current.pem to an absolute path under
// /var/lib/kubelet/pki, which, seen from outside the node's mount
// namespace (a local worker's files on the host), is the file of the
// same name in PKIDir, never the host's own.
func (p Paths) resolve(path string) string {
	target, err := os.Readlink(path)
	if err != nil {
		return path
	}
	if filepath.IsAbs(target) {
		return filepath.Join(p.PKIDir, filepath.Base(target))
	}
	return filepath.Join(filepath.Dir(path), target)
}

// StandardPaths are kubeadm's paths on a machine.
var StandardPaths = Paths{KubeletConf: "/etc/kubernetes/kubelet.conf", CAFile: "/etc/kubernetes/pki/ca.crt", PKIDir: "/var/lib/kubelet/pki"}

// Options is what moving one node needs.
type Options struct {
	Node  string
	Paths Paths
	// Bundle is the tenant's CA bundle, the current CA first: the
	// certificate-authority-data of kube-public/cluster-info.
	Bundle []byte
	// Restart restarts the kubelet alone.
	Restart func(ctx context.Context) error
	// Nudge, when set, asks the operator to approve a serving
	// certificate request now rather than at its next pass.
	Nudge func(ctx context.Context)
	Out   io.Writer
	// Timeout bounds each wait for a certificate.
	Timeout time.Duration
}

// Move moves the node to the CA that heads Bundle. It is idempotent: a
// certificate already of that CA is kept, and the bundle written again.
func Move(ctx context.Context, o Options) error {
	if o.Timeout == 0 {
		o.Timeout = 2 * time.Minute
	}
	cas, err := ParseCerts(o.Bundle)
	if err != nil {
		return fmt.Errorf("CA bundle: %w", err)
	}
	current := cas[0]
	cfg, err := clientcmd.LoadFromFile(o.Paths.KubeletConf)
	if err != nil {
		return fmt.Errorf("read %s: %w", o.Paths.KubeletConf, err)
	}
	ctxName := cfg.CurrentContext
	kctx := cfg.Contexts[ctxName]
	if kctx == nil || cfg.Clusters[kctx.Cluster] == nil || cfg.AuthInfos[kctx.AuthInfo] == nil {
		return fmt.Errorf("%s: no current context with a cluster and a user", o.Paths.KubeletConf)
	}
	cluster, user := cfg.Clusters[kctx.Cluster], cfg.AuthInfos[kctx.AuthInfo]
	// The kubelet's client certificate, wherever this process sees it.
	clientPEM := filepath.Join(o.Paths.PKIDir, "kubelet-client-current.pem")
	if user.ClientCertificate != "" && filepath.Base(user.ClientCertificate) != "kubelet-client-current.pem" {
		return fmt.Errorf("%s: the kubelet's client certificate is %s, not the rotating kubelet-client-current.pem", o.Paths.KubeletConf, user.ClientCertificate)
	}
	clientPEM = o.Paths.resolve(clientPEM)
	rc := &rest.Config{Host: cluster.Server, Timeout: 15 * time.Second,
		TLSClientConfig: rest.TLSClientConfig{CAData: o.Bundle, CertFile: clientPEM, KeyFile: clientPEM}}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	step := func(name string, fn func() error) error {
		start := time.Now()
		if err := fn(); err != nil {
			fmt.Fprintf(o.out(), "✗ %s: %v\n", name, err)
			return fmt.Errorf("%s: %w", name, err)
		}
		fmt.Fprintf(o.out(), "✓ %s (%s)\n", name, time.Since(start).Round(10*time.Millisecond))
		return nil
	}
	fmt.Fprintf(o.out(), "moving node %s to CA %q (%d CA(s) trusted)\n", o.Node, current.Subject.CommonName, len(cas))
	if err := step("client certificate of the new CA", func() error {
		return o.renew(ctx, cs, current, "kubelet-client", certv1.KubeAPIServerClientKubeletSignerName,
			[]certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageClientAuth}, nil)
	}); err != nil {
		return err
	}
	if err := step("serving certificate of the new CA", func() error {
		old, err := readCert(o.Paths.resolve(filepath.Join(o.Paths.PKIDir, "kubelet-server-current.pem")))
		if err != nil {
			return fmt.Errorf("the kubelet has no serving certificate to renew (serverTLSBootstrap): %w", err)
		}
		return o.renew(ctx, cs, current, "kubelet-server", certv1.KubeletServingSignerName,
			[]certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth}, old)
	}); err != nil {
		return err
	}
	if err := step("trust the CA bundle", func() error {
		cluster.CertificateAuthorityData, cluster.CertificateAuthority = o.Bundle, ""
		if err := clientcmd.WriteToFile(*cfg, o.Paths.KubeletConf); err != nil {
			return err
		}
		return writeAtomic(o.Paths.CAFile, o.Bundle, 0o644)
	}); err != nil {
		return err
	}
	return step("kubelet restarted", func() error { return o.Restart(ctx) })
}

func (o Options) out() io.Writer {
	if o.Out == nil {
		return io.Discard
	}
	return o.Out
}

// renew obtains a certificate of ca for the kubelet's <prefix>-current.pem
// through a request to signer, unless the current one is already of ca.
// A serving certificate keeps the names of the one it replaces (the
// operator approves only the node's own addresses).
func (o Options) renew(ctx context.Context, cs kubernetes.Interface, ca *x509.Certificate, prefix, signer string, usages []certv1.KeyUsage, like *x509.Certificate) error {
	current := filepath.Join(o.Paths.PKIDir, prefix+"-current.pem")
	if cert, err := readCert(o.Paths.resolve(current)); err == nil && cert.CheckSignatureFrom(ca) == nil {
		fmt.Fprintf(o.out(), "  %s already of the new CA\n", prefix)
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + o.Node, Organization: []string{"system:nodes"}}}
	if like != nil {
		tmpl.DNSNames, tmpl.IPAddresses = like.DNSNames, like.IPAddresses
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return err
	}
	csr := &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "node-ca-rotation-" + o.Node + "-"},
		Spec: certv1.CertificateSigningRequestSpec{
			Request:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName: signer,
			Usages:     usages,
		},
	}
	created, err := cs.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("request a certificate as node %s: %w", o.Node, err)
	}
	if o.Nudge != nil && signer == certv1.KubeletServingSignerName {
		o.Nudge(ctx)
	}
	var issued []byte
	last := "pending"
	err = wait.PollUntilContextTimeout(ctx, 300*time.Millisecond, o.Timeout, true, func(ctx context.Context) (bool, error) {
		got, err := cs.CertificatesV1().CertificateSigningRequests().Get(ctx, created.Name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		for _, c := range got.Status.Conditions {
			if c.Type == certv1.CertificateDenied || c.Type == certv1.CertificateFailed {
				return false, fmt.Errorf("request %s %s: %s %s", got.Name, c.Type, c.Reason, c.Message)
			}
			if c.Type == certv1.CertificateApproved {
				last = "approved, waiting for the signer"
			}
		}
		issued = got.Status.Certificate
		return len(issued) > 0, nil
	})
	if err != nil {
		return fmt.Errorf("certificate request %s (%s) not issued within %s (last: %s): %w", created.Name, signer, o.Timeout, last, err)
	}
	certs, err := ParseCerts(issued)
	if err != nil {
		return fmt.Errorf("issued certificate: %w", err)
	}
	if certs[0].CheckSignatureFrom(ca) != nil {
		return fmt.Errorf("request %s was signed by %q, not by the new CA %q: is the rotation Prepared (the controller manager signs with the new CA only then)?", created.Name, certs[0].Issuer.CommonName, ca.Subject.CommonName)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	// The kubelet's own layout: a dated file, and <prefix>-current.pem
	// a symbolic link to it (relative, so it resolves in the node's
	// mount namespace and outside it).
	name := fmt.Sprintf("%s-%s.pem", prefix, time.Now().UTC().Format("2006-01-02-15-04-05"))
	content := append(bytes.TrimSpace(issued), '\n')
	content = append(content, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})...)
	if err := writeAtomic(filepath.Join(o.Paths.PKIDir, name), content, 0o600); err != nil {
		return err
	}
	tmp := current + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(name, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, current)
}

// ParseCerts parses every certificate of a PEM bundle; it fails on one
// that holds none.
func ParseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	certs, err := ParseCerts(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return certs[0], nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Bundle reads the tenant's CA bundle from kube-public/cluster-info.
func Bundle(ctx context.Context, cs kubernetes.Interface) ([]byte, error) {
	cm, err := cs.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read kube-public/cluster-info: %w", err)
	}
	cfg, err := clientcmd.Load([]byte(cm.Data["kubeconfig"]))
	if err != nil {
		return nil, fmt.Errorf("kube-public/cluster-info: %w", err)
	}
	for _, c := range cfg.Clusters {
		if len(c.CertificateAuthorityData) > 0 {
			return c.CertificateAuthorityData, nil
		}
	}
	return nil, errors.New("kube-public/cluster-info holds no CA")
}

// AnonymousClient reaches the API server named in the node's kubelet.conf
// without credentials, trusting what the node trusts now: enough to read
// cluster-info on a machine that holds no other credential.
func AnonymousClient(kubeletConf string) (kubernetes.Interface, error) {
	cfg, err := clientcmd.LoadFromFile(kubeletConf)
	if err != nil {
		return nil, err
	}
	kctx := cfg.Contexts[cfg.CurrentContext]
	if kctx == nil || cfg.Clusters[kctx.Cluster] == nil {
		return nil, fmt.Errorf("%s: no current context", kubeletConf)
	}
	c := cfg.Clusters[kctx.Cluster]
	return kubernetes.NewForConfig(&rest.Config{Host: c.Server, Timeout: 15 * time.Second,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.CertificateAuthorityData, CAFile: c.CertificateAuthority}})
}
