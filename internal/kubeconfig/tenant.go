package kubeconfig

import (
	"context"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/pki"
)

// GetTenant reads a TenantCluster, saying how to find one when it is not
// there.
func GetTenant(ctx context.Context, c client.Client, key types.NamespacedName) (*kv1.TenantCluster, error) {
	tc := &kv1.TenantCluster{}
	if err := c.Get(ctx, key, tc); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("no tenant cluster %s in namespace %s (kubinception get clusters -A lists them)", key.Name, key.Namespace)
		}
		return nil, err
	}
	return tc, nil
}

// Generations are a tenant's customer generations: the one new
// credentials get, and the one the operator has authorized (0: none yet).
func Generations(tc *kv1.TenantCluster) (current, authorized int, err error) {
	if current, err = ParseGeneration(tc.Annotations, AnnotationCustomerGeneration); err != nil {
		return 0, 0, err
	}
	if tc.Annotations[AnnotationCustomerAuthorized] == "" {
		return current, 0, nil
	}
	authorized, err = ParseGeneration(tc.Annotations, AnnotationCustomerAuthorized)
	return current, authorized, err
}

// IssueForTenant signs a customer kubeconfig of the tenant's current
// generation with the tenant's CA, once the operator has authorized that
// generation inside the tenant (waiting up to waitFor for it), so the
// kubeconfig works when it is handed out. Every read goes through c: the
// CLI passes the admin's client, the console one that impersonates the
// signed-in user, so only who may read the tenant's CA Secret gets a
// kubeconfig.
func IssueForTenant(ctx context.Context, c client.Client, key types.NamespacedName, ttl time.Duration, now time.Time, waitFor time.Duration) (*Customer, error) {
	var tc *kv1.TenantCluster
	var gen, authorized int
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, waitFor, true, func(ctx context.Context) (bool, error) {
		var err error
		if tc, err = GetTenant(ctx, c, key); err != nil {
			return false, err
		}
		if gen, authorized, err = Generations(tc); err != nil {
			return false, err
		}
		return authorized >= gen && tc.Status.Endpoint != "", nil
	})
	if wait.Interrupted(err) {
		switch {
		case tc.Status.Endpoint == "" || authorized == 0:
			return nil, fmt.Errorf("tenant cluster %s has no customer access yet: wait until it is Ready (kubinception get clusters)", key.Name)
		default:
			return nil, fmt.Errorf("tenant cluster %s: the operator has not authorized customer generation %d yet (it authorizes %d): is it running, and is the tenant paused?", key.Name, gen, authorized)
		}
	}
	if err != nil {
		return nil, err
	}
	secret := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: cp.PKISecretName(key.Name)}, secret); err != nil {
		return nil, fmt.Errorf("tenant cluster %s: read its CA: %w", key.Name, err)
	}
	ca, err := pki.ParseKeyPair(secret.Data[cp.FileCA], secret.Data[cp.FileCAKey])
	if err != nil {
		return nil, fmt.Errorf("tenant cluster %s: its CA in Secret %s: %w", key.Name, secret.Name, err)
	}
	return IssueCustomer(CustomerRequest{
		ClusterName: key.Name, Server: tc.Status.Endpoint, CA: ca, Generation: gen, TTL: ttl, Now: now,
	})
}

// RaiseGeneration revokes every customer kubeconfig of the tenant issued
// so far: it raises the tenant's customer generation by one (with the
// object's resource version, so two revocations at once both count) and
// returns the new generation. The operator carries it out; it has done so
// once the authorized generation reaches the returned one.
func RaiseGeneration(ctx context.Context, c client.Client, key types.NamespacedName) (int, error) {
	for attempt := 0; ; attempt++ {
		tc, err := GetTenant(ctx, c, key)
		if err != nil {
			return 0, err
		}
		if tc.Spec.Paused {
			return 0, fmt.Errorf("tenant cluster %s is paused: the operator changes nothing, so a revocation would not take effect; set spec.paused to false first", key.Name)
		}
		if !tc.DeletionTimestamp.IsZero() {
			return 0, fmt.Errorf("tenant cluster %s is being deleted", key.Name)
		}
		gen, _, err := Generations(tc)
		if err != nil {
			return 0, err
		}
		next := gen + 1
		patch := client.MergeFromWithOptions(tc.DeepCopy(), client.MergeFromWithOptimisticLock{})
		if tc.Annotations == nil {
			tc.Annotations = map[string]string{}
		}
		tc.Annotations[AnnotationCustomerGeneration] = strconv.Itoa(next)
		err = c.Patch(ctx, tc, patch)
		if err == nil {
			return next, nil
		}
		if !apierrors.IsConflict(err) || attempt == 4 {
			return 0, fmt.Errorf("raise the customer generation of %s: %w", key.Name, err)
		}
	}
}
