// Package backup copies one tenant's keys out of the shared datastore and
// back: a consistent snapshot of the tenant's prefix at one datastore
// revision, written as an encrypted, checksummed archive, and its restore
// into the same tenant (roll back) or another one (clone).
//
// An archive is two objects in a backup target: NAME.kvs.age, the keys
// (etcd's own KeyValue messages, each preceded by its length as a
// varint), gzip-compressed, then encrypted with age to the platform's
// backup key; and NAME.json, the Manifest (revision, object count, sizes,
// the leases the keys were attached to, and the SHA-256 of the encrypted
// object), which listing reads without the key.
//
// The package works on etcd client interfaces confined to one tenant
// (etcd's namespace wrappers), so the same code reads through the gateway's
// datastore client and in tests straight from a real etcd.
package backup
