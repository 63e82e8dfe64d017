package images

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kubinception.dev/kubinception/internal/local/components"
	"kubinception.dev/kubinception/internal/release"
)

// ComponentImages are the Kubernetes components that run from images (the
// kubelet runs on the host).
var ComponentImages = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy"}

// Sources are the binaries the local images are packed from.
type Sources struct {
	Binaries components.Binaries
	// Kubinception is a statically linked kubinception binary.
	Kubinception string
	// OtherVersions are further Kubernetes builds whose control-plane
	// images tenants may run.
	OtherVersions []components.Binaries
}

// LocalImages packs every image the local admin cluster and its tenants run.
// Layers are written to layerDir and reused while their inputs are unchanged.
func LocalImages(src Sources, names release.Names, layerDir string) ([]Tagged, error) {
	if err := os.MkdirAll(layerDir, 0o755); err != nil {
		return nil, err
	}
	lc := layerCache{dir: layerDir}
	base, err := lc.layer("base", baseEntries())
	if err != nil {
		return nil, err
	}
	kubeLayer, err := lc.kubeLayer(src.Binaries)
	if err != nil {
		return nil, err
	}
	etcdLayer, err := lc.layer("etcd-"+src.Binaries.EtcdVersion, []Entry{
		{Path: "/usr/local/bin/etcd", Source: src.Binaries.Etcd},
		{Path: "/usr/local/bin/etcdctl", Link: "etcd"},
	})
	if err != nil {
		return nil, err
	}
	tinyLayer, err := lc.layer("tinyhost", []Entry{
		{Path: "/usr/local/bin/tinyhost", Source: src.Binaries.Tinyhost},
		{Path: "/pause", Link: "usr/local/bin/tinyhost"},
	})
	if err != nil {
		return nil, err
	}
	corednsLayer, err := lc.layer("coredns-"+src.Binaries.CoreDNSVersion, []Entry{{Path: "/coredns", Source: src.Binaries.CoreDNS}})
	if err != nil {
		return nil, err
	}
	iptEntries, err := IptablesEntries()
	if err != nil {
		return nil, err
	}
	iptLayer, err := lc.layer("iptables", iptEntries)
	if err != nil {
		return nil, err
	}
	ipsetEntries, err := IpsetEntries()
	if err != nil {
		return nil, err
	}
	ipsetLayer, err := lc.layer("ipset", ipsetEntries)
	if err != nil {
		return nil, err
	}
	calicoLayer, err := lc.calicoLayer(src.Binaries)
	if err != nil {
		return nil, err
	}

	specs := []Spec{
		{Ref: names.Pause(), Layers: []v1.Layer{base, tinyLayer}, Entrypoint: []string{"/pause"}},
		{Ref: names.Tinyhost(), Layers: []v1.Layer{base, tinyLayer}, Entrypoint: []string{"/usr/local/bin/tinyhost"}},
		{Ref: names.Etcd(), Layers: []v1.Layer{base, etcdLayer}, Entrypoint: []string{"/usr/local/bin/etcd"}},
		{Ref: names.CoreDNS(), Layers: []v1.Layer{base, corednsLayer}, Entrypoint: []string{"/coredns"}},
		{Ref: names.Component("kube-proxy"), Layers: []v1.Layer{base, kubeLayer, iptLayer}, Entrypoint: []string{"/usr/local/bin/kube-proxy"}},
		{Ref: names.Calico(), Layers: []v1.Layer{base, iptLayer, ipsetLayer, calicoLayer}, Entrypoint: []string{"/usr/local/bin/calico-felix"}},
	}
	for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
		specs = append(specs, Spec{Ref: names.Component(name), Layers: []v1.Layer{base, kubeLayer}, Entrypoint: []string{"/usr/local/bin/" + name}})
	}
	for _, other := range src.OtherVersions {
		if other.KubernetesVersion == src.Binaries.KubernetesVersion {
			continue
		}
		layer, err := lc.kubeLayer(other)
		if err != nil {
			return nil, err
		}
		on := names
		on.KubernetesVersion = other.KubernetesVersion
		for _, name := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler"} {
			specs = append(specs, Spec{Ref: on.Component(name), Layers: []v1.Layer{base, layer}, Entrypoint: []string{"/usr/local/bin/" + name}})
		}
		specs = append(specs, Spec{Ref: on.Component("kube-proxy"), Layers: []v1.Layer{base, layer, iptLayer}, Entrypoint: []string{"/usr/local/bin/kube-proxy"}})
	}
	var out []Tagged
	for _, s := range specs {
		img, err := Build(s)
		if err != nil {
			return nil, err
		}
		out = append(out, Tagged{Ref: s.Ref, Image: img})
	}
	if src.Kubinception != "" {
		self, err := KubinceptionImage(src.Kubinception, names, layerDir)
		if err != nil {
			return nil, err
		}
		out = append(out, self...)
	}
	return out, nil
}

func baseEntries() []Entry {
	return []Entry{
		{Path: "/etc/passwd", Data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"), Mode: 0o644},
		{Path: "/etc/group", Data: []byte("root:x:0:\nnogroup:x:65534:\n"), Mode: 0o644},
		{Path: "/etc/nsswitch.conf", Data: []byte("hosts: files dns\n"), Mode: 0o644},
		{Path: "/tmp", Mode: 0o1777},
		{Path: "/var/run", Mode: 0o755},
		{Path: "/run", Mode: 0o755},
	}
}

// checkStatic refuses a dynamically linked binary, which would not start
// in an image that has no C library.
func checkStatic(path string) error {
	out, err := exec.Command("ldd", path).CombinedOutput()
	if err == nil && !strings.Contains(string(out), "not a dynamic executable") && !strings.Contains(string(out), "statically linked") {
		return fmt.Errorf("%s is dynamically linked and cannot run in an image: build it with CGO_ENABLED=0 go build ./cmd/kubinception", path)
	}
	return nil
}

// KubinceptionImage packs only the kubinception image.
func KubinceptionImage(self string, names release.Names, layerDir string) ([]Tagged, error) {
	if err := checkStatic(self); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(layerDir, 0o755); err != nil {
		return nil, err
	}
	lc := layerCache{dir: layerDir}
	base, err := lc.layer("base", baseEntries())
	if err != nil {
		return nil, err
	}
	layer, err := lc.layer("kubinception", []Entry{{Path: "/usr/local/bin/kubinception", Source: self}})
	if err != nil {
		return nil, err
	}
	img, err := Build(Spec{Ref: names.Kubinception(), Layers: []v1.Layer{base, layer}, Entrypoint: []string{"/usr/local/bin/kubinception"}})
	if err != nil {
		return nil, err
	}
	return []Tagged{{Ref: names.Kubinception(), Image: img}}, nil
}

// kubeLayer holds the multi-call binary and a symlink per component.
func (lc layerCache) kubeLayer(bins components.Binaries) (v1.Layer, error) {
	kube := []Entry{{Path: "/usr/local/bin/kube", Source: bins.Kube}}
	for _, name := range components.KubeComponents {
		kube = append(kube, Entry{Path: "/usr/local/bin/" + name, Link: "kube"})
	}
	return lc.layer("kube-"+bins.KubernetesVersion, kube)
}

// calicoLayer holds Calico's multi-call binary with a link per command, and
// the CNI plugin where upstream's installer copies plugins from
// (/opt/cni/bin: every file there is installed on the node).
func (lc layerCache) calicoLayer(bins components.Binaries) (v1.Layer, error) {
	if bins.Calico == "" {
		return nil, fmt.Errorf("the Calico binary is not built: run kubinception build components")
	}
	entries := []Entry{
		{Path: "/usr/local/bin/calico", Source: bins.Calico},
		{Path: "/opt/cni/bin/calico", Link: "../../../usr/local/bin/calico"},
	}
	for _, name := range components.CalicoCommands {
		entries = append(entries, Entry{Path: "/usr/local/bin/" + name, Link: "calico"})
	}
	return lc.layer("calico-"+bins.CalicoVersion, entries)
}

// layerCache keeps layer tars keyed by a stamp of their entries (paths,
// sizes and modification times of the source files).
type layerCache struct{ dir string }

func (lc layerCache) layer(name string, entries []Entry) (v1.Layer, error) {
	h := sha256.New()
	for _, e := range entries {
		fmt.Fprintf(h, "%s|%s|%s|%d|%x|", e.Path, e.Source, e.Link, e.Mode, e.Data)
		if e.Source != "" {
			info, err := os.Stat(e.Source)
			if err != nil {
				return nil, fmt.Errorf("image layer %s: %w", name, err)
			}
			fmt.Fprintf(h, "%d|%d|", info.Size(), info.ModTime().UnixNano())
		}
	}
	stamp := hex.EncodeToString(h.Sum(nil))
	tarPath := filepath.Join(lc.dir, name+".tar")
	stampPath := tarPath + ".stamp"
	if old, err := os.ReadFile(stampPath); err == nil && string(old) == stamp {
		if l, err := fileLayer(tarPath); err == nil {
			return l, nil
		}
	}
	_ = os.Remove(stampPath)
	l, err := WriteLayer(tarPath, entries)
	if err != nil {
		return nil, fmt.Errorf("image layer %s: %w", name, err)
	}
	return l, os.WriteFile(stampPath, []byte(stamp), 0o644)
}

// IptablesEntries collects the host's iptables (both backends), conntrack,
// their extension modules and every shared library they load, for the
// kube-proxy image. The image's "iptables" points at the backend the host
// itself uses, so kube-proxy's rules land where the host's tools see them.
func IptablesEntries() ([]Entry, error) {
	nft, err := exec.LookPath("xtables-nft-multi")
	if err != nil {
		return nil, fmt.Errorf("iptables is not installed (xtables-nft-multi not found): apt-get install -y iptables")
	}
	legacy, _ := exec.LookPath("xtables-legacy-multi")
	conntrack, err := exec.LookPath("conntrack")
	if err != nil {
		return nil, fmt.Errorf("conntrack is not installed: apt-get install -y conntrack")
	}
	defaultBackend := "xtables-nft-multi"
	if ipt, err := exec.LookPath("iptables"); err == nil {
		if real, err := filepath.EvalSymlinks(ipt); err == nil && strings.Contains(real, "legacy") && legacy != "" {
			defaultBackend = "xtables-legacy-multi"
		}
	}
	entries := []Entry{
		{Path: "/usr/sbin/xtables-nft-multi", Source: nft},
		{Path: "/usr/sbin/conntrack", Source: conntrack},
		{Path: "/run/xtables.lock", Data: []byte{}, Mode: 0o600},
	}
	objects := []string{nft, conntrack}
	if legacy != "" {
		entries = append(entries, Entry{Path: "/usr/sbin/xtables-legacy-multi", Source: legacy})
		objects = append(objects, legacy)
	}
	for _, fam := range []string{"iptables", "ip6tables"} {
		for _, suffix := range []string{"", "-save", "-restore"} {
			entries = append(entries, Entry{Path: "/usr/sbin/" + fam + suffix, Link: defaultBackend})
			entries = append(entries, Entry{Path: "/usr/sbin/" + fam + "-nft" + suffix, Link: "xtables-nft-multi"})
			if legacy != "" {
				entries = append(entries, Entry{Path: "/usr/sbin/" + fam + "-legacy" + suffix, Link: "xtables-legacy-multi"})
			}
		}
	}
	exts, _ := filepath.Glob("/usr/lib/x86_64-linux-gnu/xtables/*.so")
	for _, ext := range exts {
		entries = append(entries, Entry{Path: ext, Source: ext, Mode: 0o644})
		objects = append(objects, ext)
	}
	return withLibraries(entries, objects)
}

// IpsetEntries collects the host's ipset and the libraries it loads, for
// Felix: it keeps the addresses NetworkPolicy selectors match in ipsets.
func IpsetEntries() ([]Entry, error) {
	ipset, err := exec.LookPath("ipset")
	if err != nil {
		return nil, fmt.Errorf("ipset is not installed: apt-get install -y ipset")
	}
	return withLibraries([]Entry{{Path: "/usr/sbin/ipset", Source: ipset}}, []string{ipset})
}

// withLibraries adds to entries every shared library the objects load, at
// the path the loader looks for it.
func withLibraries(entries []Entry, objects []string) ([]Entry, error) {
	libs, err := sharedLibraries(objects)
	if err != nil {
		return nil, err
	}
	for _, lib := range libs {
		real, err := filepath.EvalSymlinks(lib)
		if err != nil {
			return nil, err
		}
		entries = append(entries, Entry{Path: lib, Source: real, Mode: 0o755})
	}
	return entries, nil
}

var lddLine = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x`)

// sharedLibraries lists, via ldd, every library (and the loader) the
// objects need.
func sharedLibraries(objects []string) ([]string, error) {
	seen := map[string]bool{}
	for _, obj := range objects {
		out, err := exec.Command("ldd", obj).Output()
		if err != nil {
			continue // not dynamic
		}
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if m := lddLine.FindStringSubmatch(sc.Text()); m != nil {
				seen[m[1]] = true
			}
		}
	}
	var libs []string
	for l := range seen {
		libs = append(libs, l)
	}
	sort.Strings(libs)
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd found no libraries for %v: is ldd (libc-bin) installed?", objects)
	}
	return libs, nil
}

// ImageDigests maps each reference to its manifest digest, for pod
// annotations that make the kubelet restart a pod when its image changes.
func ImageDigests(imgs []Tagged) (map[string]string, error) {
	m := map[string]string{}
	for _, t := range imgs {
		d, err := t.Image.Digest()
		if err != nil {
			return nil, err
		}
		m[t.Ref] = d.String()
	}
	return m, nil
}
