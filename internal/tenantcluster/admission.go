package tenantcluster

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
)

// startAdmission bounds how many control planes start from nothing at
// once (a create, or a wake from hibernation). An API server's start is
// CPU-bound (about 3 CPU-seconds of bootstrap: storage, RBAC roles,
// priority levels); twenty of them started together on a small admin
// node share the CPU so evenly that none is ready before nearly all are,
// and their probes, watch caches and datastore writes compete besides. A
// few at a time finish one after another, and the first tenants are
// usable long before the last.
//
// A slot is held from the moment the control plane is applied until its
// first pod is available, the tenant is deleted or hibernated, or the
// slot grows stale (a control plane that never becomes available, such
// as one whose image is missing, must not hold the others back). A
// control plane that already runs pods (a rollout, an operator restart
// finding it starting) is never held back: it takes a slot beyond the
// limit, so the count stays true.
type startAdmission struct {
	// limit is the most control planes starting at once; 0 is no limit.
	limit int
	// stale is how long a slot counts without its control plane becoming
	// available.
	stale time.Duration

	mu      sync.Mutex
	holders map[types.UID]time.Time
	// waiting are the tenants refused a slot, by when they first asked,
	// so slots go to them in order and each is reconciled when one frees.
	waiting map[types.UID]waiter
}

type waiter struct {
	ref   types.NamespacedName
	since time.Time
}

func newStartAdmission(limit int, stale time.Duration) *startAdmission {
	return &startAdmission{limit: limit, stale: stale, holders: map[types.UID]time.Time{}, waiting: map[types.UID]waiter{}}
}

// admit says whether uid may start its control plane now, taking a slot
// if so. force takes a slot whatever the count (a control plane already
// started). A tenant refused is remembered and is next in line, oldest
// first, when a slot frees.
func (a *startAdmission) admit(uid types.UID, ref types.NamespacedName, now time.Time, force bool) bool {
	if a == nil || a.limit <= 0 {
		return true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.holders[uid]; ok {
		return true
	}
	a.expire(now)
	w, queued := a.waiting[uid]
	if !queued {
		w = waiter{ref: ref, since: now}
	}
	if force || len(a.holders) < a.limit && a.ahead(uid, w.since) < a.limit-len(a.holders) {
		a.holders[uid] = now
		delete(a.waiting, uid)
		return true
	}
	a.waiting[uid] = w
	return false
}

// ahead counts the tenants waiting longer than since (uid aside): a slot
// goes to the longest waiting first.
func (a *startAdmission) ahead(uid types.UID, since time.Time) int {
	n := 0
	for other, w := range a.waiting {
		if other != uid && w.since.Before(since) {
			n++
		}
	}
	return n
}

// expire drops slots held longer than stale.
func (a *startAdmission) expire(now time.Time) {
	for uid, at := range a.holders {
		if a.stale > 0 && now.Sub(at) >= a.stale {
			delete(a.holders, uid)
		}
	}
}

// release frees uid's slot (or its place in line) and returns the
// tenants that may now get one, oldest first, to be reconciled.
func (a *startAdmission) release(uid types.UID, now time.Time) []types.NamespacedName {
	if a == nil || a.limit <= 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	_, held := a.holders[uid]
	delete(a.holders, uid)
	delete(a.waiting, uid)
	a.expire(now)
	if !held {
		return nil
	}
	return a.next()
}

// next are the waiting tenants that the free slots could take, oldest
// first.
func (a *startAdmission) next() []types.NamespacedName {
	free := a.limit - len(a.holders)
	if free <= 0 || len(a.waiting) == 0 {
		return nil
	}
	ws := make([]waiter, 0, len(a.waiting))
	for _, w := range a.waiting {
		ws = append(ws, w)
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].since.Before(ws[j].since) })
	out := make([]types.NamespacedName, 0, free)
	for _, w := range ws[:min(free, len(ws))] {
		out = append(out, w.ref)
	}
	return out
}

// starting is how many slots are held, and how many tenants wait.
func (a *startAdmission) starting(now time.Time) (held, waiting int) {
	if a == nil {
		return 0, 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expire(now)
	return len(a.holders), len(a.waiting)
}

// retryAfter is when a refused tenant should ask again at the latest,
// should no release reach it: when the oldest slot turns stale.
func (a *startAdmission) retryAfter(now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	wait := a.stale
	for _, at := range a.holders {
		wait = min(wait, at.Add(a.stale).Sub(now))
	}
	return max(wait, time.Second)
}

// startAdmissionOnce makes the reconciler's startAdmission on first use,
// from MaxStartingControlPlanes.
type startAdmissionOnce struct {
	once sync.Once
	a    *startAdmission
}

func (r *Reconciler) admission() *startAdmission {
	r.starts.once.Do(func() { r.starts.a = newStartAdmission(r.MaxStartingControlPlanes, startSlotStale) })
	return r.starts.a
}

// startSlotStale is how long a start slot counts without its control
// plane becoming available: well beyond a start on a busy node (tens of
// seconds), short enough that a control plane that cannot start holds
// the others back only briefly.
const startSlotStale = 3 * time.Minute

// admitStart lets the control plane phase go on when the tenant's
// control plane runs, already starts, or may start now; otherwise it
// records why the tenant waits and returns when to look again (a slot
// freeing reconciles it sooner).
func (r *Reconciler) admitStart(ctx context.Context, s *scope) (ctrl.Result, error) {
	starts := r.admission()
	if starts.limit <= 0 {
		return ctrl.Result{}, nil
	}
	tc := s.tc
	cur := &appsv1.Deployment{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: controlplane.DeploymentName(tc.Name)}, cur)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	started := err == nil && (cur.Spec.Replicas == nil || *cur.Spec.Replicas > 0)
	if started && cur.Status.AvailableReplicas > 0 {
		return ctrl.Result{}, nil
	}
	if starts.admit(tc.UID, types.NamespacedName{Namespace: tc.Namespace, Name: tc.Name}, s.now, started) {
		return ctrl.Result{}, nil
	}
	held, waiting := starts.starting(s.now)
	s.fail(kv1.ConditionControlPlaneAvailable, kv1.ReasonWaitingToStart,
		fmt.Sprintf("%d control planes are starting, as many as this operator starts at once (its --max-starting-control-planes); this one starts when one of them is up (%d waiting in all)", held, waiting))
	return ctrl.Result{RequeueAfter: starts.retryAfter(s.now)}, nil
}

// releaseStart gives up the tenant's start slot, if it holds one, and
// reconciles the tenants next in line.
func (r *Reconciler) releaseStart(s *scope) {
	for _, ref := range r.admission().release(s.tc.UID, s.now) {
		r.enqueue(ref)
	}
}
