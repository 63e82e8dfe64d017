package tenantcluster

import (
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
)

// rollout is where the control-plane Deployment stands, read from its
// status and its pods.
type rollout struct {
	// serving: at least the wanted number of pods are available (old or
	// new), so the tenant's API is up.
	serving bool
	// done: the Deployment controller has seen the current template,
	// every pod runs it and is available, and no pod of an earlier
	// template is left (terminating pods, which no longer take requests,
	// are not counted).
	done bool
	// versions counts the ready, not terminating, pods by the version of
	// their API server.
	versions map[string]int
}

// observeRollout reads a rollout from the Deployment as applied (status
// included) and the tenant's control-plane pods.
func observeRollout(dep *appsv1.Deployment, want int32, pods []corev1.Pod) rollout {
	st := dep.Status
	r := rollout{
		serving:  st.AvailableReplicas >= want,
		versions: map[string]int{},
	}
	for i := range pods {
		p := &pods[i]
		if p.DeletionTimestamp != nil || !podReady(p) {
			continue
		}
		if v := apiServerVersion(p); v != "" {
			r.versions[v]++
		}
	}
	r.done = st.ObservedGeneration >= dep.Generation && st.UpdatedReplicas >= want &&
		st.Replicas == st.UpdatedReplicas && st.AvailableReplicas >= want && st.UnavailableReplicas == 0
	return r
}

// describe reads as "1 pod at v1.35.4, 1 pod at v1.34.4".
func (r rollout) describe() string {
	if len(r.versions) == 0 {
		return "no ready pod"
	}
	vs := make([]string, 0, len(r.versions))
	for v := range r.versions {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	parts := make([]string, 0, len(vs))
	for _, v := range vs {
		n := r.versions[v]
		unit := "pods"
		if n == 1 {
			unit = "pod"
		}
		parts = append(parts, fmt.Sprintf("%d %s at %s", n, unit, v))
	}
	return strings.Join(parts, ", ")
}

// apiServerVersion is the tag of the pod's kube-apiserver image.
func apiServerVersion(p *corev1.Pod) string {
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		if c.Name != "kube-apiserver" {
			continue
		}
		if i := strings.LastIndex(c.Image, ":"); i >= 0 && !strings.Contains(c.Image[i:], "/") {
			return c.Image[i+1:]
		}
	}
	return ""
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// upgradeState is the Upgrading condition for a tenant whose control
// plane has rolled (done) or not, given the version its status last
// recorded as running. An upgrade is under way while spec.version and
// status.version differ, and goes on, once the control plane runs the new
// version, until the addons phase has applied the addons at that version
// (addonsPending). A first rollout is not an upgrade.
func upgradeState(spec, recorded string, done, wasUpgrading bool, r rollout) result {
	switch {
	case recorded != "" && recorded != spec && !done:
		return result{ok: true, reason: kv1.ReasonRollingControlPlane, message: fmt.Sprintf("rolling the control plane from %s to %s (%s); each API server drains for %s before it stops, the addons follow once every pod runs %s",
			recorded, spec, r.describe(), controlplane.ShutdownDelay, spec)}
	case wasUpgrading || recorded != "" && recorded != spec:
		return result{ok: true, reason: kv1.ReasonUpdatingAddons, message: fmt.Sprintf("the control plane runs %s; updating kube-proxy, CoreDNS and the node configuration to it", spec)}
	}
	return result{reason: kv1.ReasonVersionCurrent, message: "the control plane and addons run " + spec}
}

// upgrading reports whether the tenant's Upgrading condition, as this
// reconcile found it, is True.
func upgrading(s *scope) bool {
	if res, ok := s.results[kv1.ConditionUpgrading]; ok {
		return res.ok
	}
	c := meta.FindStatusCondition(s.tc.Status.Conditions, kv1.ConditionUpgrading)
	return c != nil && c.Status == metav1.ConditionTrue
}

// kubeletSkew checks every node's kubelet against the API server's
// version: a kubelet may not be newer than the API server, nor more than
// three minors older (Kubernetes' version skew policy). It returns the
// reason and a message naming each node outside the skew and what to do,
// and how many nodes are outside it.
func kubeletSkew(apiServer string, nodes []corev1.Node) (result, int) {
	api, err := version.ParseGeneric(apiServer)
	if err != nil {
		return result{ok: true, reason: kv1.ReasonKubeletsWithinSkew, message: fmt.Sprintf("the API server's version %q is not known yet", apiServer)}, 0
	}
	var bad []string
	for i := range nodes {
		n := &nodes[i]
		kv := n.Status.NodeInfo.KubeletVersion
		k, err := version.ParseGeneric(kv)
		if err != nil {
			continue
		}
		switch {
		case k.Major() != api.Major() || k.Minor() > api.Minor():
			bad = append(bad, fmt.Sprintf("%s runs kubelet %s, newer than the API server", n.Name, kv))
		case api.Minor()-k.Minor() > 3:
			bad = append(bad, fmt.Sprintf("%s runs kubelet %s, more than 3 minors older than the API server", n.Name, kv))
		}
	}
	if len(bad) == 0 {
		return result{ok: true, reason: kv1.ReasonKubeletsWithinSkew, message: fmt.Sprintf("all %d nodes' kubelets are within the supported skew of %s", len(nodes), apiServer)}, 0
	}
	sort.Strings(bad)
	return result{reason: kv1.ReasonKubeletSkewUnsupported, message: fmt.Sprintf("%s (API server %s): upgrade those nodes (docs/operations.md, Upgrading nodes; kubinception node upgrade for local workers) or replace them",
		strings.Join(bad, "; "), apiServer)}, len(bad)
}

// record records a condition's outcome.
func (s *scope) record(condition string, res result) { s.results[condition] = res }
