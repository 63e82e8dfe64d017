package controlplane

import (
	"slices"
	"strings"
	"testing"

	"kubinception.dev/kubinception/internal/goldenfile"

	"sigs.k8s.io/yaml"
)

func testParams() Params {
	return Params{
		Name: "demo", Namespace: "team-a", Version: "v1.35.4", Registry: "kubinception.local", Replicas: 2,
		Port: 31234, AdvertiseAddress: "10.199.0.1",
		ServiceCIDR: "10.96.0.0/16", PodCIDR: "10.244.0.0/16", ClusterDomain: "cluster.local",
		EtcdEndpoints: []string{"https://10.201.0.9:2379"},
		PKISecret:     "demo-pki", PKIHash: "abc123",
		EncryptionSecret: "demo-encryption", EncryptionHash: "def456",
		Tunnel: true, Image: "kubinception.local/kubinception:dev",
	}
}

func TestRenderedObjectsMatchGolden(t *testing.T) {
	p := testParams()
	dep, err := yaml.Marshal(Deployment(p))
	if err != nil {
		t.Fatal(err)
	}
	goldenfile.Check(t, "deployment.yaml", dep)
	svc, err := yaml.Marshal(Service(p.Name, p.Namespace, "NodePort", ServicePorts{APIServerTarget: p.Port, APIServerNodePort: p.Port, Tunnel: true, TunnelNodePort: 31235}))
	if err != nil {
		t.Fatal(err)
	}
	goldenfile.Check(t, "service.yaml", svc)
}

func TestAPIServerArgs(t *testing.T) {
	p := testParams()
	args := APIServerArgs(p)
	for _, want := range []string{
		"--secure-port=31234",
		"--advertise-address=10.199.0.1",
		"--etcd-servers=https://10.201.0.9:2379",
		"--egress-selector-config-file=/run/kubinception/tunnel/egress-selector.yaml",
	} {
		if !slices.Contains(args, want) {
			t.Errorf("API server args lack %s", want)
		}
	}
	// The gateway places the API server's keys under its tenant's prefix
	// and serves its compactions: the API server keeps upstream defaults.
	for _, flag := range []string{"--etcd-prefix", "--etcd-compaction-interval"} {
		for _, a := range args {
			if strings.HasPrefix(a, flag+"=") {
				t.Errorf("API server args set %s", a)
			}
		}
	}
	p.ExtraArgs = []string{"--profiling=true", "--audit-log-maxage=7"}
	args = APIServerArgs(p)
	if slices.Contains(args, "--profiling=false") || !slices.Contains(args, "--profiling=true") {
		t.Errorf("an extra argument did not replace the default of the same flag: %v", args)
	}
	if !slices.Contains(args, "--audit-log-maxage=7") {
		t.Error("a new extra argument was dropped")
	}
}

func TestAPIServerSANs(t *testing.T) {
	p := testParams()
	spec := APIServerSANs(p, "10.201.3.4", "api.example.com", []string{"10.0.0.9", "alt.example.com"})
	var ips []string
	for _, ip := range spec.IPs {
		ips = append(ips, ip.String())
	}
	for _, want := range []string{"10.96.0.1", "10.201.3.4", "10.199.0.1", "127.0.0.1", "10.0.0.9"} {
		if !slices.Contains(ips, want) {
			t.Errorf("SANs lack IP %s: %v", want, ips)
		}
	}
	for _, want := range []string{"kubernetes.default.svc.cluster.local", "demo-apiserver.team-a.svc", "api.example.com", "alt.example.com"} {
		if !slices.Contains(spec.DNSNames, want) {
			t.Errorf("SANs lack name %s: %v", want, spec.DNSNames)
		}
	}
	again := APIServerSANs(p, "10.201.3.4", "api.example.com", []string{"10.0.0.9", "alt.example.com"})
	if strings.Join(again.DNSNames, ",") != strings.Join(spec.DNSNames, ",") {
		t.Error("SANs are not in a stable order; certificates would be reissued needlessly")
	}
}

func TestFirstServiceIP(t *testing.T) {
	for cidr, want := range map[string]string{"10.96.0.0/12": "10.96.0.1", "192.168.4.0/24": "192.168.4.1", "nonsense": "", "fd00::/64": ""} {
		if got := FirstServiceIP(cidr); got != want {
			t.Errorf("FirstServiceIP(%q) = %q, want %q", cidr, got, want)
		}
	}
}
