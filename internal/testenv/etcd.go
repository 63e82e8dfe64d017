package testenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"kubinception.dev/kubinception/internal/pki"
)

// Etcd is a real etcd process serving TLS on loopback and requiring client
// certificates, with the CA that signs its serving and client certificates.
// Authentication is off until the test enables it.
type Etcd struct {
	Endpoint string
	CA       *pki.KeyPair
	// Dir holds the data directory, certificates and log.
	Dir string
}

// FreePort returns a loopback TCP port nothing listens on.
func FreePort(tb testing.TB) int {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartEtcd starts etcd, waits until it answers and stops it when the test
// ends, printing its log if the test failed. extraArgs are appended to the
// command line (for example --auto-compaction-retention).
func StartEtcd(tb testing.TB, extraArgs ...string) *Etcd {
	tb.Helper()
	bin := FindBinaries(tb).Etcd
	dir := tb.TempDir()
	now := time.Now()
	ca, err := pki.NewCA("test-datastore-ca", now)
	if err != nil {
		tb.Fatal(err)
	}
	server, err := ca.Issue(pki.Spec{CommonName: "etcd", IPs: []net.IP{net.ParseIP("127.0.0.1")}, Server: true, Client: true}, now)
	if err != nil {
		tb.Fatal(err)
	}
	d := pki.Dir{Path: dir}
	if err := d.Save("ca", ca); err != nil {
		tb.Fatal(err)
	}
	if err := d.Save("server", server); err != nil {
		tb.Fatal(err)
	}
	// A port FreePort found free may be taken (by a client connection's
	// local port, on a busy machine) before etcd binds it: etcd then exits
	// at once, and is started again on other ports.
	for attempt := 1; ; attempt++ {
		e, proc := startEtcdOn(tb, bin, dir, ca, extraArgs)
		root := e.Client(tb, "root")
		err := proc.WaitAnswering(100*time.Millisecond, 60*time.Second, func(ctx context.Context) error {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := root.Status(sctx, e.Endpoint)
			return err
		})
		if err == nil {
			return e
		}
		log, _ := os.ReadFile(proc.LogPath)
		if attempt < 3 && bytes.Contains(log, []byte("address already in use")) {
			tb.Logf("etcd could not listen (attempt %d), starting it on other ports: %s", attempt, bytes.TrimSpace(log))
			continue
		}
		tb.Fatalf("etcd did not answer within 60s: %v\n%s", err, log)
	}
}

// startEtcdOn starts etcd with free ports and a data directory of its own
// under dir.
func startEtcdOn(tb testing.TB, bin, dir string, ca *pki.KeyPair, extraArgs []string) (*Etcd, *Process) {
	tb.Helper()
	client, peer := FreePort(tb), FreePort(tb)
	e := &Etcd{Endpoint: fmt.Sprintf("https://127.0.0.1:%d", client), CA: ca, Dir: dir}
	args := append([]string{
		"--name=test", "--data-dir=" + filepath.Join(dir, fmt.Sprintf("data-%d", client)),
		"--listen-client-urls=" + e.Endpoint, "--advertise-client-urls=" + e.Endpoint,
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", peer),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", peer),
		fmt.Sprintf("--initial-cluster=test=http://127.0.0.1:%d", peer),
		"--client-cert-auth", "--trusted-ca-file=" + filepath.Join(dir, "ca.crt"),
		"--cert-file=" + filepath.Join(dir, "server.crt"), "--key-file=" + filepath.Join(dir, "server.key"),
		"--log-level=error",
	}, extraArgs...)
	logPath := filepath.Join(dir, fmt.Sprintf("etcd-%d.log", client))
	return e, StartProcess(tb, exec.Command(bin, args...), "etcd", logPath)
}

// ClientCert issues a client certificate whose common name is user (the
// etcd user it authenticates as once authentication is on).
func (e *Etcd) ClientCert(tb testing.TB, user string) *pki.KeyPair {
	tb.Helper()
	kp, err := e.CA.Issue(pki.Spec{CommonName: user, Client: true}, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return kp
}

// Client connects as user with a certificate issued for it; it is closed
// when the test ends.
func (e *Etcd) Client(tb testing.TB, user string) *clientv3.Client {
	tb.Helper()
	kp := e.ClientCert(tb, user)
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(e.CA.Cert)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{e.Endpoint},
		DialTimeout: 5 * time.Second,
		TLS:         &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Logger:      zap.NewNop(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cli.Close() })
	return cli
}
