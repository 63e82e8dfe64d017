package install_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/testenv"
)

// TestApplyRendered applies what Render returns to a real API server, as
// `kubinception install` does: every object must be accepted (the
// Datastore by the CRD's rules too), and Apply must return once the
// operator's Deployment reports itself available. The API server runs no
// controllers, so the test plays the Deployment controller's part.
func TestApplyRendered(t *testing.T) {
	a := testenv.SharedAPIServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	o := install.DefaultOptions()
	o.Image = "registry.example.com/kubinception:v0.1.0"
	o.Replicas = 2
	o.Datastore = &kv1.DatastoreSpec{
		Endpoints:     []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379"},
		CASecretRef:   kv1.SecretReference{Namespace: install.Namespace, Name: "etcd-ca"},
		RootSecretRef: kv1.SecretReference{Namespace: install.Namespace, Name: "etcd-root"},
	}
	objs, err := install.Render(o)
	if err != nil {
		t.Fatal(err)
	}

	available := make(chan error, 1)
	go func() { available <- markAvailable(ctx, a, o.Replicas) }()
	var out bytes.Buffer
	if err := install.Apply(ctx, a.Client, objs, &out); err != nil {
		t.Fatalf("Apply: %v\n%s", err, out.String())
	}
	if err := <-available; err != nil {
		t.Fatal(err)
	}
	for _, u := range objs {
		if !strings.Contains(out.String(), u.GetKind()+" "+u.GetName()) {
			t.Errorf("Apply did not report %s %s:\n%s", u.GetKind(), u.GetName(), out.String())
		}
	}

	ds := &kv1.Datastore{}
	if err := a.Client.Get(ctx, types.NamespacedName{Name: install.DefaultDatastoreName}, ds); err != nil {
		t.Fatalf("the Datastore default: %v", err)
	}
	if got := strings.Join(ds.Spec.Endpoints, ","); got != "https://10.0.0.1:2379,https://10.0.0.2:2379" {
		t.Errorf("Datastore endpoints = %s", got)
	}

	// A second Apply changes nothing and succeeds: install is idempotent.
	out.Reset()
	if err := install.Apply(ctx, a.Client, objs, &out); err != nil {
		t.Fatalf("second Apply: %v\n%s", err, out.String())
	}
}

// markAvailable waits for the operator's Deployment and reports it
// available, as the Deployment controller would.
func markAvailable(ctx context.Context, a *testenv.APIServer, replicas int32) error {
	return wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		dep := &appsv1.Deployment{}
		if err := a.Client.Get(ctx, types.NamespacedName{Namespace: install.Namespace, Name: install.Name}, dep); err != nil {
			return false, nil
		}
		dep.Status = appsv1.DeploymentStatus{
			ObservedGeneration: dep.Generation, Replicas: replicas, UpdatedReplicas: replicas,
			ReadyReplicas: replicas, AvailableReplicas: replicas,
		}
		if err := a.Client.Status().Update(ctx, dep); err != nil {
			return false, nil
		}
		return true, nil
	})
}
