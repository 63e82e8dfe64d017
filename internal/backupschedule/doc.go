// Package backupschedule makes a TenantCluster's scheduled backups
// (spec.backup): a TenantBackup per slot of its cron schedule, named for
// the slot so that a repeated or interrupted reconcile never makes two,
// and the pruning of scheduled backups beyond keep or older than maxAge.
// Slots missed while the operator was down are made up by one backup.
// A backup that a running TenantRestore reads is never pruned, and no
// backup starts while the cluster is being restored.
package backupschedule
