// Package migration moves one tenant's keys from one datastore to another
// while the tenant runs, as IONOS moves clusters between etcds (a mirror
// and a revision bump), with the etcd gateway holding the tenant's writes
// for the short moment of the switch:
//
//  1. Copy: clear the tenant's prefix in the destination, then copy the
//     tenant's keys and leases from the source at one revision R (etcd's
//     own mirror.Syncer), keeping each lease's ID.
//  2. Catch up: apply the source's watch events from R+1, one destination
//     transaction per source revision, while the tenant keeps writing.
//     Meanwhile the destination's revision is raised to the source's.
//  3. Pause: every gateway replica of the source holds the tenant's writes
//     (gateway.PauseTenant) and confirms.
//  4. Finish: apply the events up to the pause's revision, raise the
//     destination's revision above every revision the tenant's clients
//     may have seen (its API servers' resourceVersions), and record the
//     tenant's compaction there at that revision, so a watch resumed from
//     an older revision is answered "compacted" and lists again.
//  5. Switch: one compare-and-swap turns the pause into a move
//     (gateway.ForwardTenant): the source's gateways forward the tenant to
//     the destination's gateway, held writes included. No API server
//     restarts.
//  6. Clean up: delete the tenant's keys, leases and records in the source.
//
// Any failure before the switch rolls back: the pause is removed and the
// destination's copy deleted. The phase is recorded (Recorder) before
// each step, so a migration interrupted anywhere resumes (after the
// switch) or rolls back (before it): at every moment exactly one
// datastore serves the tenant.
package migration
