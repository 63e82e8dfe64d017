// Package backupcontroller reconciles TenantBackups: it copies one
// TenantCluster's keys out of the shared datastore through the admin API
// of the tenant's Datastore gateway, encrypted to the platform's backup
// key, into the backup target, and deletes the archive with the
// TenantBackup.
package backupcontroller
