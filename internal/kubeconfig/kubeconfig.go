package kubeconfig

import (
	"fmt"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Config describes one kubeconfig with a single cluster, user and context.
type Config struct {
	// ClusterName names the cluster and the context.
	ClusterName string
	// Server is the API server URL, e.g. https://10.199.0.1:6443.
	Server string
	// CAPEM is the CA that signed the API server's serving certificate.
	CAPEM []byte
	// UserName names the user entry.
	UserName string
	// CertPEM and KeyPEM are the client certificate and key.
	CertPEM []byte
	KeyPEM  []byte
}

// Render returns the kubeconfig as YAML with credentials embedded.
func Render(c Config) ([]byte, error) {
	if c.Server == "" || len(c.CAPEM) == 0 || len(c.CertPEM) == 0 || len(c.KeyPEM) == 0 {
		return nil, fmt.Errorf("kubeconfig for %q: server, CA, certificate and key are all required", c.ClusterName)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[c.ClusterName] = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthorityData: c.CAPEM}
	cfg.AuthInfos[c.UserName] = &clientcmdapi.AuthInfo{ClientCertificateData: c.CertPEM, ClientKeyData: c.KeyPEM}
	cfg.Contexts[c.ClusterName] = &clientcmdapi.Context{Cluster: c.ClusterName, AuthInfo: c.UserName}
	cfg.CurrentContext = c.ClusterName
	return clientcmd.Write(*cfg)
}

// RenderCluster returns a kubeconfig with only a cluster entry (no user),
// the form of the cluster-info ConfigMap that kubeadm's token discovery
// reads.
func RenderCluster(server string, caPEM []byte) ([]byte, error) {
	if server == "" || len(caPEM) == 0 {
		return nil, fmt.Errorf("cluster-info needs a server and a CA")
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[""] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	return clientcmd.Write(*cfg)
}
