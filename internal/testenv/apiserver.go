package testenv

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/scheme"
)

// APIServer is a real kube-apiserver with an etcd of its own, both from the
// component build, started by controller-runtime's envtest with the
// kubinception CRDs installed exactly as `kubinception install` renders
// them. Nothing else runs: no controller manager (so no garbage collection
// and no Deployment controller) and no kubelet. Service ClusterIPs are
// loopback addresses (LoopbackServiceCIDR).
type APIServer struct {
	// Config reaches the API server as a member of system:masters.
	Config *rest.Config
	// Client reads and writes through the API server, without a cache.
	Client client.WithWatch

	env *envtest.Environment
	log *syncBuffer
	// links is the directory of reaper links, if any.
	links string
}

// APIServerOptions shape a dedicated API server.
type APIServerOptions struct {
	// ServiceCIDR is the API server's --service-cluster-ip-range; empty
	// picks a random loopback /24 (see LoopbackServiceCIDR).
	ServiceCIDR string
}

// LoopbackServiceCIDR is a random /24 of 127.0.0.0/8. An API server whose
// Services get loopback ClusterIPs lets a test stand in for kube-proxy and
// a pod at once: a process listening on a Service's ClusterIP and port is
// reached where the operator expects the Service, without root. The
// random part keeps test packages running at the same time apart.
func LoopbackServiceCIDR() string {
	return fmt.Sprintf("127.%d.%d.0/24", 100+rand.IntN(150), rand.IntN(256))
}

// StartAPIServer starts an API server for tb alone and stops it when tb
// ends. Most tests share one per package instead (SharedAPIServer); a
// dedicated one is for a test that needs flags of its own.
func StartAPIServer(tb testing.TB, o APIServerOptions) *APIServer {
	tb.Helper()
	bins := FindBinaries(tb)
	shared.mu.Lock()
	reap := shared.main
	shared.mu.Unlock()
	a, err := startAPIServer(bins, o, reap)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			tb.Logf("kube-apiserver and etcd output (last %d bytes):\n%s", maxLog, a.log.String())
		}
		if err := a.stop(); err != nil {
			tb.Errorf("stop the API server: %v", err)
		}
	})
	return a
}

// The package's shared API server, started by the first test that asks for
// it and stopped by Main.
var shared struct {
	mu      sync.Mutex
	main    bool
	started bool
	a       *APIServer
	err     error
}

// SharedAPIServer returns the test package's API server, starting it on
// first use. The package's TestMain must be testenv.Main, which stops it
// after the last test: envtest's processes do not die with the test
// binary. Tests sharing it must keep to objects of their own (a namespace
// or names of their own).
func SharedAPIServer(tb testing.TB) *APIServer {
	tb.Helper()
	bins := FindBinaries(tb)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		tb.Fatal("SharedAPIServer needs `func TestMain(m *testing.M) { testenv.Main(m) }` in the test package, which stops the API server after the tests")
	}
	if !shared.started {
		shared.started = true
		shared.a, shared.err = startAPIServer(bins, APIServerOptions{}, true)
	}
	if shared.err != nil {
		tb.Fatalf("the shared API server did not start: %v", shared.err)
	}
	return shared.a
}

// Main runs the package's tests and then stops the shared API server, if
// a test started it; it exits with the tests' status. Under Main the
// processes of every API server die with the test binary, even when it is
// killed (see reaper.go).
func Main(m *testing.M) {
	execComponent()
	// Reconcilers log through controller-runtime; tests read status and
	// Events instead.
	ctrllog.SetLogger(logr.Discard())
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.a != nil {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "shared kube-apiserver and etcd output (last %d bytes):\n%s\n", maxLog, shared.a.log.String())
		}
		if err := shared.a.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop the shared API server: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// startTimeout bounds the start of each process; generous because the
// whole test suite shares two cores while it compiles.
const startTimeout = 90 * time.Second

// startAPIServer starts kube-apiserver and etcd; with reap, through the
// test binary, so that they die with it.
func startAPIServer(bins Binaries, o APIServerOptions, reap bool) (*APIServer, error) {
	crds, err := crds()
	if err != nil {
		return nil, err
	}
	var links string
	if reap {
		if links, err = os.MkdirTemp("", "testenv-bin-"); err != nil {
			return nil, err
		}
		if bins, err = reaperBinaries(bins, links); err != nil {
			os.RemoveAll(links)
			return nil, err
		}
	}
	log := &syncBuffer{}
	env := &envtest.Environment{
		Scheme:                   scheme.New(),
		CRDs:                     crds,
		ControlPlaneStartTimeout: startTimeout,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	f := false
	env.UseExistingCluster = &f
	api := env.ControlPlane.GetAPIServer()
	api.Path = bins.KubeAPIServer
	api.Out, api.Err = log, log
	if o.ServiceCIDR == "" {
		o.ServiceCIDR = LoopbackServiceCIDR()
	}
	api.Configure().Set("service-cluster-ip-range", o.ServiceCIDR)
	env.ControlPlane.Etcd = &envtest.Etcd{Path: bins.Etcd, Out: log, Err: log}
	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		removeLinks(links)
		return nil, fmt.Errorf("start kube-apiserver (%s) and etcd (%s): %w\n%s", bins.KubeAPIServer, bins.Etcd, err, log.String())
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		_ = env.Stop()
		removeLinks(links)
		return nil, err
	}
	return &APIServer{Config: cfg, Client: c, env: env, log: log, links: links}, nil
}

func (a *APIServer) stop() error {
	err := a.env.Stop()
	removeLinks(a.links)
	return err
}

func removeLinks(dir string) {
	if dir != "" {
		os.RemoveAll(dir)
	}
}

// crds are the CustomResourceDefinitions `kubinception install` applies.
func crds() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	objs, err := install.CRDs()
	if err != nil {
		return nil, err
	}
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, u := range objs {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, crd); err != nil {
			return nil, fmt.Errorf("CRD %s: %w", u.GetName(), err)
		}
		out = append(out, crd)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("install.CRDs returned no CRDs")
	}
	return out, nil
}

// maxLog bounds the process output kept for diagnostics.
const maxLog = 16 << 10

// syncBuffer keeps the last maxLog bytes the processes wrote.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if extra := b.buf.Len() - maxLog; extra > 0 {
		b.buf.Next(extra)
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Update reads obj, applies mutate and writes it back, failing the test on
// an error.
func (a *APIServer) Update(tb testing.TB, obj client.Object, mutate func()) {
	tb.Helper()
	if err := a.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
		tb.Fatal(err)
	}
	mutate()
	if err := a.Client.Update(context.Background(), obj); err != nil {
		tb.Fatal(err)
	}
}
