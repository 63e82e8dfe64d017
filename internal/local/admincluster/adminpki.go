package admincluster

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kubinception.dev/kubinception/internal/kubeconfig"
	"kubinception.dev/kubinception/internal/pki"
)

// ensurePKI creates or refreshes every certificate and kubeconfig of the
// admin cluster and the datastore. Existing certificates that still match
// are kept, so running it again changes nothing.
func ensurePKI(c Config, now func() time.Time) error {
	p := c.paths()
	d := pki.Dir{Path: p.PKI(), Now: now}
	node := c.NodeIP
	loopback := net.ParseIP("127.0.0.1").To4()

	ca, err := d.CA("ca", "kubinception-admin-ca")
	if err != nil {
		return err
	}
	etcdCA, err := d.CA("etcd-ca", "kubinception-admin-etcd-ca")
	if err != nil {
		return err
	}
	frontCA, err := d.CA("front-proxy-ca", "kubinception-admin-front-proxy-ca")
	if err != nil {
		return err
	}
	svc := "kubernetes.default.svc." + c.ClusterDomain
	leaves := []struct {
		name string
		ca   *pki.KeyPair
		spec pki.Spec
	}{
		{"apiserver", ca, pki.Spec{CommonName: "kube-apiserver", Server: true,
			DNSNames: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", svc, "localhost", c.NodeName},
			IPs:      []net.IP{node, nthHost(c.ServiceCIDR, 1), loopback}}},
		// The API server reaches kubelets (logs, exec) as a member of
		// system:masters, which needs no RBAC binding of its own.
		{"apiserver-kubelet-client", ca, pki.Spec{CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}, Client: true}},
		{"kubelet", ca, pki.Spec{CommonName: c.NodeName, DNSNames: []string{c.NodeName, "localhost"}, IPs: []net.IP{node, loopback}, Server: true}},
		{"etcd-server", etcdCA, pki.Spec{CommonName: c.NodeName, DNSNames: []string{"localhost", c.NodeName}, IPs: []net.IP{loopback}, Server: true, Client: true}},
		{"apiserver-etcd-client", etcdCA, pki.Spec{CommonName: "kube-apiserver-etcd-client", Client: true}},
		{"front-proxy-client", frontCA, pki.Spec{CommonName: "front-proxy-client", Client: true}},
	}
	for _, l := range leaves {
		if _, err := d.Leaf(l.name, l.ca, l.spec); err != nil {
			return fmt.Errorf("certificate %s: %w", l.name, err)
		}
	}
	if err := d.SigningKey("sa"); err != nil {
		return err
	}

	clients := []struct {
		name string
		spec pki.Spec
	}{
		{"admin", pki.Spec{CommonName: "kubernetes-admin", Organization: []string{"system:masters"}, Client: true}},
		{"controller-manager", pki.Spec{CommonName: "system:kube-controller-manager", Client: true}},
		{"scheduler", pki.Spec{CommonName: "system:kube-scheduler", Client: true}},
		{"kubelet", pki.Spec{CommonName: "system:node:" + c.NodeName, Organization: []string{"system:nodes"}, Client: true}},
		{"kube-proxy", pki.Spec{CommonName: "system:kube-proxy", Client: true}},
		// Felix and the Calico CNI plugin run on the host, not in pods:
		// users bound to Calico's roles (calicoParams) stand for upstream's
		// ServiceAccounts.
		{felixKubeconfig, pki.Spec{CommonName: felixUser, Client: true}},
		{cniKubeconfig, pki.Spec{CommonName: cniUser, Client: true}},
	}
	for _, cl := range clients {
		kp, err := d.Leaf(cl.name+"-client", ca, cl.spec)
		if err != nil {
			return fmt.Errorf("certificate %s-client: %w", cl.name, err)
		}
		data, err := kubeconfig.Render(kubeconfig.Config{
			ClusterName: "kubinception-admin", Server: apiServerURL(c), CAPEM: ca.CertPEM,
			UserName: cl.spec.CommonName, CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM,
		})
		if err != nil {
			return err
		}
		path := p.Kubeconfig(cl.name)
		if cl.name == "admin" {
			path = p.AdminKubeconfig()
		}
		if cl.name == "kube-proxy" {
			path = p.join("config", "kube-proxy", "kube-proxy.conf")
		}
		if err := writeIfChanged(path, data, 0o600); err != nil {
			return err
		}
	}
	return ensureDatastorePKI(c, now)
}

// ensureDatastorePKI creates the datastore's two CAs, a serving and a peer
// certificate per member, the root client certificate, and the key pair
// etcd signs its auth tokens with. The client CA signs the members'
// serving certificates and the clients the platform runs (root, the
// gateway); the peer CA signs only members' peer certificates, so no client
// certificate of any kind is accepted on a peer port. Tenants' certificates
// come from neither: they are issued by each Datastore's gateway CA, which
// only the gateway trusts.
func ensureDatastorePKI(c Config, now func() time.Time) error {
	for _, ds := range c.datastores() {
		if err := ensureOneDatastorePKI(ds, now); err != nil {
			return fmt.Errorf("datastore %s: %w", ds.name(), err)
		}
	}
	return nil
}

func ensureOneDatastorePKI(ds localDatastore, now func() time.Time) error {
	c := ds.c
	d := pki.Dir{Path: ds.pkiDir(), Now: now}
	ca, err := d.CA("ca", "kubinception-"+strings.TrimPrefix(ds.name()+"-", "default-")+"datastore-ca")
	if err != nil {
		return err
	}
	peerCA, err := d.CA("peer-ca", "kubinception-"+strings.TrimPrefix(ds.name()+"-", "default-")+"datastore-peer-ca")
	if err != nil {
		return err
	}
	for i := 0; i < DatastoreMembers; i++ {
		name := ds.member(i)
		addrs := pki.Spec{CommonName: name, DNSNames: []string{"localhost", name}, IPs: []net.IP{c.NodeIP, net.ParseIP("127.0.0.1").To4()}}
		serving, peer := addrs, addrs
		// etcd dials its own gRPC gateway with its serving certificate.
		serving.Server, serving.Client = true, true
		peer.Server, peer.Client = true, true
		if _, err := d.Leaf(name, ca, serving); err != nil {
			return fmt.Errorf("certificate %s: %w", name, err)
		}
		if _, err := d.Leaf(name+"-peer", peerCA, peer); err != nil {
			return fmt.Errorf("peer certificate %s: %w", name, err)
		}
	}
	if _, err := d.Leaf("root", ca, pki.Spec{CommonName: "root", Client: true}); err != nil {
		return fmt.Errorf("datastore root certificate: %w", err)
	}
	return d.SigningKey("token")
}

// writeIfChanged writes data to path unless the file already holds it.
func writeIfChanged(path string, data []byte, perm os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return pki.WriteFileAtomic(path, data, perm)
}
