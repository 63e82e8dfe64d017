package gatewaydeploy

import (
	"slices"
	"strings"
	"testing"
)

func TestEndpointAndUsageURL(t *testing.T) {
	ep := Endpoint("10.201.0.9")
	if ep != "https://10.201.0.9:2379" {
		t.Fatalf("Endpoint = %s", ep)
	}
	if got := UsageURLFor(ep); got != "http://10.201.0.9:8080/usage" {
		t.Fatalf("UsageURLFor(%s) = %s", ep, got)
	}
}

func TestDeploymentMountsNoCAKey(t *testing.T) {
	p := Params{Datastore: "default", Namespace: "kubinception-system", Image: "kubinception.local/kubinception:x", Replicas: 2,
		DatastoreEndpoints: []string{"https://10.199.0.1:23790", "https://10.199.0.1:23791"}, SecretHash: "h"}
	dep := Deployment(p)
	if *dep.Spec.Replicas != 2 {
		t.Fatalf("replicas = %d", *dep.Spec.Replicas)
	}
	pod := dep.Spec.Template.Spec
	if len(pod.Volumes) != 1 || pod.Volumes[0].Secret.SecretName != SecretName("default") || SecretName("default") == CASecretName("default") {
		t.Fatalf("the gateway pod must mount only its own Secret, never the tenant CA's key: %+v", pod.Volumes)
	}
	args := pod.Containers[0].Args
	if !slices.Contains(args, "--datastore-endpoints=https://10.199.0.1:23790,https://10.199.0.1:23791") || args[0] != "gateway" {
		t.Fatalf("args = %v", args)
	}
	for _, a := range args {
		if strings.Contains(a, FileCAKey) {
			t.Fatalf("an argument names the CA key: %s", a)
		}
	}
	if dep.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Fatal("a rollout may take a ready gateway away before its successor is ready")
	}
}
