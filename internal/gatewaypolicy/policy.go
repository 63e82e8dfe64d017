package gatewaypolicy

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/gateway"
	"kubinception.dev/kubinception/internal/scheme"
)

// uidIndex indexes TenantClusters by UID: the gateway knows a tenant by the
// UID in its certificate.
const uidIndex = "metadata.uid"

// Policy reads limits from an informer cache of TenantClusters and
// Datastores.
type Policy struct {
	Datastore string
	Reader    client.Reader
}

// Limits implements gateway.Policy: the tenant's limits in force
// (datastore.TenantLimits), or gateway.ErrUnknownTenant when no
// TenantCluster on this Datastore has that UID.
func (p *Policy) Limits(tenantID string) (gateway.Limits, error) {
	ctx := context.Background()
	var list kv1.TenantClusterList
	if err := p.Reader.List(ctx, &list, client.MatchingFields{uidIndex: tenantID}); err != nil {
		return gateway.Limits{}, fmt.Errorf("look up tenant %s: %w", tenantID, err)
	}
	var tc *kv1.TenantCluster
	for i := range list.Items {
		if onDatastore(&list.Items[i], p.Datastore) {
			tc = &list.Items[i]
		}
	}
	if tc == nil {
		return gateway.Limits{}, gateway.ErrUnknownTenant
	}
	ds := &kv1.Datastore{}
	if err := p.Reader.Get(ctx, types.NamespacedName{Name: p.Datastore}, ds); err != nil {
		return gateway.Limits{}, fmt.Errorf("read Datastore %s: %w", p.Datastore, err)
	}
	l := datastore.TenantLimits(tc, ds)
	return gateway.Limits{QuotaBytes: l.QuotaBytes, RequestsPerSecond: float64(l.RequestsPerSecond), BytesPerSecond: float64(l.BytesPerSecond)}, nil
}

// onDatastore reports whether this Datastore's gateways serve tenant tc:
// the Datastore its spec names, the one serving it (status), and, during
// and after a move, the move's source, whose gateways forward the tenant
// to the destination until its control plane reaches the destination
// directly.
func onDatastore(tc *kv1.TenantCluster, ds string) bool {
	name := tc.Spec.Datastore.Name
	if name == "" {
		name = "default"
	}
	if name == ds || tc.Status.Datastore.Name == ds {
		return true
	}
	m := tc.Status.Migration
	return m != nil && (m.Source == ds || m.Destination == ds)
}

// Start builds the informer cache of TenantClusters and Datastores, starts
// it and waits until it has synced; it stops with ctx.
func Start(ctx context.Context, rc *rest.Config, datastoreName string) (*Policy, error) {
	c, err := cache.New(rc, cache.Options{Scheme: scheme.New(), ByObject: map[client.Object]cache.ByObject{
		&kv1.TenantCluster{}: {},
		&kv1.Datastore{}:     {},
	}})
	if err != nil {
		return nil, fmt.Errorf("create cache: %w", err)
	}
	if err := c.IndexField(ctx, &kv1.TenantCluster{}, uidIndex, func(o client.Object) []string { return []string{string(o.GetUID())} }); err != nil {
		return nil, fmt.Errorf("index TenantClusters by UID: %w", err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		return nil, fmt.Errorf("the cache of TenantClusters and Datastores did not sync")
	}
	return &Policy{Datastore: datastoreName, Reader: c}, nil
}
