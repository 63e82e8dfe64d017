// Package migrationcontroller moves a TenantCluster between Datastores
// when spec.datastore.name changes, with the migration package: it
// records the migration's phase in status.migration before each step, so
// a restarted operator finishes a migration that had switched and rolls
// back one that had not, and it sets status.datastore.name to the
// destination once the tenant is served there (the TenantCluster
// reconciler then rolls the control plane onto the destination's gateway;
// the source's gateways forward the tenant until it has).
package migrationcontroller
