// Package tenantcluster reconciles TenantClusters: for each one it places
// the tenant in its datastore, exposes and certifies its API server, and
// runs its control plane as a Deployment in the admin cluster, in ordered,
// idempotent phases, writing status once per reconcile.
package tenantcluster
