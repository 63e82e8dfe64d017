package tenantcluster

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestReadyAPIServer(t *testing.T) {
	// ready is the API server container's; the pod itself is never
	// ready here (its tunnel container is not): a pod's API server is
	// dialed as soon as its container is ready.
	pod := func(ip string, ready, terminating bool) corev1.Pod {
		p := corev1.Pod{
			Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{
					{Name: "kube-apiserver", Ports: []corev1.ContainerPort{{Name: "https", ContainerPort: 31234}}},
				},
				Containers: []corev1.Container{
					{Name: "tunnel", Ports: []corev1.ContainerPort{{Name: "tunnel", ContainerPort: 8132}}},
				},
			},
			Status: corev1.PodStatus{PodIP: ip},
		}
		p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "kube-apiserver", Ready: ready}}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "tunnel", Ready: false}}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
		if terminating {
			now := metav1.Now()
			p.DeletionTimestamp = &now
		}
		return p
	}
	for _, tt := range []struct {
		name string
		pods []corev1.Pod
		want string
	}{
		{"no pod", nil, ""},
		{"not ready", []corev1.Pod{pod("10.0.0.1", false, false)}, ""},
		{"ready without an address yet", []corev1.Pod{pod("", true, false)}, ""},
		{"terminating is skipped for a ready one", []corev1.Pod{pod("10.0.0.1", true, true), pod("10.0.0.2", true, false)}, "10.0.0.2:31234"},
		{"the API server's port, not the tunnel's", []corev1.Pod{pod("10.0.0.3", true, false)}, "10.0.0.3:31234"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := readyAPIServer(tt.pods); got != tt.want {
				t.Errorf("readyAPIServer = %q, want %q", got, tt.want)
			}
		})
	}
}
