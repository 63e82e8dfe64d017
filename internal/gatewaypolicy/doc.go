// Package gatewaypolicy gives a running gateway each tenant's limits from
// the admin cluster: the TenantClusters placed on its Datastore and the
// Datastore's defaults, read from an informer cache so a request never
// waits on the admin API. A certificate whose tenant has no TenantCluster
// on this Datastore is refused.
package gatewaypolicy
