package tenantcluster

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/prometheus/client_golang/prometheus"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

func nodeAt(name, kubelet string) corev1.Node {
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{NodeInfo: corev1.NodeSystemInfo{KubeletVersion: kubelet}}}
}

func TestKubeletSkew(t *testing.T) {
	for _, tc := range []struct {
		name      string
		apiServer string
		kubelets  []string
		ok        bool
		naming    []string
	}{
		{"same version", "v1.35.4", []string{"v1.35.4"}, true, nil},
		{"one minor older, as right after a control-plane upgrade", "v1.35.4", []string{"v1.34.4"}, true, nil},
		{"three minors older", "v1.35.4", []string{"v1.32.9"}, true, nil},
		{"four minors older", "v1.35.4", []string{"v1.35.4", "v1.31.0"}, false, []string{"n1 runs kubelet v1.31.0, more than 3 minors older"}},
		{"newer than the API server", "v1.34.4", []string{"v1.35.4"}, false, []string{"n0 runs kubelet v1.35.4, newer than the API server"}},
		{"newer patch of the same minor", "v1.35.1", []string{"v1.35.4"}, true, nil},
		{"another major", "v1.35.4", []string{"v2.0.0"}, false, []string{"newer than the API server"}},
		{"no nodes", "v1.35.4", nil, true, nil},
		{"version not known yet", "", []string{"v1.35.4"}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var nodes []corev1.Node
			for i, k := range tc.kubelets {
				nodes = append(nodes, nodeAt("n"+string(rune('0'+i)), k))
			}
			res, outside := kubeletSkew(tc.apiServer, nodes)
			if want := len(tc.naming); outside != want {
				t.Errorf("%d nodes outside the skew, want %d", outside, want)
			}
			if res.ok != tc.ok {
				t.Fatalf("ok = %v (%s: %s), want %v", res.ok, res.reason, res.message, tc.ok)
			}
			wantReason := kv1.ReasonKubeletsWithinSkew
			if !tc.ok {
				wantReason = kv1.ReasonKubeletSkewUnsupported
			}
			if res.reason != wantReason {
				t.Errorf("reason = %s, want %s", res.reason, wantReason)
			}
			for _, n := range tc.naming {
				if !strings.Contains(res.message, n) {
					t.Errorf("message %q does not say %q", res.message, n)
				}
			}
		})
	}
}

func cpPod(version string, ready, terminating bool) corev1.Pod {
	p := corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{{Name: "kube-apiserver", Image: "registry.example.com:5000/kube-apiserver:" + version}}}}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
	if terminating {
		now := metav1.Now()
		p.DeletionTimestamp = &now
	}
	return p
}

func TestObserveRollout(t *testing.T) {
	dep := func(gen, observed int64, replicas, updated, available, unavailable int32) *appsv1.Deployment {
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: gen}, Status: appsv1.DeploymentStatus{
			ObservedGeneration: observed, Replicas: replicas, UpdatedReplicas: updated, AvailableReplicas: available, UnavailableReplicas: unavailable}}
	}
	for _, tc := range []struct {
		name          string
		dep           *appsv1.Deployment
		pods          []corev1.Pod
		serving, done bool
		describe      string
	}{
		{"template just changed: the controller has not seen it", dep(2, 1, 1, 1, 1, 0), []corev1.Pod{cpPod("v1.34.4", true, false)}, true, false, "1 pod at v1.34.4"},
		{"new pod surged, not ready", dep(2, 2, 2, 1, 1, 1), []corev1.Pod{cpPod("v1.34.4", true, false), cpPod("v1.35.4", false, false)}, true, false, "1 pod at v1.34.4"},
		{"new pod ready, old one not yet scaled down", dep(2, 2, 2, 1, 2, 0), []corev1.Pod{cpPod("v1.34.4", true, false), cpPod("v1.35.4", true, false)}, true, false, "1 pod at v1.34.4, 1 pod at v1.35.4"},
		{"old pod draining", dep(2, 2, 1, 1, 1, 0), []corev1.Pod{cpPod("v1.34.4", false, true), cpPod("v1.35.4", true, false)}, true, true, "1 pod at v1.35.4"},
		{"nothing ready", dep(1, 1, 1, 1, 0, 1), []corev1.Pod{cpPod("v1.34.4", false, false)}, false, false, "no ready pod"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := observeRollout(tc.dep, 1, tc.pods)
			if r.serving != tc.serving || r.done != tc.done {
				t.Errorf("serving, done = %v, %v; want %v, %v", r.serving, r.done, tc.serving, tc.done)
			}
			if got := r.describe(); got != tc.describe {
				t.Errorf("describe = %q, want %q", got, tc.describe)
			}
		})
	}
}

func TestUpgradeState(t *testing.T) {
	mixed := rollout{versions: map[string]int{"v1.34.4": 1, "v1.35.4": 1}}
	for _, tc := range []struct {
		name               string
		spec, recorded     string
		done, wasUpgrading bool
		ok                 bool
		reason             string
	}{
		{"rolling", "v1.35.4", "v1.34.4", false, true, true, kv1.ReasonRollingControlPlane},
		{"rolled, addons follow", "v1.35.4", "v1.35.4", true, true, true, kv1.ReasonUpdatingAddons},
		{"addons done", "v1.35.4", "v1.35.4", true, false, false, kv1.ReasonVersionCurrent},
		{"a roll that changes no version is no upgrade", "v1.35.4", "v1.35.4", false, false, false, kv1.ReasonVersionCurrent},
		{"first rollout is no upgrade", "v1.35.4", "", false, false, false, kv1.ReasonVersionCurrent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := upgradeState(tc.spec, tc.recorded, tc.done, tc.wasUpgrading, mixed)
			if res.ok != tc.ok || res.reason != tc.reason {
				t.Errorf("= %v/%s (%s), want %v/%s", res.ok, res.reason, res.message, tc.ok, tc.reason)
			}
		})
	}
}

func TestVersionMetrics(t *testing.T) {
	tc := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "versions"}}
	tc.Status.Version = "v1.34.4"
	recordVersion(tc, false)
	tc.Status.Version = "v1.35.4"
	recordVersion(tc, true)
	if got := series(t, runningVersion); len(got) != 1 || got["v1.35.4"] != 1 {
		t.Errorf("version_info series %v, want v1.35.4 alone: the old version's is dropped", got)
	}
	if got := series(t, upgradeInProgress); got[""] != 1 {
		t.Errorf("upgrading %v, want 1", got)
	}
	forgetVersion(tc)
	if n := len(series(t, runningVersion)) + len(series(t, upgradeInProgress)); n != 0 {
		t.Errorf("%d series left after the tenant is forgotten", n)
	}
}

// series reads a gauge vector's values by their "version" label (empty
// for vectors without it).
func series(t *testing.T, g *prometheus.GaugeVec) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(g)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			key := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "version" {
					key = l.GetValue()
				}
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}
