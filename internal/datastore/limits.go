package datastore

import (
	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

// Limits are what one tenant may use of its datastore: its quota and its
// sustained request and byte (written and read) rates. Zero means unlimited.
type Limits struct {
	QuotaBytes        int64
	RequestsPerSecond int64
	BytesPerSecond    int64
}

// TenantLimits are a tenant's limits in force: its own settings where it
// has them, the Datastore's defaults otherwise. The operator reports them
// in status and the gateway enforces them, both from this one function.
func TenantLimits(tc *kv1.TenantCluster, ds *kv1.Datastore) Limits {
	var l Limits
	if q := tc.Spec.Datastore.QuotaBytes; q != nil {
		l.QuotaBytes = q.Value()
	} else if q := ds.Spec.DefaultQuotaBytes; q != nil {
		l.QuotaBytes = q.Value()
	}
	d := ds.Spec.Gateway.DefaultLimits
	rates := kv1.TenantRateLimits{RequestsPerSecond: d.RequestsPerSecond, BytesPerSecond: d.BytesPerSecond}
	if o := tc.Spec.Datastore.Limits; o != nil {
		if o.RequestsPerSecond != nil {
			rates.RequestsPerSecond = o.RequestsPerSecond
		}
		if o.BytesPerSecond != nil {
			rates.BytesPerSecond = o.BytesPerSecond
		}
	}
	if rates.RequestsPerSecond != nil {
		l.RequestsPerSecond = int64(*rates.RequestsPerSecond)
	}
	if rates.BytesPerSecond != nil {
		l.BytesPerSecond = rates.BytesPerSecond.Value()
	}
	return l
}
