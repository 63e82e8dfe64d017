package datastore

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

func TestTenantLimits(t *testing.T) {
	q := func(s string) *resource.Quantity { v := resource.MustParse(s); return &v }
	ds := &kv1.Datastore{Spec: kv1.DatastoreSpec{DefaultQuotaBytes: q("2Gi"),
		Gateway: kv1.GatewaySpec{DefaultLimits: kv1.DefaultRateLimits{RequestsPerSecond: ptr.To[int32](500), BytesPerSecond: q("32Mi")}}}}
	tests := []struct {
		name string
		spec kv1.DatastorePlacement
		want Limits
	}{
		{"defaults", kv1.DatastorePlacement{}, Limits{QuotaBytes: 2 << 30, RequestsPerSecond: 500, BytesPerSecond: 32 << 20}},
		{"own quota", kv1.DatastorePlacement{QuotaBytes: q("20Mi")}, Limits{QuotaBytes: 20 << 20, RequestsPerSecond: 500, BytesPerSecond: 32 << 20}},
		{"own request rate only", kv1.DatastorePlacement{Limits: &kv1.TenantRateLimits{RequestsPerSecond: ptr.To[int32](50)}},
			Limits{QuotaBytes: 2 << 30, RequestsPerSecond: 50, BytesPerSecond: 32 << 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := &kv1.TenantCluster{Spec: kv1.TenantClusterSpec{Datastore: tt.spec}}
			if got := TenantLimits(tc, ds); got != tt.want {
				t.Fatalf("TenantLimits = %+v, want %+v", got, tt.want)
			}
		})
	}
}
