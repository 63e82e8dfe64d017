// Package objects writes the admin-cluster objects the operator owns: one
// server-side apply with one field owner, the managed-by label the
// operator's cache selects on, and the owner reference that deletes them
// with their TenantCluster or Datastore; the content hashes that roll pods
// when a mounted Secret changes; and the log line and Event that announce
// a condition's change.
package objects
