package frontdoor

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/utils/clock"
)

// LeaseActivity reports activity by renewing the tenant's Lease in
// Namespace, which the operator created: spec.renewTime is the last time
// the front door saw the tenant used. Renewals are at most one per Every
// per tenant, except those asking for a wake, which are always written.
type LeaseActivity struct {
	Leases   coordclient.LeaseInterface
	Identity string
	Every    time.Duration
	Clock    clock.Clock
	Log      logr.Logger

	mu   sync.Mutex
	last map[string]time.Time
}

// Touch renews the lease in the background.
func (a *LeaseActivity) Touch(ctx context.Context, lease string, wake bool) {
	now := a.Clock.Now()
	a.mu.Lock()
	if a.last == nil {
		a.last = map[string]time.Time{}
	}
	if !wake && now.Sub(a.last[lease]) < a.Every {
		a.mu.Unlock()
		return
	}
	a.last[lease] = now
	a.mu.Unlock()
	go func() {
		if err := a.renew(context.WithoutCancel(ctx), lease, now); err != nil {
			a.Log.Info("cannot renew a tenant's activity lease", "lease", lease, "error", err.Error())
			// Try again with the next connection.
			a.mu.Lock()
			delete(a.last, lease)
			a.mu.Unlock()
		}
	}()
}

// renew sets the lease's renew time to now unless it is later already
// (another replica renewed it), retrying on conflicts.
func (a *LeaseActivity) renew(ctx context.Context, name string, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for range 5 {
		l, err := a.Leases.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if l.Spec.RenewTime != nil && !l.Spec.RenewTime.Time.Before(now) {
			return nil
		}
		renewed := metav1.NewMicroTime(now)
		l.Spec.RenewTime = &renewed
		l.Spec.HolderIdentity = &a.Identity
		_, err = a.Leases.Update(ctx, l, metav1.UpdateOptions{})
		if !apierrors.IsConflict(err) {
			return err
		}
	}
	return nil
}

// LastActivity is when a lease says its tenant was last used (zero when
// never).
func LastActivity(l *coordinationv1.Lease) time.Time {
	if l == nil || l.Spec.RenewTime == nil {
		return time.Time{}
	}
	return l.Spec.RenewTime.Time
}
