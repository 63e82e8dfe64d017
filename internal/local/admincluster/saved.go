package admincluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"kubinception.dev/kubinception/internal/pki"
)

// savedConfig is the part of Config that Up records, so that Down and
// Status act on the cluster that is there rather than on flag defaults.
type savedConfig struct {
	NodeName          string `json:"nodeName"`
	NodeIP            string `json:"nodeIP"`
	PodCIDR           string `json:"podCIDR"`
	ServiceCIDR       string `json:"serviceCIDR"`
	LoadBalancerCIDR  string `json:"loadBalancerCIDR,omitempty"`
	ClusterDomain     string `json:"clusterDomain"`
	KubernetesVersion string `json:"kubernetesVersion"`
	Registry          string `json:"registry"`
	Ports             Ports  `json:"ports"`
}

func savedPath(root string) string { return filepath.Join(root, "state", "config.json") }

// Save records c under its root.
func (c Config) Save() error {
	data, err := json.MarshalIndent(savedConfig{
		NodeName: c.NodeName, NodeIP: c.NodeIP.String(), PodCIDR: c.PodCIDR.String(), ServiceCIDR: c.ServiceCIDR.String(),
		LoadBalancerCIDR: c.LoadBalancerCIDR.String(),
		ClusterDomain:    c.ClusterDomain, KubernetesVersion: c.KubernetesVersion, Registry: c.Images.Registry, Ports: c.Ports,
	}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(savedPath(c.Root)), 0o755); err != nil {
		return err
	}
	return pki.WriteFileAtomic(savedPath(c.Root), data, 0o644)
}

// LoadSaved returns the configuration Up recorded under root, or
// (Defaults with that root, false) when there is none.
func LoadSaved(root string) (Config, bool, error) {
	c := Defaults()
	c.Root = root
	data, err := os.ReadFile(savedPath(root))
	if errors.Is(err, os.ErrNotExist) {
		return c, false, nil
	}
	if err != nil {
		return c, false, err
	}
	var s savedConfig
	if err := json.Unmarshal(data, &s); err != nil {
		return c, false, fmt.Errorf("%s: %w", savedPath(root), err)
	}
	c.NodeName, c.ClusterDomain, c.KubernetesVersion, c.Ports = s.NodeName, s.ClusterDomain, s.KubernetesVersion, s.Ports
	c.NodeIP = net.ParseIP(s.NodeIP).To4()
	_, c.PodCIDR, _ = net.ParseCIDR(s.PodCIDR)
	_, c.ServiceCIDR, _ = net.ParseCIDR(s.ServiceCIDR)
	if s.LoadBalancerCIDR != "" { // recorded by earlier versions without it: the default
		_, c.LoadBalancerCIDR, _ = net.ParseCIDR(s.LoadBalancerCIDR)
	}
	c.Images.Registry, c.Images.KubernetesVersion = s.Registry, s.KubernetesVersion
	return c, true, c.Validate()
}
