package cli

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"kubinception.dev/kubinception/internal/lb"
	"kubinception.dev/kubinception/internal/tunnel"
)

func newLBCommand() *cobra.Command {
	var server, serverName, certFile, keyFile, caFile, httpAddress string
	var ports []string
	cmd := &cobra.Command{
		Use:   "lb",
		Short: "Serve a tenant Service of type LoadBalancer from the admin cluster: forward its ports to its node ports on healthy tenant nodes, through the node tunnel",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := zap.New(zap.UseDevMode(false)).WithName("lb")
			t, err := clientTLS(certFile, keyFile, caFile, serverName)
			if err != nil {
				return err
			}
			cfg := lb.Config{Logger: logger, Tunnel: &tunnel.Client{Server: server, TLS: t}}
			for _, s := range ports {
				p, err := lb.ParsePort(s)
				if err != nil {
					return fmt.Errorf("--port: %w", err)
				}
				cfg.Ports = append(cfg.Ports, p)
			}
			reg := prometheus.NewRegistry()
			cfg.Registerer = reg
			b, err := lb.New(cfg)
			if err != nil {
				return err
			}
			listeners := map[int32]net.Listener{}
			for _, p := range cfg.Ports {
				l, err := net.Listen("tcp", ":"+strconv.Itoa(int(p.Listen)))
				if err != nil {
					return fmt.Errorf("port %s: %w", p.Name, err)
				}
				listeners[p.Listen] = l
			}
			if httpAddress != "" {
				mux := http.NewServeMux()
				mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
				mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
				hs := &http.Server{Addr: httpAddress, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
				go func() { _ = hs.ListenAndServe() }()
				defer hs.Close()
			}
			return b.Run(cmd.Context(), listeners)
		},
	}
	f := cmd.Flags()
	f.StringVar(&server, "tunnel", "", "host:port of the tenant's tunnel servers' client port")
	f.StringVar(&serverName, "server-name", "", "name the tunnel servers' certificate must carry (default the host of --tunnel)")
	f.StringVar(&certFile, "cert-file", "", "tunnel client certificate (common name "+tunnel.ClientCommonName+")")
	f.StringVar(&keyFile, "key-file", "", "key of --cert-file")
	f.StringVar(&caFile, "ca-file", "", "CA of the tunnel servers' certificate (the tenant CA)")
	f.StringArrayVar(&ports, "port", nil, "NAME:LISTEN:NODEPORT, once per Service port (TCP)")
	f.StringVar(&httpAddress, "http-address", ":9090", "address serving /healthz and /metrics (empty disables)")
	return cmd
}
