package frontdoor

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"
)

// TestLeaseActivity renews a tenant's Lease on use at most once per
// interval, and always for a wake.
func TestLeaseActivity(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset(&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "ns.a", Namespace: Namespace}})
	leases := cs.CoordinationV1().Leases(Namespace)
	clock := clocktesting.NewFakeClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
	a := &LeaseActivity{Leases: leases, Identity: "frontdoor-0", Every: 20 * time.Second, Clock: clock, Log: logr.Discard()}
	renewedAt := func(want time.Time) {
		t.Helper()
		var got time.Time
		err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 5*time.Second, true, func(ctx context.Context) (bool, error) {
			l, err := leases.Get(ctx, "ns.a", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			got = LastActivity(l)
			return got.Equal(want), nil
		})
		if err != nil {
			t.Fatalf("renew time %v, want %v", got, want)
		}
	}
	t0 := clock.Now()
	a.Touch(ctx, "ns.a", false)
	renewedAt(t0)

	clock.Step(5 * time.Second)
	a.Touch(ctx, "ns.a", false) // within the interval: not written
	time.Sleep(50 * time.Millisecond)
	renewedAt(t0)

	a.Touch(ctx, "ns.a", true) // a wake is always written
	renewedAt(t0.Add(5 * time.Second))

	clock.Step(20 * time.Second)
	a.Touch(ctx, "ns.a", false)
	renewedAt(t0.Add(25 * time.Second))

	// A Lease the operator has not created is not created here.
	a.Touch(ctx, "ns.missing", true)
	time.Sleep(50 * time.Millisecond)
	if _, err := leases.Get(ctx, "ns.missing", metav1.GetOptions{}); err == nil {
		t.Error("the front door created a Lease")
	}
}
