package admincluster

import (
	"strings"
	"testing"

	"kubinception.dev/kubinception/internal/goldenfile"

	"kubinception.dev/kubinception/internal/local/components"
)

func testConfig() Config {
	c := Defaults()
	c.Root = "/var/lib/kubinception-test"
	c.Binaries = components.Binaries{KubeDir: "/cache/kubernetes/bin", Calico: "/cache/calico/bin/calico"}
	return c
}

func TestRenderedFilesMatchGolden(t *testing.T) {
	c := testConfig()
	goldenfile.Check(t, "containerd.toml", []byte(renderContainerdConfig(c)))
	cni, err := renderCNIConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	goldenfile.Check(t, "cni.conflist", []byte(cni))
	felix := felixProcess(c)
	goldenfile.Check(t, "felix.process", []byte(strings.Join(append(append([]string{felix.Path}, felix.Args...), felix.Env...), "\n")+"\n"))
	goldenfile.Check(t, "kubelet.yaml", []byte(renderKubeletConfig(c)))
	goldenfile.Check(t, "kube-proxy.yaml", []byte(renderProxyConfig(c)))
	goldenfile.Check(t, "kubelet.args", []byte(strings.Join(kubeletArgs(c), "\n")+"\n"))
	digests := map[string]string{c.Images.Etcd(): "sha256:etcd", c.Images.Component("kube-apiserver"): "sha256:apiserver"}
	for _, sp := range staticPods(c, digests, "hash") {
		data, err := sp.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		goldenfile.Check(t, "manifests/"+sp.File, data)
	}
}

func TestStaticPodsCoverTheAdminPlane(t *testing.T) {
	c := testConfig()
	names := map[string]bool{}
	for _, sp := range staticPods(c, nil, "h") {
		names[sp.Pod.Name] = true
		if sp.Pod.Spec.Containers[0].ImagePullPolicy != "Never" {
			t.Errorf("%s may pull its image; nothing can be pulled here", sp.Pod.Name)
		}
		if !sp.Pod.Spec.HostNetwork {
			t.Errorf("%s is not on the host network", sp.Pod.Name)
		}
	}
	for _, want := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "datastore-0", "datastore-1", "datastore-2"} {
		if !names[want] {
			t.Errorf("no static pod %s", want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "defaults"},
		{name: "relative root", mutate: func(c *Config) { c.Root = "state" }, wantErr: "--root"},
		{name: "overlapping ranges", mutate: func(c *Config) { c.ServiceCIDR = c.PodCIDR }, wantErr: "overlap"},
		{name: "node IP in pod range", mutate: func(c *Config) { c.NodeIP = nthHost(c.PodCIDR, 5) }, wantErr: "--node-ip"},
		{name: "unsupported version", mutate: func(c *Config) { c.KubernetesVersion = "v1.99.0" }, wantErr: "not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			if tt.mutate != nil {
				tt.mutate(&c)
			}
			err := c.Validate()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error = %v, want one naming %q", err, tt.wantErr)
			}
		})
	}
}

func TestSavedConfigRoundTrips(t *testing.T) {
	c := testConfig()
	c.Root = t.TempDir()
	c.Ports.APIServer = 7443
	if err := c.Save(); err != nil {
		t.Fatal(err)
	}
	got, ok, err := LoadSaved(c.Root)
	if err != nil || !ok {
		t.Fatalf("LoadSaved: ok=%v err=%v", ok, err)
	}
	if got.Ports.APIServer != 7443 || !got.NodeIP.Equal(c.NodeIP) || got.PodCIDR.String() != c.PodCIDR.String() {
		t.Fatalf("saved configuration changed: %+v", got)
	}
}
