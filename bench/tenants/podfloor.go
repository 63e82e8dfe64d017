package main

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cp "kubinception.dev/kubinception/internal/controlplane"
)

// podFloor creates, beside tenant name's running control plane, a Pod that
// runs only its kube-apiserver (the same image, flags, certificates,
// resources and startup probe, with the same labels, so the same network
// policies, less the ReplicaSet's), and returns the time from its creation
// to its Ready condition, first seen by polling the admin API every 25 ms.
// That is what starting the API server in a pod costs on this admin node
// (scheduling, sandbox and pod network, the container, the probe's
// period) with nothing of the operator's: the floor of a tenant's start
// that runs its API server as a pod. The API server finds the tenant's
// default roles and priority classes written (the tenant started once), so
// its start-up hooks have less to do than on a tenant's first start.
func (b *bench) podFloor(name string) (time.Duration, error) {
	var dep appsv1.Deployment
	if err := b.c.Get(b.ctx, types.NamespacedName{Namespace: "default", Name: cp.DeploymentName(name)}, &dep); err != nil {
		return 0, fmt.Errorf("read %s's control-plane Deployment: %w", name, err)
	}
	spec := dep.Spec.Template.Spec.DeepCopy()
	var api *corev1.Container
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name == "kube-apiserver" {
			api = &spec.InitContainers[i]
		}
	}
	if api == nil {
		return 0, fmt.Errorf("%s's control-plane pod has no kube-apiserver init container", name)
	}
	api.RestartPolicy = nil
	spec.Containers = []corev1.Container{*api}
	spec.InitContainers = nil
	pod := &corev1.Pod{Spec: *spec}
	pod.Name, pod.Namespace = name+"-floor", "default"
	pod.Labels = cp.Labels(name)
	start := time.Now()
	if err := b.c.Create(b.ctx, pod); err != nil {
		return 0, fmt.Errorf("create the pod floor: %w", err)
	}
	defer b.deletePod(pod)
	var took time.Duration
	err := wait.PollUntilContextTimeout(b.ctx, 25*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := b.c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, nil
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				took = time.Since(start)
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return 0, fmt.Errorf("the pod floor %s was not Ready within 5 minutes: %w (conditions %v)", pod.Name, err, pod.Status.Conditions)
	}
	return took, nil
}

// deletePod deletes pod at once and waits until it is gone.
func (b *bench) deletePod(pod *corev1.Pod) {
	if err := b.c.Delete(b.ctx, pod, client.GracePeriodSeconds(0)); err != nil && !apierrors.IsNotFound(err) {
		b.logf("delete pod %s: %v", pod.Name, err)
		return
	}
	err := wait.PollUntilContextTimeout(b.ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		return apierrors.IsNotFound(b.c.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{})), nil
	})
	if err != nil {
		b.logf("pod %s not gone within 2 minutes: %v", pod.Name, err)
	}
}
