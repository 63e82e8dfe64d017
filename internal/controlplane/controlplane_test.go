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
	egress, err := yaml.Marshal(EgressSecret(p))
	if err != nil {
		t.Fatal(err)
	}
	goldenfile.Check(t, "egress-secret.yaml", egress)
}

// The API server is the pod's only init container, so the kubelet starts
// it first and waits for nothing else: the egress configuration it reads
// at start is the operator's Secret, the socket it names is the tunnel's,
// and the file and the socket meet at the path both sides use.
func TestAPIServerStartsFirstAndAlone(t *testing.T) {
	p := testParams()
	spec := Deployment(p).Spec.Template.Spec
	if len(spec.InitContainers) != 1 || spec.InitContainers[0].Name != "kube-apiserver" {
		t.Fatalf("init containers %v, want kube-apiserver alone", spec.InitContainers)
	}
	apiserver := spec.InitContainers[0]
	mounts := map[string]string{}
	for _, m := range apiserver.VolumeMounts {
		mounts[m.MountPath] = m.Name
	}
	var egressVolume string
	for _, v := range spec.Volumes {
		if v.Name == mounts[EgressMountPath] && v.Secret != nil {
			egressVolume = v.Secret.SecretName
		}
	}
	if egressVolume != EgressSecretName(p.Name) {
		t.Errorf("the API server's %s is %q, want the Secret %s", EgressMountPath, egressVolume, EgressSecretName(p.Name))
	}
	flag := "--egress-selector-config-file=" + EgressMountPath + "/" + FileEgressSelector
	if !slices.Contains(apiserver.Args, flag) {
		t.Errorf("API server args lack %s", flag)
	}
	socket := ""
	for _, c := range spec.Containers {
		if c.Name == "tunnel" {
			for _, a := range c.Args {
				if v, ok := strings.CutPrefix(a, "--socket="); ok {
					socket = v
				}
			}
		}
	}
	if !strings.HasPrefix(socket, TunnelDir+"/") || mounts[TunnelDir] == "" {
		t.Errorf("tunnel socket %q, API server mounts %v: the socket is not in the directory the API server sees", socket, mounts)
	}
	if cfg := string(EgressSecret(p).Data[FileEgressSelector]); !strings.Contains(cfg, `udsName: "`+socket+`"`) {
		t.Errorf("egress configuration does not name the socket %s:\n%s", socket, cfg)
	}
	if probe := apiserver.StartupProbe.HTTPGet.Path; probe != "/readyz" || FastStarting(Deployment(p)) {
		t.Errorf("first start's startup probe path %q, want every check of /readyz", probe)
	}
	fast := p
	fast.FastStart = true
	if dep := Deployment(fast); !FastStarting(dep) || !strings.HasPrefix(dep.Spec.Template.Spec.InitContainers[0].StartupProbe.HTTPGet.Path, "/readyz?exclude=") {
		t.Errorf("FastStart's startup probe %+v does not leave out the bootstrap hooks", dep.Spec.Template.Spec.InitContainers[0].StartupProbe)
	}
	if apiserver.ReadinessProbe != nil {
		t.Errorf("readiness probe %+v: the startup probe alone makes the API server ready", apiserver.ReadinessProbe)
	}

	p.Tunnel = false
	spec = Deployment(p).Spec.Template.Spec
	for _, v := range spec.Volumes {
		if v.Name == "egress" {
			t.Errorf("without the tunnel the pod still mounts %s", EgressSecretName(p.Name))
		}
	}
	for _, a := range APIServerArgs(p) {
		if strings.HasPrefix(a, "--egress-selector-config-file") {
			t.Errorf("without the tunnel the API server has %s", a)
		}
	}
}

func TestAPIServerArgs(t *testing.T) {
	p := testParams()
	args := APIServerArgs(p)
	for _, want := range []string{
		"--secure-port=31234",
		"--advertise-address=10.199.0.1",
		"--etcd-servers=https://10.201.0.9:2379",
		"--egress-selector-config-file=/etc/kubernetes/egress/egress-selector.yaml",
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
