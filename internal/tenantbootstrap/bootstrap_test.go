package tenantbootstrap

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
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
	return Params{Endpoint: "https://10.199.0.1:31000", CAPEM: ca.CertPEM, KubernetesVersion: "v1.35.4",
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
