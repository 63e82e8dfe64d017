package frontdoor

import (
	"fmt"
	"net"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Namespace is where the front door runs and where its routes and
// activity Leases are; nothing else lives there, so the front door's
// namespaced permissions reach nothing else.
const Namespace = "kubinception-frontdoor"

// Name of the front door's Deployment, Service, service account and RBAC.
const Name = "kubinception-frontdoor"

// LabelRoute marks a ConfigMap in Namespace as a route.
const LabelRoute = "kubinception.dev/front-door-route"

// Keys of a route ConfigMap.
const (
	KeyHost       = "host"
	KeyAPIServer  = "apiServer"
	KeyTunnelHost = "tunnelHost"
	KeyTunnel     = "tunnel"
	KeyTenant     = "tenant"
)

// Labels on a route's ConfigMap and Lease naming the tenant, so the
// operator maps a Lease back to its TenantCluster.
const (
	LabelTenantNamespace = "kubinception.dev/tenant-namespace"
	LabelTenantName      = "kubinception.dev/tenant-name"
)

// ObjectName is the name of a tenant's route ConfigMap and activity
// Lease: its namespace and name, which together are unique.
func ObjectName(namespace, name string) string { return namespace + "." + name }

// HostName is the name clients use for a tenant's API server.
func HostName(tenant, domain string) string { return tenant + "." + domain }

// TunnelHostName is the name the tenant's tunnel agents use for its
// tunnel servers: below "tunnel." so that no tenant's own name (a DNS
// label) can be it.
func TunnelHostName(tenant, domain string) string { return tenant + ".tunnel." + domain }

// ValidateDomain says what is wrong with a base domain, naming flag.
func ValidateDomain(flag, domain string) error {
	if errs := validation.IsDNS1123Subdomain(domain); len(errs) > 0 || !strings.Contains(domain, ".") {
		return fmt.Errorf("%s %q is not a DNS domain: give one such as tenants.example.com, whose names (and those of tunnel.<domain>) resolve to the front door", flag, domain)
	}
	return nil
}

// Route is where one tenant's names lead.
type Route struct {
	// Tenant is namespace/name, for logs and metrics.
	Tenant string
	// Lease is the activity Lease's name in Namespace.
	Lease string
	// Host and TunnelHost are the names; APIServer and Tunnel the
	// host:port each leads to (Tunnel empty without the tunnel).
	Host, TunnelHost  string
	APIServer, Tunnel string
}

// RouteConfigMap is the ConfigMap publishing a route; the operator
// applies it, the front door reads it.
func RouteConfigMap(namespace, name string, r Route) *corev1.ConfigMap {
	data := map[string]string{KeyHost: r.Host, KeyAPIServer: r.APIServer, KeyTenant: namespace + "/" + name}
	if r.Tunnel != "" {
		data[KeyTunnelHost], data[KeyTunnel] = r.TunnelHost, r.Tunnel
	}
	return &corev1.ConfigMap{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: ObjectName(namespace, name), Namespace: Namespace,
			Labels: map[string]string{LabelRoute: "true", LabelTenantNamespace: namespace, LabelTenantName: name}},
		Data: data,
	}
}

// Target is what a server name leads to.
type Target struct {
	Tenant, Lease string
	Backend       string
}

// Table maps server names to targets. It is never changed once built: a
// new set of routes makes a new table.
type Table map[string]Target

// BuildTable turns route ConfigMaps into a table. A ConfigMap missing a
// name or a backend, or with a backend that is not host:port, is left
// out; when two claim one name the older keeps it (the operator refuses
// the newer tenant's exposure, see the TenantCluster reconciler).
func BuildTable(cms []*corev1.ConfigMap) Table {
	sorted := append([]*corev1.ConfigMap(nil), cms...)
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i].CreationTimestamp, sorted[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return sorted[i].Name < sorted[j].Name
	})
	t := Table{}
	add := func(host, backend string, cm *corev1.ConfigMap) {
		if host == "" || backend == "" {
			return
		}
		if _, _, err := net.SplitHostPort(backend); err != nil {
			return
		}
		host = strings.ToLower(host)
		if _, taken := t[host]; taken {
			return
		}
		t[host] = Target{Tenant: cm.Data[KeyTenant], Lease: cm.Name, Backend: backend}
	}
	for _, cm := range sorted {
		if cm.Labels[LabelRoute] != "true" {
			continue
		}
		add(cm.Data[KeyHost], cm.Data[KeyAPIServer], cm)
		add(cm.Data[KeyTunnelHost], cm.Data[KeyTunnel], cm)
	}
	return t
}

// Lookup finds the target of a server name (case does not matter, and a
// trailing dot is allowed, as in DNS).
func (t Table) Lookup(serverName string) (Target, bool) {
	target, ok := t[strings.TrimSuffix(strings.ToLower(serverName), ".")]
	return target, ok
}

// PortError says a port setting is out of range, naming flag.
func PortError(flag string, port int32) error {
	return fmt.Errorf("%s %d is not a port: give the port clients reach the front door on, 1-65535 (443 behind a load balancer)", flag, port)
}
