package install

import (
	"context"
	"fmt"
	"io"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// FieldOwner is the server-side apply field manager of an installation.
const FieldOwner = "kubinception-install"

// Apply installs the objects Render returned with server-side apply: the
// CRDs first, waiting for them to be established before creating objects
// of their kinds, then the rest in order, then waits for the operator to
// be available.
func Apply(ctx context.Context, c client.Client, objs []*unstructured.Unstructured, out io.Writer) error {
	var crds, rest []*unstructured.Unstructured
	for _, u := range objs {
		if u.GetKind() == "CustomResourceDefinition" {
			crds = append(crds, u)
		} else {
			rest = append(rest, u)
		}
	}
	for _, crd := range crds {
		if err := apply(ctx, c, crd); err != nil {
			return fmt.Errorf("apply CRD %s: %w", crd.GetName(), err)
		}
		fmt.Fprintf(out, "✓ CustomResourceDefinition %s\n", crd.GetName())
	}
	for _, crd := range crds {
		if err := waitEstablished(ctx, c, crd.GetName()); err != nil {
			return err
		}
	}
	for _, u := range rest {
		if err := apply(ctx, c, u); err != nil {
			return fmt.Errorf("apply %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		fmt.Fprintf(out, "✓ %s %s\n", u.GetKind(), u.GetName())
	}
	return waitAvailable(ctx, c, out)
}

func apply(ctx context.Context, c client.Client, u *unstructured.Unstructured) error {
	// Apply changes the object it is given; the rendered one stays as it was.
	u = u.DeepCopy()
	//nolint:staticcheck // unstructured server-side apply
	return c.Patch(ctx, u, client.Apply, client.ForceOwnership, client.FieldOwner(FieldOwner))
}

func waitEstablished(ctx context.Context, c client.Client, name string) error {
	return poll(ctx, 60*time.Second, "CRD "+name+" to be established", func() (bool, error) {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("apiextensions.k8s.io/v1")
		u.SetKind("CustomResourceDefinition")
		if err := c.Get(ctx, types.NamespacedName{Name: name}, u); err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, cond := range conds {
			m, _ := cond.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
}

func waitAvailable(ctx context.Context, c client.Client, out io.Writer) error {
	var last string
	err := poll(ctx, 3*time.Minute, "the operator to be available", func() (bool, error) {
		dep := &appsv1.Deployment{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: Namespace, Name: Name}, dep); err != nil {
			return false, nil
		}
		last = fmt.Sprintf("%d/%d replicas available", dep.Status.AvailableReplicas, *dep.Spec.Replicas)
		return dep.Status.ObservedGeneration >= dep.Generation && dep.Status.UpdatedReplicas == *dep.Spec.Replicas &&
			dep.Status.AvailableReplicas == *dep.Spec.Replicas && dep.Status.UnavailableReplicas == 0, nil
	})
	if err != nil {
		var pods corev1.PodList
		_ = c.List(ctx, &pods, client.InNamespace(Namespace), client.MatchingLabels{"app.kubernetes.io/name": Name})
		for _, p := range pods.Items {
			for _, cs := range p.Status.ContainerStatuses {
				if cs.State.Waiting != nil {
					last += fmt.Sprintf("; pod %s: %s %s", p.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
				}
			}
		}
		return fmt.Errorf("%w (%s)", err, last)
	}
	fmt.Fprintf(out, "✓ operator available (%s)\n", last)
	return nil
}

func poll(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(context.Context) (bool, error) { return cond() })
	if wait.Interrupted(err) {
		return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
	}
	return err
}
