package controlplane

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// A rollout must never fail a request: the API server drains for the
// shutdown delay, answers late requests with a retry, and the kubelet
// waits long enough for the longest request before it kills the pod.
func TestAPIServerDrainsWithinTheGracePeriod(t *testing.T) {
	for _, tc := range []struct {
		name      string
		extraArgs []string
		want      time.Duration
	}{
		{"default request timeout", nil, ShutdownDelay + DefaultRequestTimeout + shutdownMargin},
		{"raised request timeout", []string{"--request-timeout=3m"}, ShutdownDelay + 3*time.Minute + shutdownMargin},
		{"unparsable timeout keeps the default", []string{"--request-timeout=soon"}, ShutdownDelay + DefaultRequestTimeout + shutdownMargin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testParams()
			p.ExtraArgs = tc.extraArgs
			args := APIServerArgs(p)
			for _, want := range []string{"--shutdown-delay-duration=" + ShutdownDelay.String(), "--shutdown-send-retry-after=true"} {
				if !slices.Contains(args, want) {
					t.Errorf("API server args lack %s: %v", want, args)
				}
			}
			dep := Deployment(p)
			got := dep.Spec.Template.Spec.TerminationGracePeriodSeconds
			if got == nil || time.Duration(*got)*time.Second != tc.want {
				t.Fatalf("terminationGracePeriodSeconds = %v, want %s", got, tc.want)
			}
		})
	}
}

// The rollout surges one new pod and removes an old one only once the new
// one is available, so there is always a ready API server.
func TestRolloutKeepsEveryReplicaAvailable(t *testing.T) {
	for _, replicas := range []int32{1, 3} {
		p := testParams()
		p.Replicas = replicas
		ru := Deployment(p).Spec.Strategy.RollingUpdate
		if ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 || ru.MaxSurge == nil || ru.MaxSurge.IntValue() < 1 {
			t.Fatalf("replicas %d: rolling update %+v, want maxUnavailable 0 and a surge", replicas, ru)
		}
	}
}

// The controller manager and scheduler never run a newer minor than the
// API server they reach: all three come from the pod's one version, and
// the API server is a sidecar the kubelet starts (and passes its startup
// probe) before them.
func TestComponentsOfAPodShareTheAPIServersVersion(t *testing.T) {
	for _, version := range []string{"v1.34.4", "v1.35.4"} {
		p := testParams()
		p.Version = version
		spec := Deployment(p).Spec.Template.Spec
		var apiserver string
		for _, c := range spec.InitContainers {
			if c.Name == "kube-apiserver" {
				if c.RestartPolicy == nil || c.StartupProbe == nil {
					t.Fatalf("kube-apiserver is not a sidecar with a startup probe: %+v", c)
				}
				apiserver = c.Image
			}
		}
		if !strings.HasSuffix(apiserver, ":"+version) {
			t.Fatalf("kube-apiserver image %q is not %s", apiserver, version)
		}
		for _, c := range spec.Containers {
			if c.Name == "tunnel" {
				continue // kubinception's own, no Kubernetes client in it
			}
			if !strings.HasSuffix(c.Image, ":"+version) {
				t.Errorf("%s runs %s beside an API server at %s", c.Name, c.Image, version)
			}
		}
	}
}
