package nodeconfig

import (
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestKubeletDropInIsThePrefixOfTheFullConfiguration checks that a
// worker's drop-in and the admin node's configuration carry the same
// machine settings, and that both parse.
func TestKubeletDropInIsThePrefixOfTheFullConfiguration(t *testing.T) {
	k := Kubelet{RuntimeEndpoint: "/run/containerd/containerd.sock", CgroupRoot: "/kubinception-1-2"}
	dropIn := k.Render("")
	full := k.Render("staticPodPath: /etc/kubernetes/manifests\nport: 10250\n")
	if !strings.HasPrefix(full, dropIn) {
		t.Fatalf("the full configuration does not start with the drop-in:\n%s", full)
	}
	var got map[string]any
	if err := yaml.Unmarshal([]byte(full), &got); err != nil {
		t.Fatalf("rendered configuration does not parse: %v\n%s", err, full)
	}
	for key, want := range map[string]any{
		"kind":                     "KubeletConfiguration",
		"cgroupDriver":             "cgroupfs",
		"failCgroupV1":             false,
		"failSwapOn":               false,
		"oomScoreAdj":              float64(0),
		"cgroupRoot":               "/kubinception-1-2",
		"containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
		"staticPodPath":            "/etc/kubernetes/manifests",
	} {
		if got[key] != want {
			t.Errorf("%s = %#v, want %#v", key, got[key], want)
		}
	}
	if strings.Contains(Kubelet{RuntimeEndpoint: "/s"}.Render(""), "cgroupRoot") {
		t.Error("cgroupRoot rendered without being set")
	}
}

// TestContainerdCNIBinDir checks that a node without a bin dir of its own
// keeps the machine's plugins and that one with its own gets it.
func TestContainerdCNIBinDir(t *testing.T) {
	for _, tt := range []struct{ dir, want string }{
		{"", `bin_dir = "/usr/lib/cni"`},
		{"/var/lib/kubinception/cni/bin", `bin_dir = "/var/lib/kubinception/cni/bin"`},
	} {
		got := Containerd{CNIConfDir: "/etc/cni/net.d", CNIBinDir: tt.dir}.Render()
		if !strings.Contains(got, "\n    "+tt.want+"\n") || strings.Count(got, "bin_dir") != 1 {
			t.Errorf("CNIBinDir %q: want one %s in\n%s", tt.dir, tt.want, got)
		}
	}
}
