package admincluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/local/images"
	"kubinception.dev/kubinception/internal/local/supervisor"
	"kubinception.dev/kubinception/internal/pki"
)

// Cluster is the local admin cluster described by Config.
type Cluster struct {
	Config Config
	// expected maps each static pod's mirror-pod name to the config hash
	// its current manifest carries, once the manifests are written.
	expected map[string]string
	// Out receives progress meant for a person.
	Out io.Writer
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

func (cl *Cluster) now() time.Time {
	if cl.Now != nil {
		return cl.Now()
	}
	return time.Now()
}

func (cl *Cluster) printf(format string, args ...any) {
	if cl.Out != nil {
		fmt.Fprintf(cl.Out, format, args...)
	}
}

// step runs one named step of Up or Down and reports how long it took.
func (cl *Cluster) step(name string, fn func() error) error {
	start := time.Now()
	if err := fn(); err != nil {
		cl.printf("✗ %s: %v\n", name, err)
		return fmt.Errorf("%s: %w", name, err)
	}
	cl.printf("✓ %s (%s)\n", name, time.Since(start).Round(10*time.Millisecond))
	return nil
}

func (cl *Cluster) files() supervisor.Files {
	p := cl.Config.paths()
	return supervisor.Files{RunDir: p.Run(), LogDir: p.Logs()}
}

// RequireRoot fails unless the process runs as root, which starting
// containerd and the kubelet and changing iptables need.
func RequireRoot(command string) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s must run as root (it starts containerd and the kubelet, creates interfaces and changes iptables): run it with sudo", command)
	}
	return nil
}

// Up brings the admin cluster and the datastore up, or finishes bringing
// them up after an earlier attempt stopped half-way.
func (cl *Cluster) Up(ctx context.Context) error {
	c := cl.Config
	p := c.paths()
	if err := RequireRoot("kubinception admin up"); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return err
	}
	if c.Self == "" {
		return errors.New("the path of the kubinception binary is not known")
	}
	if c.Binaries.Calico == "" {
		return errors.New("the path of the Calico binary is not known")
	}
	steps := []struct {
		name string
		fn   func() error
	}{
		{"host packages", func() error { return ensurePackages(ctx, func(f string, a ...any) { cl.printf("  "+f+"\n", a...) }) }},
		{"ports", func() error {
			if cl.files().PID("supervisor") != 0 {
				return nil // ours are already listening
			}
			return checkPortsFree(c.NodeIP, c.allPorts())
		}},
		{"host network", func() error {
			for _, d := range []string{p.Manifests(), p.Config(), p.Logs(), p.Run(), p.State(), p.CNIConf(), p.PodLogs(), p.Images(), p.join("config", "kube-proxy")} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					return err
				}
			}
			if err := saveSysctls(c); err != nil {
				return err
			}
			if err := setNodeSysctls(); err != nil {
				return err
			}
			if err := ensureNodeInterface(ctx, c); err != nil {
				return err
			}
			return ensureFence(ctx, c)
		}},
		{"certificates and kubeconfigs", func() error { return ensurePKI(c, cl.now) }},
		{"configuration", func() error { return cl.writeConfigs() }},
		{"containerd and kubelet", func() error { return cl.startDaemons(ctx) }},
		{"images", func() error { return cl.importImages(ctx) }},
		{"admin API server", func() error { return cl.waitAPIServer(ctx, 5*time.Minute) }},
		{"Calico resources", func() error { return cl.applyCalico(ctx, 2*time.Minute) }},
		{"NetworkPolicy enforcer (Felix) and pod network", func() error { return cl.startFelix(ctx, 3*time.Minute) }},
		{"static pods", func() error { return cl.waitStaticPods(ctx, 5*time.Minute) }},
		{"node Ready", func() error { return cl.waitNodeReady(ctx, 3*time.Minute) }},
		{"datastores", func() error {
			for _, ds := range c.datastores() {
				if err := cl.ensureDatastore(ctx, ds, 3*time.Minute); err != nil {
					return fmt.Errorf("datastore %s: %w", ds.name(), err)
				}
			}
			return cl.forgetDatastores(ctx)
		}},
	}
	for _, s := range steps {
		if err := cl.step(s.name, s.fn); err != nil {
			return err
		}
	}
	cl.printf("\nadmin cluster is up\n  kubectl --kubeconfig %s get nodes\n", p.AdminKubeconfig())
	for _, ds := range c.datastores() {
		cl.printf("  datastore %s: %s\n", ds.name(), strings.Join(ds.endpoints(), ","))
	}
	return nil
}

// writeConfigs writes the daemons' configuration and the CNI bin dir. The
// pod network's configuration comes later, once Felix polices it.
func (cl *Cluster) writeConfigs() error {
	c := cl.Config
	p := c.paths()
	files := map[string]string{
		p.join("config", "containerd.toml"):           renderContainerdConfig(c),
		p.join("config", "kubelet.yaml"):              renderKubeletConfig(c),
		p.join("config", "kube-proxy", "config.yaml"): renderProxyConfig(c),
	}
	for path, data := range files {
		if err := writeIfChanged(path, []byte(data), 0o644); err != nil {
			return err
		}
	}
	if err := ensureCNIBinDir(c); err != nil {
		return err
	}
	return cl.clearCNIConfig()
}

// daemonSpec is what the supervisor runs: containerd, the kubelet and,
// with felix, Felix after them.
func (cl *Cluster) daemonSpec(felix bool) (supervisor.Spec, error) {
	c := cl.Config
	containerd, err := exec.LookPath("containerd")
	if err != nil {
		return supervisor.Spec{}, fmt.Errorf("containerd is not installed: %w", err)
	}
	spec := supervisor.Spec{Processes: []supervisor.Process{
		{Name: "containerd", Path: containerd, Args: containerdArgs(c), ReadySocket: c.paths().ContainerdSocket()},
		{Name: "kubelet", Path: c.Binaries.Component("kubelet"), Args: kubeletArgs(c)},
	}}
	if felix {
		spec.Processes = append(spec.Processes, felixProcess(c))
	}
	return spec, nil
}

// superviseDaemons writes the supervisor's spec and has a running
// supervisor re-read it; processes whose spec did not change keep running.
// It reports whether the supervisor runs.
func (cl *Cluster) superviseDaemons(felix bool) (bool, error) {
	spec, err := cl.daemonSpec(felix)
	if err != nil {
		return false, err
	}
	files := cl.files()
	if err := files.WriteSpec(spec); err != nil {
		return false, err
	}
	if files.PID("supervisor") == 0 {
		return false, nil
	}
	return true, supervisor.Reload(files)
}

// startDaemons hands containerd and the kubelet to the supervisor,
// starting it if it is not running, and waits for containerd's socket.
// Felix keeps running if it does (startFelix adds it once the admin API
// server holds what it needs; started earlier, it would only retry).
func (cl *Cluster) startDaemons(ctx context.Context) error {
	c := cl.Config
	p := c.paths()
	files := cl.files()
	running, err := cl.superviseDaemons(files.PID(FelixProcess) != 0)
	if err != nil {
		return err
	}
	if !running {
		if err := supervisor.Start(ctx, files, exec.Command(c.Self, "admin", "supervise", "--root", c.Root)); err != nil {
			return err
		}
	}
	return waitFor(ctx, 90*time.Second, "containerd to accept connections on "+p.ContainerdSocket(), func() (bool, error) {
		cri, err := dialCRI(p.ContainerdSocket())
		if err != nil {
			return false, nil
		}
		defer cri.Close()
		_, err = cri.containers(ctx)
		return err == nil, nil
	}, func() string {
		return tailFile(files.LogPath("containerd"), 20) + tailFile(files.LogPath("supervisor"), 10)
	})
}

// importImages packs the images and loads those containerd lacks, then
// writes the static pod manifests that run from them.
func (cl *Cluster) importImages(ctx context.Context) error {
	c := cl.Config
	p := c.paths()
	imgs, err := images.LocalImages(images.Sources{Binaries: c.Binaries, Kubinception: c.Self, OtherVersions: c.OtherVersions}, c.Images, filepath.Join(p.Images(), "layers"))
	if err != nil {
		return err
	}
	loaded, err := images.Importer{Address: p.ContainerdSocket(), Dir: p.Images()}.Import(ctx, imgs)
	if err != nil {
		return err
	}
	if len(loaded) > 0 {
		cl.printf("  imported %d images\n", len(loaded))
	}
	digests, err := images.ImageDigests(imgs)
	if err != nil {
		return err
	}
	return cl.writeManifests(digests)
}

// writeManifests writes the static pod manifests and removes stray ones.
func (cl *Cluster) writeManifests(digests map[string]string) error {
	dir := cl.Config.paths().Manifests()
	hash, err := hashTree(cl.Config.paths().PKI(), cl.Config.paths().Config())
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, sp := range staticPods(cl.Config, digests, hash) {
		data, err := sp.Marshal()
		if err != nil {
			return err
		}
		want[sp.File] = true
		if cl.expected == nil {
			cl.expected = map[string]string{}
		}
		cl.expected[sp.Pod.Name+"-"+cl.Config.NodeName] = sp.Pod.Annotations[ConfigHashAnnotation] + "/" + sp.Pod.Annotations[ImageDigestAnnotation]
		if err := writeIfChanged(filepath.Join(dir, sp.File), data, 0o644); err != nil {
			return err
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !want[e.Name()] {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	return nil
}

// hashTree hashes the names and contents of every file under dirs.
func hashTree(dirs ...string) (string, error) {
	h := sha256.New()
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s\x00%d\x00", path, len(data))
			h.Write(data)
			return nil
		})
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// Client returns a clientset for the admin cluster.
func (cl *Cluster) Client() (kubernetes.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", cl.Config.paths().AdminKubeconfig())
	if err != nil {
		return nil, err
	}
	rc.Timeout = 15 * time.Second
	return kubernetes.NewForConfig(rc)
}

func (cl *Cluster) waitAPIServer(ctx context.Context, timeout time.Duration) error {
	client, err := cl.Client()
	if err != nil {
		return err
	}
	return waitFor(ctx, timeout, "the admin API server to report ready", func() (bool, error) {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", nil
	}, cl.diagnostics)
}

// waitStaticPods waits until containerd runs every static pod from its
// current manifest: a ready sandbox carrying the manifest's annotations and
// a running container in it. It asks containerd, not the API server, whose
// mirror pods may still show the state from before a restart.
func (cl *Cluster) waitStaticPods(ctx context.Context, timeout time.Duration) error {
	cri, err := dialCRI(cl.Config.paths().ContainerdSocket())
	if err != nil {
		return err
	}
	defer cri.Close()
	var pending []string
	lastReport := time.Now()
	return waitFor(ctx, timeout, "the static pods to run their current manifests", func() (bool, error) {
		running, err := cri.runningPods(ctx, ConfigHashAnnotation, ImageDigestAnnotation)
		if err != nil {
			return false, nil
		}
		pending = pending[:0]
		for name, want := range cl.expected {
			if !running[name+"/"+want] {
				pending = append(pending, name)
			}
		}
		if len(pending) > 0 && time.Since(lastReport) > 15*time.Second {
			sort.Strings(pending)
			cl.printf("  still waiting for %s\n", strings.Join(pending, ", "))
			lastReport = time.Now()
		}
		return len(pending) == 0, nil
	}, func() string {
		return fmt.Sprintf("not yet running their current manifest: %v\n%s", pending, cl.diagnostics())
	})
}

func podReady(pod corev1.Pod) bool {
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (cl *Cluster) waitNodeReady(ctx context.Context, timeout time.Duration) error {
	client, err := cl.Client()
	if err != nil {
		return err
	}
	return waitFor(ctx, timeout, "node "+cl.Config.NodeName+" to be Ready", func() (bool, error) {
		node, err := client.CoreV1().Nodes().Get(ctx, cl.Config.NodeName, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				return cond.Status == corev1.ConditionTrue, nil
			}
		}
		return false, nil
	}, cl.diagnostics)
}

// DatastoreCredentials are the root credentials of the default datastore.
func (cl *Cluster) DatastoreCredentials() (datastore.Credentials, error) {
	return cl.datastoreCredentials(localDatastore{c: cl.Config})
}

// datastoreCredentials are the root credentials of one datastore.
func (cl *Cluster) datastoreCredentials(ds localDatastore) (datastore.Credentials, error) {
	d := pki.Dir{Path: ds.pkiDir()}
	ca, err := d.Load("ca")
	if err != nil {
		return datastore.Credentials{}, fmt.Errorf("datastore CA: %w", err)
	}
	root, err := d.Load("root")
	if err != nil {
		return datastore.Credentials{}, fmt.Errorf("datastore root certificate: %w", err)
	}
	return datastore.Credentials{Endpoints: ds.endpoints(), CAPEM: ca.CertPEM, CertPEM: root.CertPEM, KeyPEM: root.KeyPEM}, nil
}

// ensureDatastore waits for every member to be healthy, enables etcd
// authentication with a root user, and stores the root credential as a
// Secret in the admin cluster where the operator finds it.
func (cl *Cluster) ensureDatastore(ctx context.Context, ds localDatastore, timeout time.Duration) error {
	creds, err := cl.datastoreCredentials(ds)
	if err != nil {
		return err
	}
	cli, err := datastore.Connect(creds)
	if err != nil {
		return err
	}
	defer cli.Close()
	err = waitFor(ctx, timeout, fmt.Sprintf("%d healthy datastore members", DatastoreMembers), func() (bool, error) {
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		members, err := datastore.Health(hctx, cli)
		if err != nil || len(members) != DatastoreMembers {
			return false, nil
		}
		for _, m := range members {
			if !m.Healthy {
				return false, nil
			}
		}
		return true, nil
	}, cl.diagnostics)
	if err != nil {
		return err
	}
	// Kept out of the PKI directory, whose hash restarts the static pods.
	passwordPath := filepath.Join(cl.Config.paths().State(), ds.passwordFile())
	if old := filepath.Join(ds.pkiDir(), "root-password"); fileExists(old) {
		if err := os.Rename(old, passwordPath); err != nil {
			return err
		}
	}
	password, err := os.ReadFile(passwordPath)
	if errors.Is(err, os.ErrNotExist) {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		password = []byte(hex.EncodeToString(b))
		if err := pki.WriteFileAtomic(passwordPath, password, 0o600); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := datastore.EnableAuth(actx, cli, string(password)); err != nil {
		return err
	}
	return cl.storeDatastoreSecret(ctx, ds, creds, string(password))
}

func (cl *Cluster) storeDatastoreSecret(ctx context.Context, ds localDatastore, creds datastore.Credentials, password string) error {
	client, err := cl.Client()
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: SystemNamespace}}
	if _, err := client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", SystemNamespace, err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: ds.rootSecret(), Namespace: SystemNamespace,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "kubinception", DatastoreLabel: ds.name()}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{
			datastore.SecretCACert:   creds.CAPEM,
			datastore.SecretRootCert: creds.CertPEM,
			datastore.SecretRootKey:  creds.KeyPEM,
			"username":               []byte("root"),
			"password":               []byte(password),
			"endpoints":              []byte(strings.Join(creds.Endpoints, ",")),
		},
	}
	// The CA's certificate only: its key stays on this machine. Tenants'
	// datastore certificates come from each gateway's own CA.
	caSecret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: ds.caSecret(), Namespace: SystemNamespace,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "kubinception", DatastoreLabel: ds.name()}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{datastore.SecretCACert: creds.CAPEM},
	}
	secrets := client.CoreV1().Secrets(SystemNamespace)
	for _, s := range []*corev1.Secret{secret, caSecret} {
		if _, err := secrets.Create(ctx, s, metav1.CreateOptions{}); apierrors.IsAlreadyExists(err) {
			if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
				return fmt.Errorf("store %s: %w", s.Name, err)
			}
		} else if err != nil {
			return fmt.Errorf("store %s: %w", s.Name, err)
		}
	}
	return nil
}

// DatastoreEndpoints are the datastore's client URLs.
func (c Config) DatastoreEndpoints() []string { return datastoreEndpoints(c) }

// waitFor polls cond every half second until it holds, fails, or timeout
// passes; on timeout the error carries what diag prints.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error), diag func() string) error {
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(context.Context) (bool, error) { return cond() })
	if err == nil || !wait.Interrupted(err) {
		return err
	}
	msg := fmt.Sprintf("timed out after %s waiting for %s", timeout, what)
	if diag != nil {
		msg += "\n" + diag()
	}
	return errors.New(msg)
}

// diagnostics is what a person needs to see when the cluster does not come
// up: the daemons' state, the containers and the end of the logs.
func (cl *Cluster) diagnostics() string {
	var b strings.Builder
	files := cl.files()
	for _, name := range []string{"supervisor", "containerd", "kubelet", FelixProcess} {
		fmt.Fprintf(&b, "--- %s (pid %d), last lines of %s:\n%s", name, files.PID(name), files.LogPath(name), tailFile(files.LogPath(name), 15))
	}
	if cri, err := dialCRI(cl.Config.paths().ContainerdSocket()); err == nil {
		defer cri.Close()
		if cts, err := cri.containers(context.Background()); err == nil {
			fmt.Fprintf(&b, "--- containers:\n")
			for _, ct := range cts {
				fmt.Fprintf(&b, "  %s/%s %s: %s (restarts %d)\n", ct.Namespace, ct.Pod, ct.Name, ct.State, ct.Attempt)
			}
		}
	}
	logs, _ := filepath.Glob(filepath.Join(cl.Config.paths().PodLogs(), "*", "*", "*.log"))
	sort.Strings(logs)
	for _, l := range logs {
		fmt.Fprintf(&b, "--- %s:\n%s", l, tailFile(l, 8))
	}
	return b.String()
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// tailFile returns the last n lines of a file, or a note that it is missing.
func tailFile(path string, n int) string {
	return "  " + strings.ReplaceAll(supervisor.Tail(path, n), "\n", "\n  ") + "\n"
}

// ImportKubinceptionImage packs self as the kubinception image and imports
// it into the local containerd when it is not there, returning its
// reference.
func ImportKubinceptionImage(ctx context.Context, c Config, self string) (string, error) {
	p := c.paths()
	layerDir := filepath.Join(p.Images(), "layers")
	imgs, err := images.KubinceptionImage(self, c.Images, layerDir)
	if err != nil {
		return "", err
	}
	if _, err := (images.Importer{Address: p.ContainerdSocket(), Dir: p.Images()}).Import(ctx, imgs); err != nil {
		return "", err
	}
	return c.Images.Kubinception(), nil
}

// forgetDatastores deletes the Secrets of datastores this configuration
// no longer runs (an up with fewer --datastores), so that install does
// not create their Datastores again. Their data stays under the root.
func (cl *Cluster) forgetDatastores(ctx context.Context) error {
	client, err := cl.Client()
	if err != nil {
		return err
	}
	secrets := client.CoreV1().Secrets(SystemNamespace)
	list, err := secrets.List(ctx, metav1.ListOptions{LabelSelector: DatastoreLabel})
	if err != nil {
		return fmt.Errorf("list the datastores' Secrets: %w", err)
	}
	for _, s := range list.Items {
		if slices.Contains(cl.Config.DatastoreNames(), s.Labels[DatastoreLabel]) {
			continue
		}
		if err := secrets.Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %s: %w", s.Name, err)
		}
		cl.printf("  datastore %s is no longer run: deleted its Secret %s\n", s.Labels[DatastoreLabel], s.Name)
	}
	return nil
}
