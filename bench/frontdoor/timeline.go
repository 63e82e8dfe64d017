package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"kubinception.dev/kubinception/bench/internal/benchkit"
	cp "kubinception.dev/kubinception/internal/controlplane"
)

// timeline records when a wake's steps were first seen, from the first
// request on: the Deployment scaled up, the pod created and scheduled,
// each container running, started and ready, the pod Ready, and its
// address ready in the Service's EndpointSlices. The admin API is read
// every 25 ms, so a step is seen at most that much (plus a read) late.
type timeline struct {
	mu    sync.Mutex
	t0    time.Time
	seen  map[string]time.Duration
	order []string
}

// step records name the first time it is seen.
func (tl *timeline) step(name string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if _, ok := tl.seen[name]; ok {
		return
	}
	tl.seen[name] = time.Since(tl.t0)
	tl.order = append(tl.order, name)
}

// watchWake follows the tenant's control plane until ctx ends.
func watchWake(ctx context.Context, c client.Client, t0 time.Time) *timeline {
	tl := &timeline{t0: t0, seen: map[string]time.Duration{}}
	go func() {
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			tl.observe(ctx, c)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return tl
}

func (tl *timeline) observe(ctx context.Context, c client.Client) {
	d := &appsv1.Deployment{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "default", Name: cp.DeploymentName(name)}, d); err == nil && d.Spec.Replicas != nil && *d.Spec.Replicas > 0 {
		tl.step("Deployment scaled up")
	}
	pods, err := controlPlanePods(ctx, c)
	if err != nil {
		return
	}
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		tl.step("pod created")
		if p.Spec.NodeName != "" {
			tl.step("pod scheduled")
		}
		for _, s := range slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses) {
			if s.State.Running != nil {
				tl.step(s.Name + " running")
			}
			if s.Started != nil && *s.Started {
				tl.step(s.Name + " started")
			}
			if s.Ready {
				tl.step(s.Name + " ready")
			}
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				tl.step("pod Ready")
			}
		}
	}
	var eps discoveryv1.EndpointSliceList
	if err := c.List(ctx, &eps, client.InNamespace("default"), client.MatchingLabels{discoveryv1.LabelServiceName: cp.ServiceName(name)}); err != nil {
		return
	}
	for _, s := range eps.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				tl.step("address ready in the Service")
			}
		}
	}
}

// snapshot is the steps seen so far, in order.
func (tl *timeline) snapshot() ([]string, map[string]time.Duration) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	seen := make(map[string]time.Duration, len(tl.seen))
	for k, v := range tl.seen {
		seen[k] = v
	}
	return slices.Clone(tl.order), seen
}

// timelineTable is the median time of each step over the wakes, in the
// order the steps were first seen, with every wake's own time.
func timelineTable(tls []*timeline, answered []time.Duration) string {
	var order []string
	times := map[string][]time.Duration{}
	for _, tl := range tls {
		o, seen := tl.snapshot()
		for _, s := range o {
			if !slices.Contains(order, s) {
				order = append(order, s)
			}
			times[s] = append(times[s], seen[s])
		}
	}
	order = append(order, "request answered")
	times["request answered"] = answered
	slices.SortStableFunc(order, func(a, b string) int { return int(benchkit.Median(times[a]) - benchkit.Median(times[b])) })
	var b strings.Builder
	b.WriteString("| step (first seen) | median since the request | each wake |\n|---|---|---|\n")
	for _, s := range order {
		var each []string
		for _, d := range times[s] {
			each = append(each, secs(d))
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", s, secs(benchkit.Median(times[s])), strings.Join(each, ", "))
	}
	return b.String()
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
