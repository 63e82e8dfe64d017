package tenantbootstrap

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/tools/clientcmd"

	"kubinception.dev/kubinception/internal/pki"
)

func params(t *testing.T) Params {
	t.Helper()
	ca, err := pki.NewCA("tenant", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return Params{Endpoint: "https://10.199.0.1:31000", APIServerAddress: "10.199.0.1", APIServerPort: 31000, CAPEM: ca.CertPEM, KubernetesVersion: "v1.35.4",
		ServiceCIDR: "10.96.0.0/16", PodCIDR: "10.244.0.0/16", ClusterDomain: "cluster.local", DNSServiceIP: "10.96.0.10",
		KubeProxyImage: "r/kube-proxy:v1.35.4", CoreDNSImage: "r/coredns:v1.14.7", KubeProxy: true, CoreDNS: true}
}

func TestObjectsLetKubeadmJoin(t *testing.T) {
	objs, err := Objects(params(t))
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, o := range objs {
		found[o.GetNamespace()+"/"+o.GetName()] = true
		switch v := o.(type) {
		case *corev1.ConfigMap:
			if v.Name == "cluster-info" {
				cfg, err := clientcmd.Load([]byte(v.Data["kubeconfig"]))
				if err != nil {
					t.Fatalf("cluster-info kubeconfig: %v", err)
				}
				if c := cfg.Clusters[""]; c == nil || c.Server != "https://10.199.0.1:31000" || len(c.CertificateAuthorityData) == 0 {
					t.Fatalf("cluster-info names no server and CA: %+v", cfg.Clusters)
				}
			}
		case *rbacv1.RoleBinding:
			if v.Name == "kubeadm:bootstrap-signer-clusterinfo" && v.Subjects[0].Name != "system:anonymous" {
				t.Error("cluster-info must be readable anonymously: discovery happens before any credential is trusted")
			}
		}
	}
	for _, want := range []string{"kube-public/cluster-info", "kube-system/kubeadm-config", "kube-system/kubelet-config",
		"/kubeadm:kubelet-bootstrap", "/kubeadm:node-autoapprove-bootstrap", "/kubeadm:node-autoapprove-certificate-rotation",
		"/kubeadm:get-nodes", "kube-system/kube-proxy", "kube-system/coredns", "kube-system/kube-dns"} {
		if !found[want] {
			t.Errorf("missing %s", want)
		}
	}
}

// The kubernetes Service's Endpoints and EndpointSlice name the advertised
// address and port, agree with each other as the conformance test
// "should have Endpoints and EndpointSlices pointing to API Server"
// checks, and the Endpoints are not mirrored into a second slice.
func TestKubernetesServiceEndpoints(t *testing.T) {
	objs, err := Objects(params(t))
	if err != nil {
		t.Fatal(err)
	}
	var eps *corev1.Endpoints
	var slice *discoveryv1.EndpointSlice
	for _, o := range objs {
		if o.GetName() != "kubernetes" || o.GetNamespace() != "default" {
			continue
		}
		switch v := o.(type) {
		case *corev1.Endpoints:
			eps = v
		case *discoveryv1.EndpointSlice:
			slice = v
		}
	}
	if eps == nil || slice == nil {
		t.Fatalf("Endpoints %v and EndpointSlice %v for default/kubernetes, want both", eps, slice)
	}
	if eps.Labels[discoveryv1.LabelSkipMirror] != "true" {
		t.Errorf("Endpoints labels %v: without %s=true the controller manager mirrors them into a second slice", eps.Labels, discoveryv1.LabelSkipMirror)
	}
	if len(eps.Subsets) != 1 || len(eps.Subsets[0].Addresses) != 1 || eps.Subsets[0].Addresses[0].IP != "10.199.0.1" ||
		len(eps.Subsets[0].Ports) != 1 || eps.Subsets[0].Ports[0] != (corev1.EndpointPort{Name: "https", Port: 31000, Protocol: corev1.ProtocolTCP}) {
		t.Errorf("Endpoints subsets %+v, want 10.199.0.1 port https 31000/TCP", eps.Subsets)
	}
	if slice.Labels[discoveryv1.LabelServiceName] != "kubernetes" || slice.AddressType != discoveryv1.AddressTypeIPv4 {
		t.Errorf("EndpointSlice labels %v, address type %s", slice.Labels, slice.AddressType)
	}
	if len(slice.Endpoints) != 1 || !slices.Equal(slice.Endpoints[0].Addresses, []string{"10.199.0.1"}) ||
		slice.Endpoints[0].Conditions.Ready == nil || !*slice.Endpoints[0].Conditions.Ready {
		t.Errorf("EndpointSlice endpoints %+v, want 10.199.0.1 ready", slice.Endpoints)
	}
	if len(slice.Ports) != 1 || *slice.Ports[0].Port != 31000 || *slice.Ports[0].Name != "https" || *slice.Ports[0].Protocol != corev1.ProtocolTCP {
		t.Errorf("EndpointSlice ports %+v, want https 31000/TCP", slice.Ports)
	}

	p := params(t)
	p.APIServerAddress = ""
	if _, err := Objects(p); err == nil || !strings.Contains(err.Error(), "advertised address") {
		t.Errorf("no advertised address: got %v, want an error naming it", err)
	}
}

func TestAddonsSwitchOff(t *testing.T) {
	p := params(t)
	p.KubeProxy, p.CoreDNS = false, false
	objs, err := Objects(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if addon := o.GetLabels()[ManagedLabel]; addon != "bootstrap" {
			t.Errorf("%s (addon %s) rendered although switched off", o.GetName(), addon)
		}
	}
}
