package frontdoor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
)

// Options configure a front-door replica.
type Options struct {
	// Address the proxy listens on; HTTPAddress serves /healthz,
	// /readyz (routes loaded) and /metrics.
	Address, HTTPAddress string
	// Namespace holds the routes and Leases.
	Namespace string
	// Identity names this replica in the Leases it renews.
	Identity string
	// HoldTimeout, ActiveEvery: see Server.
	HoldTimeout, ActiveEvery time.Duration
	// ShutdownDelay keeps accepting after the stop signal, while
	// /readyz fails, so that load balancers and kube-proxy stop sending
	// new connections before the listener closes; DrainTimeout then
	// bounds the wait for open connections.
	ShutdownDelay, DrainTimeout time.Duration
	Log                         logr.Logger
}

// Run serves until ctx ends: it watches the routes (read only), renews
// activity Leases and proxies connections.
func Run(ctx context.Context, cs kubernetes.Interface, o Options) error {
	if o.Namespace == "" || o.Identity == "" {
		return errors.New("--namespace and --identity (the pod's name) are required")
	}
	reg := prometheus.NewRegistry()
	srv := &Server{
		Activity: &LeaseActivity{Leases: cs.CoordinationV1().Leases(o.Namespace), Identity: o.Identity,
			Every: orDefault(o.ActiveEvery, 20*time.Second), Clock: clock.RealClock{}, Log: o.Log},
		HoldTimeout: o.HoldTimeout, ActiveEvery: o.ActiveEvery, Log: o.Log, Metrics: NewMetrics(reg),
	}
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(o.Namespace),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = LabelRoute + "=true" }))
	inf := factory.Core().V1().ConfigMaps()
	rebuild := func() {
		list, err := inf.Lister().List(labels.Everything())
		if err != nil {
			o.Log.Error(err, "list routes")
			return
		}
		srv.SetTable(BuildTable(list))
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { rebuild() },
		UpdateFunc: func(any, any) { rebuild() },
		DeleteFunc: func(any) { rebuild() },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	var synced, draining atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if draining.Load() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		if !synced.Load() {
			http.Error(w, "routes not loaded yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	hs := &http.Server{Addr: o.HTTPAddress, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.Log.Error(err, "health and metrics server")
		}
	}()
	defer hs.Close()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return ctx.Err()
	}
	rebuild()
	synced.Store(true)
	ln, err := net.Listen("tcp", o.Address)
	if err != nil {
		return err
	}
	o.Log.Info("front door serving", "address", o.Address, "namespace", o.Namespace)
	serveCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	go func() {
		<-ctx.Done()
		draining.Store(true)
		o.Log.Info("stopping: still accepting while endpoints are withdrawn", "delay", o.ShutdownDelay.String())
		time.Sleep(o.ShutdownDelay)
		stop()
	}()
	if err := srv.Serve(serveCtx, ln); err != nil {
		return err
	}
	if open := srv.Drain(orDefault(o.DrainTimeout, 20*time.Second)); open > 0 {
		o.Log.Info("stopped with connections open", "open", open)
	}
	return nil
}
