package tenantcluster_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/testenv"
)

// TestKubernetesServiceEndpoints runs against the tenant's real API
// server, started with the Deployment's arguments (so without its own
// endpoint reconciler): the operator writes the kubernetes Service's
// Endpoints and EndpointSlice with the address and port the API server
// advertises, and writes them again at the next pass when they are
// deleted.
func TestKubernetesServiceEndpoints(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	tc := e.tenant(t, "endpoints", nil)
	_, tenant := e.ready(t, tc)

	dep := &appsv1.Deployment{}
	if err := e.api.Client.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: cp.DeploymentName(tc.Name)}, dep); err != nil {
		t.Fatal(err)
	}
	var advertised, port string
	var reconciler bool
	for _, c := range slices.Concat(dep.Spec.Template.Spec.InitContainers, dep.Spec.Template.Spec.Containers) {
		if c.Name != "kube-apiserver" {
			continue
		}
		for _, a := range c.Args {
			if v, ok := strings.CutPrefix(a, "--advertise-address="); ok {
				advertised = v
			}
			if v, ok := strings.CutPrefix(a, "--secure-port="); ok {
				port = v
			}
			reconciler = reconciler || a == "--endpoint-reconciler-type=none"
		}
	}
	if advertised == "" || port == "" || !reconciler {
		t.Fatalf("the API server's arguments: advertise %q, port %q, endpoint reconciler none %v", advertised, port, reconciler)
	}
	want := []string{"Endpoints " + advertised + ":" + port, "EndpointSlice kubernetes " + advertised + ":" + port}

	endpoints := func() []string {
		t.Helper()
		got, err := testenv.KubernetesServiceEndpoints(ctx, tenant.Client)
		if err != nil {
			return []string{err.Error()}
		}
		return got
	}
	if got := endpoints(); !slices.Equal(got, want) {
		t.Fatalf("after Ready, the kubernetes Service's endpoints are %q, want %q", got, want)
	}

	if err := tenant.Client.CoreV1().Endpoints("default").Delete(ctx, "kubernetes", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.mustReconcile(t, tc)
	if got := endpoints(); !slices.Equal(got, want) {
		t.Fatalf("a pass after the Endpoints were deleted: %q, want %q", got, want)
	}
}
