package tenantlb

import (
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"kubinception.dev/kubinception/internal/lb"
)

func TestPorts(t *testing.T) {
	svc := &corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
		{Name: "http", Port: 80, NodePort: 31080},
		{Port: 443, Protocol: corev1.ProtocolTCP, NodePort: 31443},
		{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, NodePort: 31053},
		{Name: "new", Port: 8080},
	}}}
	ports, skipped := Ports(svc)
	want := []lb.Port{{Name: "http", Listen: 80, NodePort: 31080}, {Name: "port-1", Listen: 443, NodePort: 31443}}
	if !slices.Equal(ports, want) {
		t.Errorf("ports %v, want %v", ports, want)
	}
	if len(skipped) != 2 || !strings.Contains(skipped[0], "only TCP") || !strings.Contains(skipped[1], "no node port") {
		t.Errorf("skipped %v, want the UDP port and the one without a node port, with why", skipped)
	}
}

func TestDeploymentSeesOnlyItsCertificate(t *testing.T) {
	p := Params{Tenant: "demo", Namespace: "team-a", Service: types.NamespacedName{Namespace: "default", Name: "web"},
		Ports: []lb.Port{{Name: "http", Listen: 80, NodePort: 31080}}, Image: "kubinception.local/kubinception:dev",
		Tunnel: "10.201.0.9:8134", ServerName: "demo-apiserver.team-a.svc", PKISecret: "demo-pki", Replicas: 2}
	d := Deployment(p)
	vol := d.Spec.Template.Spec.Volumes[0].Secret
	var keys []string
	for _, it := range vol.Items {
		keys = append(keys, it.Key)
	}
	if !slices.Equal(keys, []string{"ca.crt", "tunnel-client.crt", "tunnel-client.key"}) {
		t.Errorf("the load balancer mounts %v of the PKI Secret; it may see only the CA certificate and its tunnel client certificate", keys)
	}
	args := d.Spec.Template.Spec.Containers[0].Args
	for _, want := range []string{"lb", "--tunnel=10.201.0.9:8134", "--server-name=demo-apiserver.team-a.svc", "--port=http:80:31080"} {
		if !slices.Contains(args, want) {
			t.Errorf("args %v lack %s", args, want)
		}
	}
	if d.Name != Service(p).Name || !strings.HasPrefix(d.Name, "demo-lb-") || len(d.Name) > 63 {
		t.Errorf("names %q and %q: want the same, demo-lb-<hash>", d.Name, Service(p).Name)
	}
	if Name("demo", types.NamespacedName{Namespace: "a", Name: "b"}) == Name("demo", types.NamespacedName{Namespace: "a", Name: "c"}) {
		t.Error("two Services share a load balancer name")
	}
}
