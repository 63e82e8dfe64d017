package admincluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"kubinception.dev/kubinception/internal/calico"
	"kubinception.dev/kubinception/internal/local/nodeconfig"
)

// The admin node's pod network is Calico's CNI plugin in policy-only form,
// and Felix, a host process beside containerd and the kubelet, enforces
// NetworkPolicy on it. Up brings it up in an order that never lets a pod
// start unpoliced or fail its network setup:
//
//  1. Calico's CRDs, roles, ClusterInformation and IPPool go to the admin
//     cluster as soon as its API server answers (the CNI plugin refuses to
//     add a pod until ClusterInformation says the datastore is ready);
//  2. Felix, supervised after containerd and the kubelet, starts and
//     becomes ready once it finds them;
//  3. only then is the CNI configuration written: until it exists,
//     containerd reports the pod network not ready and the kubelet starts
//     no pod on it (the static pods use the host's network).
const (
	// FelixProcess is Felix's name in the supervisor's spec, pid file
	// and log.
	FelixProcess = "calico-felix"
	// CalicoStateDir is where Felix records the MTU it detected. Calico
	// v3.28 does not let it be moved: teardown removes it.
	CalicoStateDir = "/var/lib/calico"

	// felixUser and cniUser are the admin PKI's users for Felix and the
	// CNI plugin; felixKubeconfig and cniKubeconfig their kubeconfigs.
	felixUser       = "kubinception:calico-felix"
	cniUser         = "kubinception:calico-cni"
	felixKubeconfig = "calico-felix"
	cniKubeconfig   = "calico-cni"
	// cniConfFile is the pod network's configuration in the CNI
	// configuration directory.
	cniConfFile = "10-kubinception.conflist"
	// calicoFieldOwner is the server-side apply field manager of the
	// Calico objects Up applies.
	calicoFieldOwner = "kubinception-admin"
)

// hostCNIPlugins are the machine's CNI plugins (Debian's
// containernetworking-plugins) the pod network uses besides Calico's:
// IPAM, hostPorts, and the loopback every sandbox gets.
var hostCNIPlugins = []string{"host-local", "portmap", "loopback"}

// calicoParams shape the Calico objects of the admin cluster.
func calicoParams(c Config) calico.Params {
	return calico.Params{
		Namespace:  "kube-system",
		PodCIDRs:   []string{c.PodCIDR.String()},
		FelixUsers: []string{felixUser},
		CNIUsers:   []string{cniUser},
		Labels:     map[string]string{"app.kubernetes.io/managed-by": "kubinception"},
	}
}

// cniBinLinks maps each entry of the admin node's CNI bin dir to what it
// links to: the Calico binary, which acts as the CNI plugin when started
// as "calico", and the machine's plugins.
func cniBinLinks(c Config) map[string]string {
	links := map[string]string{"calico": c.Binaries.Calico}
	for _, name := range hostCNIPlugins {
		links[name] = filepath.Join(nodeconfig.DefaultCNIBinDir, name)
	}
	return links
}

// ensureCNIBinDir fills the admin node's CNI bin dir with cniBinLinks and
// removes anything else from it. containerd reads one bin dir; a
// directory of our own keeps Calico's plugin out of the machine's.
func ensureCNIBinDir(c Config) error {
	dir := c.paths().CNIBin()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	links := cniBinLinks(c)
	for name, target := range links {
		if _, err := os.Stat(target); err != nil {
			return fmt.Errorf("CNI plugin %s: %w", name, err)
		}
		path := filepath.Join(dir, name)
		if cur, err := os.Readlink(path); err == nil && cur == target {
			continue
		}
		tmp := path + ".new"
		_ = os.Remove(tmp)
		if err := os.Symlink(target, tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if _, ok := links[e.Name()]; !ok {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// clearCNIConfig removes from the CNI configuration directory whatever is
// not the current pod network configuration, and that too unless the
// node's daemons still run from an earlier Up: the configuration is
// written again once Felix polices the pod network (writeCNIConfig).
// A node whose pods still run on the bridge network of earlier versions
// must be taken down first: its pods would be left on a network nothing
// removes.
func (cl *Cluster) clearCNIConfig() error {
	dir := cl.Config.paths().CNIConf()
	want, err := renderCNIConfig(cl.Config)
	if err != nil {
		return err
	}
	running := cl.files().PID("supervisor") != 0
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		data, _ := os.ReadFile(path)
		if running && e.Name() == cniConfFile && string(data) == want {
			continue
		}
		if running && strings.Contains(string(data), `"type": "bridge"`) {
			return fmt.Errorf("the admin node's pods run on the bridge network of an earlier kubinception (%s); "+
				"the pod network is now Calico's: run `kubinception admin down`, then `kubinception admin up`", path)
		}
		if err := os.Remove(path); err != nil {
			return err
		}
	}
	return nil
}

// writeCNIConfig writes the pod network's configuration; containerd then
// reports the network ready and the kubelet starts pods on it.
func (cl *Cluster) writeCNIConfig() error {
	conf, err := renderCNIConfig(cl.Config)
	if err != nil {
		return err
	}
	return writeIfChanged(filepath.Join(cl.Config.paths().CNIConf(), cniConfFile), []byte(conf), 0o644)
}

// calicoClient is a client of the admin cluster that knows CRDs.
func (cl *Cluster) calicoClient() (client.Client, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", cl.Config.paths().AdminKubeconfig())
	if err != nil {
		return nil, err
	}
	rc.Timeout = 30 * time.Second
	// Some 30 objects at once: client-go's default of 5 requests a
	// second would make them wait for seconds.
	rc.QPS, rc.Burst = 50, 100
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return client.New(rc, client.Options{Scheme: scheme})
}

// applyCalico applies Calico's objects to the admin cluster with
// server-side apply: the CRDs and roles, then, once every CRD is
// Established, the ClusterInformation and the IPPool.
func (cl *Cluster) applyCalico(ctx context.Context, timeout time.Duration) error {
	objs, err := calico.Objects(calicoParams(cl.Config))
	if err != nil {
		return err
	}
	c, err := cl.calicoClient()
	if err != nil {
		return err
	}
	apply := func(obj client.Object) error {
		//nolint:staticcheck // typed and unstructured objects with server-side apply
		if err := c.Patch(ctx, obj, client.Apply, client.ForceOwnership, client.FieldOwner(calicoFieldOwner)); err != nil {
			return fmt.Errorf("apply %s %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
		}
		return nil
	}
	var crds []string
	var resources []client.Object
	for _, obj := range objs {
		switch gvk := obj.GetObjectKind().GroupVersionKind(); {
		case gvk.Group == calico.Group:
			resources = append(resources, obj)
			continue
		case gvk.Kind == "CustomResourceDefinition":
			crds = append(crds, obj.GetName())
		}
		if err := apply(obj); err != nil {
			return err
		}
	}
	var pending []string
	err = waitFor(ctx, timeout, "Calico's CustomResourceDefinitions to be established", func() (bool, error) {
		pending = pending[:0]
		for _, name := range crds {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil || !established(crd) {
				pending = append(pending, name)
			}
		}
		return len(pending) == 0, nil
	}, func() string { return "not established: " + strings.Join(pending, ", ") })
	if err != nil {
		return err
	}
	for _, obj := range resources {
		// The API server may take a moment after Established to serve a
		// kind through discovery.
		var last error
		err := waitFor(ctx, 30*time.Second, "the admin API server to serve "+obj.GetObjectKind().GroupVersionKind().Kind, func() (bool, error) {
			last = apply(obj)
			if last != nil && meta.IsNoMatchError(last) {
				return false, nil
			}
			return true, last
		}, func() string { return fmt.Sprint(last) })
		if err != nil {
			return err
		}
	}
	return nil
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, cond := range crd.Status.Conditions {
		if cond.Type == apiextensionsv1.Established {
			return cond.Status == apiextensionsv1.ConditionTrue
		}
	}
	return false
}

// felixReadinessURL is Felix's readiness endpoint on the loopback.
var felixReadinessURL = "http://127.0.0.1:" + strconv.Itoa(calico.HealthPort) + "/readiness"

// felixReady reports whether Felix polices the pod network: in sync with
// the admin cluster and its dataplane programmed.
func felixReady(ctx context.Context) bool {
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, felixReadinessURL, nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return felixDataplaneReady(resp.StatusCode, string(body))
}

// felixDataplaneReady reads Felix's readiness answer. Felix also answers
// "ready" while it waits for the datastore to be initialised, before its
// dataplane even exists; only its dataplane's own report
// (InternalDataplaneMainLoop, ready once the first update is applied)
// says that policy is enforced.
func felixDataplaneReady(status int, body string) bool {
	if status != http.StatusOK {
		return false
	}
	for _, line := range strings.Split(body, "\n") {
		if strings.Contains(line, "InternalDataplaneMainLoop") {
			return strings.Contains(line, "reporting ready")
		}
	}
	return false
}

// startFelix adds Felix to the supervisor's spec, waits until it is ready
// and then writes the pod network's configuration. On timeout the error
// carries the end of Felix's log.
func (cl *Cluster) startFelix(ctx context.Context, timeout time.Duration) error {
	if _, err := cl.superviseDaemons(true); err != nil {
		return err
	}
	files := cl.files()
	err := waitFor(ctx, timeout, "Felix to report ready at "+felixReadinessURL, func() (bool, error) {
		return felixReady(ctx), nil
	}, func() string {
		return fmt.Sprintf("--- %s (pid %d), last lines of %s:\n%s", FelixProcess, files.PID(FelixProcess),
			files.LogPath(FelixProcess), tailFile(files.LogPath(FelixProcess), 30))
	})
	if err != nil {
		return err
	}
	return cl.writeCNIConfig()
}
