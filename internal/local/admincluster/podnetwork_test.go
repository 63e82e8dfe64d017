package admincluster

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/tools/clientcmd"

	"kubinception.dev/kubinception/internal/calico"
	"kubinception.dev/kubinception/internal/local/nodeconfig"
)

// TestPodNetworkIsCalicoOnTheAdminPodRange checks what the golden files
// cannot say: that containerd, the CNI configuration and Felix point at
// each other and at the admin node.
func TestPodNetworkIsCalicoOnTheAdminPodRange(t *testing.T) {
	c := testConfig()
	p := c.paths()
	if !strings.Contains(renderContainerdConfig(c), "bin_dir = "+strconv.Quote(p.CNIBin())) {
		t.Errorf("containerd does not take its CNI plugins from %s", p.CNIBin())
	}
	conf, err := renderCNIConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Plugins []struct {
			Type       string
			Nodename   string
			IPAM       map[string]string
			Kubernetes struct{ Kubeconfig string }
		}
	}
	if err := json.Unmarshal([]byte(conf), &list); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, pl := range list.Plugins {
		types = append(types, pl.Type)
	}
	if !slices.Equal(types, []string{"calico", "portmap"}) {
		t.Fatalf("plugins %v, want calico then portmap", types)
	}
	cal := list.Plugins[0]
	if cal.Nodename != c.NodeName || cal.IPAM["type"] != "host-local" || cal.IPAM["subnet"] != c.PodCIDR.String() || cal.IPAM["dataDir"] != p.CNIState() {
		t.Errorf("calico plugin %+v: want node %s, host-local addresses from %s kept in %s", cal, c.NodeName, c.PodCIDR, p.CNIState())
	}
	if cal.Kubernetes.Kubeconfig != p.Kubeconfig(cniKubeconfig) {
		t.Errorf("the CNI plugin reads %s, want the CNI user's kubeconfig %s", cal.Kubernetes.Kubeconfig, p.Kubeconfig(cniKubeconfig))
	}
	for _, name := range types {
		if _, ok := cniBinLinks(c)[name]; !ok {
			t.Errorf("plugin %s is not in the CNI bin dir", name)
		}
	}

	felix := felixProcess(c)
	if filepath.Base(felix.Path) != "calico-felix" || filepath.Dir(felix.Path) != filepath.Dir(c.Binaries.Calico) {
		t.Errorf("Felix runs as %s, want calico-felix beside %s", felix.Path, c.Binaries.Calico)
	}
	for _, want := range []string{"FELIX_FELIXHOSTNAME=" + c.NodeName, "KUBECONFIG=" + p.Kubeconfig(felixKubeconfig)} {
		if !slices.Contains(felix.Env, want) {
			t.Errorf("Felix's environment lacks %s: %v", want, felix.Env)
		}
	}
}

// TestCalicoUsersHaveCertificatesAndRoles checks that the kubeconfigs the
// admin PKI writes for Felix and the CNI plugin carry the users Calico's
// roles are bound to.
func TestCalicoUsersHaveCertificatesAndRoles(t *testing.T) {
	c := testConfig()
	c.Root = t.TempDir()
	if err := ensurePKI(c, time.Now); err != nil {
		t.Fatal(err)
	}
	bound := map[string][]string{}
	for _, obj := range calico.RBAC(calicoParams(c)) {
		if b, ok := obj.(*rbacv1.ClusterRoleBinding); ok {
			for _, s := range b.Subjects {
				if s.Kind == "User" {
					bound[b.RoleRef.Name] = append(bound[b.RoleRef.Name], s.Name)
				}
			}
		}
	}
	for _, tt := range []struct{ kubeconfig, role string }{{felixKubeconfig, calico.FelixName}, {cniKubeconfig, calico.CNIName}} {
		kc, err := clientcmd.LoadFromFile(c.paths().Kubeconfig(tt.kubeconfig))
		if err != nil {
			t.Fatal(err)
		}
		ctx := kc.Contexts[kc.CurrentContext]
		if ctx == nil || kc.AuthInfos[ctx.AuthInfo] == nil || kc.Clusters[ctx.Cluster] == nil {
			t.Fatalf("%s: no current context with a user and a cluster", tt.kubeconfig)
		}
		if got := kc.Clusters[ctx.Cluster].Server; got != apiServerURL(c) {
			t.Errorf("%s: server %s, want %s", tt.kubeconfig, got, apiServerURL(c))
		}
		block, _ := pem.Decode(kc.AuthInfos[ctx.AuthInfo].ClientCertificateData)
		if block == nil {
			t.Fatalf("%s: no client certificate", tt.kubeconfig)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(bound[tt.role], cert.Subject.CommonName) {
			t.Errorf("%s authenticates as %q, which role %s is not bound to (users %v)", tt.kubeconfig, cert.Subject.CommonName, tt.role, bound[tt.role])
		}
	}
}

func TestEnsureCNIBinDir(t *testing.T) {
	for _, name := range hostCNIPlugins {
		if _, err := os.Stat(filepath.Join(nodeconfig.DefaultCNIBinDir, name)); err != nil {
			t.Skipf("the machine lacks its CNI plugins (%v): install containernetworking-plugins", err)
		}
	}
	c := testConfig()
	c.Root = t.TempDir()
	c.Binaries.Calico = filepath.Join(t.TempDir(), "calico")
	if err := os.WriteFile(c.Binaries.Calico, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := c.paths().CNIBin()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A stray plugin and a link pointing elsewhere, as an earlier run
	// with another cache might leave.
	if err := os.WriteFile(filepath.Join(dir, "bridge"), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/nonexistent/calico", filepath.Join(dir, "calico")); err != nil {
		t.Fatal(err)
	}
	for range 2 { // and again: nothing changes
		if err := ensureCNIBinDir(c); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"calico", "host-local", "loopback", "portmap"}; !slices.Equal(names, want) {
		t.Fatalf("bin dir holds %v, want %v", names, want)
	}
	for name, target := range cniBinLinks(c) {
		if got, err := os.Readlink(filepath.Join(dir, name)); err != nil || got != target {
			t.Errorf("%s links to %q (%v), want %s", name, got, err, target)
		}
	}
}

// TestClearCNIConfig checks when the pod network's configuration may stay
// until Felix is ready: only while the node's daemons run, and never a
// bridge network of an earlier version under running pods.
func TestClearCNIConfig(t *testing.T) {
	current := func(c Config) string { s, _ := renderCNIConfig(c); return s }
	bridge := `{"name": "kubinception", "plugins": [{"type": "bridge", "bridge": "kubi-cni0"}]}`
	tests := []struct {
		name    string
		running bool
		files   map[string]func(Config) string
		want    []string
		wantErr string
	}{
		{name: "stopped node: the current configuration goes too", files: map[string]func(Config) string{cniConfFile: current}},
		{name: "running node keeps the current configuration", running: true,
			files: map[string]func(Config) string{cniConfFile: current, "99-stray.conf": func(Config) string { return "{}" }}, want: []string{cniConfFile}},
		{name: "running node: a changed configuration goes", running: true,
			files: map[string]func(Config) string{cniConfFile: func(c Config) string { return strings.Replace(current(c), "1500", "1400", 1) }}},
		{name: "stopped node: the bridge network goes", files: map[string]func(Config) string{cniConfFile: func(Config) string { return bridge }}},
		{name: "running node on the bridge network is refused", running: true,
			files: map[string]func(Config) string{cniConfFile: func(Config) string { return bridge }}, want: []string{cniConfFile}, wantErr: "admin down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			c.Root = t.TempDir()
			cl := &Cluster{Config: c}
			dir := c.paths().CNIConf()
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for name, data := range tt.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data(c)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if tt.running {
				// This test's own process stands for a live supervisor.
				if err := os.MkdirAll(c.paths().Run(), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(cl.files().PIDPath("supervisor"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			err := cl.clearCNIConfig()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want one naming %q", err, tt.wantErr)
			}
			entries, _ := os.ReadDir(dir)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if !slices.Equal(names, tt.want) {
				t.Fatalf("left %v, want %v", names, tt.want)
			}
		})
	}
}

// TestFelixDataplaneReady reads answers Felix gave: while it waits for
// ClusterInformation it says ready with its startup report alone.
func TestFelixDataplaneReady(t *testing.T) {
	const waiting = `+--------------+---------+----------------+-----------------+--------+
|  COMPONENT   | TIMEOUT |    LIVENESS    |    READINESS    | DETAIL |
+--------------+---------+----------------+-----------------+--------+
| FelixStartup | -       | reporting live | reporting ready |        |
+--------------+---------+----------------+-----------------+--------+`
	const programming = `+---------------------------+---------+----------------+---------------------+--------+
|         COMPONENT         | TIMEOUT |    LIVENESS    |      READINESS      | DETAIL |
+---------------------------+---------+----------------+---------------------+--------+
| CalculationGraph          | 30s     | reporting live | reporting ready     |        |
| FelixStartup              | -       | reporting live | reporting ready     |        |
| InternalDataplaneMainLoop | 1m30s   | reporting live | reporting non-ready |        |
+---------------------------+---------+----------------+---------------------+--------+`
	const ready = `+---------------------------+---------+----------------+-----------------+--------+
|         COMPONENT         | TIMEOUT |    LIVENESS    |    READINESS    | DETAIL |
+---------------------------+---------+----------------+-----------------+--------+
| CalculationGraph          | 30s     | reporting live | reporting ready |        |
| FelixStartup              | -       | reporting live | reporting ready |        |
| InternalDataplaneMainLoop | 1m30s   | reporting live | reporting ready |        |
+---------------------------+---------+----------------+-----------------+--------+`
	for _, tt := range []struct {
		name   string
		status int
		body   string
		want   bool
	}{
		{"waiting for the datastore", 200, waiting, false},
		{"before the first dataplane update", 503, programming, false},
		{"dataplane programmed", 200, ready, true},
		{"not ready", 503, ready, false},
	} {
		if got := felixDataplaneReady(tt.status, tt.body); got != tt.want {
			t.Errorf("%s: ready = %v, want %v", tt.name, got, tt.want)
		}
	}
}
