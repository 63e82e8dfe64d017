package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"kubinception.dev/kubinception/internal/tunnel"
)

func newTunnelCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tunnel",
		Short: "The node tunnel: the API server reaches nodes behind NAT over connections the nodes open",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newTunnelServerCommand(), newTunnelAgentCommand())
	return cmd
}

func newTunnelServerCommand() *cobra.Command {
	var id, agentAddress, clientAddress, socket, httpAddress, certFile, keyFile, caFile string
	cfg := tunnel.ServerConfig{Count: 1}
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Serve the tunnel beside a tenant API server: agents connect here, the API server's egress selector sends its cluster connections to the socket",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := zap.New(zap.UseDevMode(false))
			cfg.Logger = logger.WithName("tunnel-server")
			cfg.ID = id
			if cfg.ID == "" {
				cfg.ID = os.Getenv("POD_NAME")
			}
			agentTLS, err := serverTLS(certFile, keyFile, caFile)
			if err != nil {
				return err
			}
			cfg.AgentTLS = agentTLS
			cfg.ClientTLS = agentTLS.Clone()
			s, err := tunnel.NewServer(cfg)
			if err != nil {
				return err
			}
			agents, err := net.Listen("tcp", agentAddress)
			if err != nil {
				return fmt.Errorf("--agent-address: %w", err)
			}
			if err := os.MkdirAll(filepath.Dir(socket), 0o755); err != nil {
				return fmt.Errorf("--socket: %w", err)
			}
			// A socket left by an earlier run of this container.
			if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("--socket: %w", err)
			}
			sl, err := net.Listen("unix", socket)
			if err != nil {
				return fmt.Errorf("--socket: %w", err)
			}
			var cl, hl net.Listener
			if clientAddress != "" {
				if cl, err = net.Listen("tcp", clientAddress); err != nil {
					return fmt.Errorf("--client-address: %w", err)
				}
			}
			if httpAddress != "" {
				if hl, err = net.Listen("tcp", httpAddress); err != nil {
					return fmt.Errorf("--http-address: %w", err)
				}
			}
			return s.Serve(cmd.Context(), tunnel.Listeners{Agents: agents, Socket: sl, Clients: cl, HTTP: hl})
		},
	}
	f := cmd.Flags()
	f.StringVar(&id, "id", "", "this replica's name, told to agents (default $POD_NAME)")
	f.IntVar(&cfg.Count, "server-count", cfg.Count, "replicas of the server; every agent connects to this many distinct servers")
	f.StringVar(&agentAddress, "agent-address", ":8132", "address agents connect to (TLS, agent client certificates required)")
	f.StringVar(&clientAddress, "client-address", "", "address platform components (the tenant's load balancers) connect to (TLS, client certificates of the --agent-ca-file CA with common name "+tunnel.ClientCommonName+"; empty disables)")
	f.StringVar(&socket, "socket", "/run/kubinception/tunnel/tunnel.sock", "Unix socket the API server sends its CONNECT requests to")
	f.StringVar(&httpAddress, "http-address", ":8133", "address serving /healthz and /metrics over HTTP (empty disables)")
	f.StringVar(&certFile, "tls-cert-file", "", "serving certificate agents check (PEM)")
	f.StringVar(&keyFile, "tls-key-file", "", "key of --tls-cert-file")
	f.StringVar(&caFile, "agent-ca-file", "", "CA of agents' (common name "+tunnel.AgentCommonName+") and clients' certificates")
	f.DurationVar(&cfg.WaitForAgent, "wait-for-agent", 0, "how long a connection waits for an agent to be connected (default 10s)")
	return cmd
}

func newTunnelAgentCommand() *cobra.Command {
	var certFile, keyFile, caFile string
	var cfg tunnel.AgentConfig
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run on a tenant node: keep a connection to every tunnel server and dial, from the node, what the API server asks for",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := zap.New(zap.UseDevMode(false))
			cfg.Logger = logger.WithName("tunnel-agent")
			var err error
			if cfg.TLS, err = clientTLS(certFile, keyFile, caFile, cfg.TLS.ServerName); err != nil {
				return err
			}
			a, err := tunnel.NewAgent(cfg)
			if err != nil {
				return err
			}
			return a.Run(cmd.Context())
		},
	}
	cfg.TLS = &tls.Config{}
	f := cmd.Flags()
	f.StringVar(&cfg.Server, "server", "", "host:port of the tunnel servers (the tenant API server's host, the tunnel port)")
	f.StringVar(&cfg.TLS.ServerName, "server-name", "", "name the servers' certificate must carry (default the host of --server)")
	f.StringVar(&cfg.Node, "node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	f.StringSliceVar(&cfg.Addresses, "node-address", nil, "this node's IP addresses (repeat or comma-separate)")
	f.StringVar(&certFile, "cert-file", "", "agent client certificate (PEM)")
	f.StringVar(&keyFile, "key-file", "", "key of --cert-file")
	f.StringVar(&caFile, "ca-file", "", "CA of the servers' certificate (the tenant CA)")
	return cmd
}

// clientTLS is a client's TLS configuration: its certificate
// (--cert-file, --key-file) and the CA of the servers' certificates
// (--ca-file). Both are read again at every handshake, so a certificate
// renewed or a CA bundle changed in a mounted Secret takes effect at the
// next connection without a restart (a certificate or CA rotation never
// needs the agents rolled). The files are read once here too, so a
// missing or broken file fails at start.
func clientTLS(certFile, keyFile, caFile, serverName string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--cert-file/--key-file: %w", err)
	}
	pool, err := loadPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("--cert-file/--key-file: %w", err)
			}
			return &c, nil
		},
		RootCAs: pool,
		// The server's chain is verified in VerifyConnection, against
		// --ca-file as it is at this handshake; crypto/tls's own check
		// would use the pool read at start.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPeer(cs, caFile, cs.ServerName, x509.ExtKeyUsageServerAuth)
		},
		ServerName: serverName,
		MinVersion: tls.VersionTLS12,
	}, nil
}

// serverTLS is a server's TLS configuration: its certificate and the CA
// of its clients' certificates, both read again at every handshake (see
// clientTLS).
func serverTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	load := func() (*tls.Config, error) {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert-file/--tls-key-file: %w", err)
		}
		pool, err := loadPool(caFile)
		if err != nil {
			return nil, fmt.Errorf("--agent-ca-file: %w", err)
		}
		return &tls.Config{Certificates: []tls.Certificate{cert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}, nil
	}
	cfg, err := load()
	if err != nil {
		return nil, err
	}
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) { return load() }
	return cfg, nil
}

// verifyPeer verifies the peer's chain against the CA bundle in caFile,
// read now, for usage and, when name is set, the name.
func verifyPeer(cs tls.ConnectionState, caFile, name string, usage x509.ExtKeyUsage) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the peer sent no certificate")
	}
	pool, err := loadPool(caFile)
	if err != nil {
		return err
	}
	opts := x509.VerifyOptions{Roots: pool, Intermediates: x509.NewCertPool(), DNSName: name, KeyUsages: []x509.ExtKeyUsage{usage}}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err = cs.PeerCertificates[0].Verify(opts)
	return err
}

func loadPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}
