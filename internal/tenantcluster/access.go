package tenantcluster

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/kubeconfig"
	"kubinception.dev/kubinception/internal/objects"
	"kubinception.dev/kubinception/internal/tenantbootstrap"
)

// Event reason of a revocation taking effect.
const reasonCustomerCredentialsRevoked = "CustomerCredentialsRevoked"

// accessRetry is how soon the phase looks again while the tenant's API
// server has not yet seen the new binding (its RBAC cache follows a watch:
// milliseconds).
const accessRetry = time.Second

// accessSettle is how long a reconcile asks the tenant's authorizer again
// for a customer binding it has just applied.
const accessSettle = 3 * time.Second

// reconcileCustomerAccess keeps customer credentials of the current
// generation, and only those, authorized inside the tenant. When the
// generation was raised (kubinception revoke kubeconfigs) it first takes
// every earlier generation's identities out of every binding in the
// tenant (bindings the tenant's admins made to them included: they would
// keep a revoked certificate working), then moves the operator's binding
// to the new group, checks that the tenant's API server authorizes the new
// group (so its RBAC cache holds every change before), and records the
// generation on the TenantCluster, which is what the CLI waits for.
func (r *Reconciler) reconcileCustomerAccess(ctx context.Context, s *scope) (ctrl.Result, error) {
	tc := s.tc
	log := ctrl.LoggerFrom(ctx)
	gen, err := kubeconfig.ParseGeneration(tc.Annotations, kubeconfig.AnnotationCustomerGeneration)
	if err != nil {
		s.fail(kv1.ConditionAddonsReady, kv1.ReasonInvalidSpec, err.Error())
		return ctrl.Result{}, reconcile.TerminalError(err)
	}
	authorized, err := kubeconfig.ParseGeneration(tc.Annotations, kubeconfig.AnnotationCustomerAuthorized)
	recorded := err == nil && tc.Annotations[kubeconfig.AnnotationCustomerAuthorized] != ""
	t, err := r.tenantClient(s)
	if err != nil {
		return ctrl.Result{}, err
	}
	revoking := !recorded || authorized != gen
	start := time.Now()
	var swept []string
	if revoking {
		if swept, err = sweepCustomerIdentities(ctx, t.c, gen); err != nil {
			s.fail(kv1.ConditionAddonsReady, kv1.ReasonTenantAPIUnreachable,
				fmt.Sprintf("cannot remove earlier customer credentials' bindings inside the tenant: %v; retrying", err))
			return ctrl.Result{RequeueAfter: endpointRetry}, nil
		}
	}
	//nolint:staticcheck // typed objects with server-side apply
	if err := t.c.Patch(ctx, tenantbootstrap.CustomerAdmins(gen), client.Apply, client.ForceOwnership, objects.FieldOwner); err != nil {
		s.fail(kv1.ConditionAddonsReady, kv1.ReasonTenantAPIUnreachable,
			fmt.Sprintf("cannot apply ClusterRoleBinding %s inside the tenant: %v; retrying", tenantbootstrap.CustomerAdminsBinding, err))
		return ctrl.Result{RequeueAfter: endpointRetry}, nil
	}
	if !revoking {
		return ctrl.Result{}, nil
	}
	// The tenant's authorizer learns of the binding from its own watch,
	// usually within milliseconds: ask again for a moment before
	// reporting a wait (and coming back in accessRetry).
	var allowed bool
	askErr := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, accessSettle, true, func(ctx context.Context) (bool, error) {
		var err error
		allowed, err = customerAuthorized(ctx, t.c, gen)
		return allowed, err
	})
	if askErr != nil && !wait.Interrupted(askErr) {
		return ctrl.Result{}, fmt.Errorf("ask the tenant whether %s is authorized: %w", kubeconfig.CustomerGroup(gen), askErr)
	}
	if !allowed {
		s.fail(kv1.ConditionAddonsReady, kv1.ReasonWaiting,
			fmt.Sprintf("waiting for the tenant's API server to authorize %s", kubeconfig.CustomerGroup(gen)))
		return ctrl.Result{RequeueAfter: accessRetry}, nil
	}
	// A merge patch of the one annotation: it leaves the object this
	// reconcile holds, and so its status patch, alone.
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, kubeconfig.AnnotationCustomerAuthorized, strconv.Itoa(gen))
	if err := r.Client.Patch(ctx, tc.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		return ctrl.Result{}, fmt.Errorf("record customer generation %d: %w", gen, err)
	}
	log.Info("customer credentials authorized", "generation", gen, "group", kubeconfig.CustomerGroup(gen), "removedSubjects", swept, "took", time.Since(start).Round(time.Millisecond).String())
	if recorded && gen > 1 {
		msg := fmt.Sprintf("customer credentials of generations 1 to %d are authorized for nothing; %s is cluster-admin", gen-1, kubeconfig.CustomerGroup(gen))
		if len(swept) > 0 {
			msg += "; removed from bindings: " + strings.Join(swept, ", ")
		}
		r.event(tc, corev1.EventTypeNormal, reasonCustomerCredentialsRevoked, "RevokeCustomerCredentials", msg)
	}
	return ctrl.Result{}, nil
}

// sweepCustomerIdentities removes every customer user and group of a
// generation other than gen from the tenant's RoleBindings and
// ClusterRoleBindings, deleting a binding left without subjects. It
// returns what it removed, as "Kind namespace/name: subject".
func sweepCustomerIdentities(ctx context.Context, c client.Client, gen int) ([]string, error) {
	var crbs rbacv1.ClusterRoleBindingList
	if err := c.List(ctx, &crbs); err != nil {
		return nil, err
	}
	var rbs rbacv1.RoleBindingList
	if err := c.List(ctx, &rbs); err != nil {
		return nil, err
	}
	var removed []string
	sweep := func(obj client.Object, subjects *[]rbacv1.Subject, what string) error {
		kept := (*subjects)[:0:0]
		var gone []string
		for _, sub := range *subjects {
			if g, ok := kubeconfig.CustomerIdentityGeneration(sub.Name); ok && g != gen && (sub.Kind == rbacv1.UserKind || sub.Kind == rbacv1.GroupKind) {
				gone = append(gone, sub.Name)
				continue
			}
			kept = append(kept, sub)
		}
		if len(gone) == 0 {
			return nil
		}
		for _, g := range gone {
			removed = append(removed, what+": "+g)
		}
		var err error
		if len(kept) == 0 {
			err = c.Delete(ctx, obj)
		} else {
			*subjects = kept
			err = c.Update(ctx, obj)
		}
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	for i := range crbs.Items {
		b := &crbs.Items[i]
		if b.Name == tenantbootstrap.CustomerAdminsBinding {
			// The operator's own: applying it for the new generation
			// replaces its subject in one write.
			continue
		}
		if err := sweep(b, &b.Subjects, "ClusterRoleBinding "+b.Name); err != nil {
			return removed, err
		}
	}
	for i := range rbs.Items {
		b := &rbs.Items[i]
		if err := sweep(b, &b.Subjects, "RoleBinding "+b.Namespace+"/"+b.Name); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// customerAuthorized asks the tenant's API server whether a credential of
// generation gen may do what only cluster-admin may (read Secrets in
// kube-system).
func customerAuthorized(ctx context.Context, c client.Client, gen int) (bool, error) {
	sar := &authzv1.SubjectAccessReview{
		Spec: authzv1.SubjectAccessReviewSpec{
			User:   kubeconfig.CustomerUser(gen, "probe"),
			Groups: []string{kubeconfig.CustomerGroup(gen), "system:authenticated"},
			ResourceAttributes: &authzv1.ResourceAttributes{
				Namespace: "kube-system", Verb: "get", Resource: "secrets",
			},
		},
	}
	if err := c.Create(ctx, sar); err != nil {
		return false, err
	}
	return sar.Status.Allowed, nil
}
