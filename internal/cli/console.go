package cli

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"kubinception.dev/kubinception/internal/console"
	"kubinception.dev/kubinception/internal/pki"
)

// consoleOptions are the flags of `kubinception console`.
type consoleOptions struct {
	kubeconfig string
	listen     string
	certFile   string
	keyFile    string
	clientCA   string
	sessionTTL time.Duration
}

func newConsoleCommand() *cobra.Command {
	var o consoleOptions
	cmd := &cobra.Command{
		Use:   "console",
		Short: "Serve the web console: tenant clusters and datastores, acting as each signed-in user",
		Long: `Serve the web console over HTTPS. Users sign in with a bearer token the admin
cluster accepts (checked with a TokenReview) or a client certificate of the
admin cluster's client CA (--client-ca-file); the console then makes every
request as them through impersonation, so the admin cluster's RBAC decides
what each user sees and does. The console's own credential needs only to
impersonate and to create TokenReviews (kubinception install binds exactly
that to its service account). Pages, the API proxy and the endpoints are
described in docs/console.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runConsole(cmd.Context(), o, cmd)
		},
	}
	cmd.Flags().StringVar(&o.kubeconfig, "kubeconfig", "", "the console's own admin cluster credential (default: $KUBECONFIG, else the pod's service account, else the local admin cluster's)")
	cmd.Flags().StringVar(&o.listen, "listen", "127.0.0.1:8443", "address to serve HTTPS on")
	cmd.Flags().StringVar(&o.certFile, "tls-cert-file", "", "serving certificate (PEM); with --tls-private-key-file. Default: a self-signed one made at start, its fingerprint printed")
	cmd.Flags().StringVar(&o.keyFile, "tls-private-key-file", "", "key of --tls-cert-file (PEM)")
	cmd.Flags().StringVar(&o.clientCA, "client-ca-file", "", "the admin cluster's client CA (PEM): users may sign in with a client certificate it signed")
	cmd.Flags().DurationVar(&o.sessionTTL, "session-ttl", console.DefaultSessionTTL, "how long a sign-in lasts")
	return cmd
}

func runConsole(ctx context.Context, o consoleOptions, cmd *cobra.Command) error {
	if o.sessionTTL < time.Minute || o.sessionTTL > 7*24*time.Hour {
		return fmt.Errorf("--session-ttl %s: give between 1m and 168h", o.sessionTTL)
	}
	if (o.certFile == "") != (o.keyFile == "") {
		return errors.New("--tls-cert-file and --tls-private-key-file go together: give both, or neither for a self-signed certificate")
	}
	host, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		return fmt.Errorf("--listen %q: give HOST:PORT, such as 127.0.0.1:8443 or :8443", o.listen)
	}
	cfg, err := adminConfig(o.kubeconfig, true)
	if err != nil {
		return err
	}
	var clientCAs *x509.CertPool
	if o.clientCA != "" {
		data, err := os.ReadFile(o.clientCA)
		if err != nil {
			return fmt.Errorf("--client-ca-file: %w", err)
		}
		clientCAs = x509.NewCertPool()
		if !clientCAs.AppendCertsFromPEM(data) {
			return fmt.Errorf("--client-ca-file %s holds no PEM certificate", o.clientCA)
		}
	}
	cert, err := servingCert(o, host, cmd)
	if err != nil {
		return err
	}
	log := klog.NewKlogr().WithName("console")
	srv, err := console.New(console.Options{Config: cfg, ClientCAs: clientCAs, SessionTTL: o.sessionTTL, Log: log})
	if err != nil {
		return err
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if clientCAs != nil {
		tlsCfg.ClientCAs = clientCAs
		tlsCfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", o.listen, err)
	}
	hs := &http.Server{Handler: srv.Handler(), TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second, ErrorLog: nil}
	fmt.Fprintf(cmd.OutOrStdout(), "console serving on https://%s/ as %s\n", ln.Addr(), describeCredential(cfg))
	errc := make(chan error, 1)
	go func() { errc <- hs.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return hs.Shutdown(shutdown)
	}
}

// describeCredential names the console's own credential for the start
// line, without any secret of it.
func describeCredential(cfg *rest.Config) string {
	switch {
	case cfg.BearerTokenFile != "":
		return "the service account of " + cfg.BearerTokenFile
	case cfg.CertFile != "" || len(cfg.CertData) > 0:
		return "the client certificate of the kubeconfig, at " + cfg.Host
	default:
		return "the kubeconfig's credential, at " + cfg.Host
	}
}

// servingCert loads the flags' certificate or makes a self-signed one for
// the listen address and localhost, printing its SHA-256 fingerprint so a
// user can check what the browser shows.
func servingCert(o consoleOptions, host string, cmd *cobra.Command) (tls.Certificate, error) {
	if o.certFile != "" {
		cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("--tls-cert-file/--tls-private-key-file: %w", err)
		}
		return cert, nil
	}
	now := time.Now()
	ca, err := pki.NewCAFor("kubinception-console", now, 365*24*time.Hour)
	if err != nil {
		return tls.Certificate{}, err
	}
	spec := pki.Spec{CommonName: "kubinception-console", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, Server: true}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		spec.IPs = append(spec.IPs, ip)
	} else if host != "" && ip == nil {
		spec.DNSNames = append(spec.DNSNames, host)
	}
	if name, err := os.Hostname(); err == nil {
		spec.DNSNames = append(spec.DNSNames, name)
	}
	leaf, err := ca.IssueFor(spec, now, 365*24*time.Hour)
	if err != nil {
		return tls.Certificate{}, err
	}
	sum := sha256.Sum256(leaf.Cert.Raw)
	fmt.Fprintf(cmd.OutOrStdout(), "no --tls-cert-file: serving a self-signed certificate, SHA-256 fingerprint %s\n", hex.EncodeToString(sum[:]))
	return tls.X509KeyPair(append(append([]byte{}, leaf.CertPEM...), ca.CertPEM...), leaf.KeyPEM)
}
