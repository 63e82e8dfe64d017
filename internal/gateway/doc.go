// Package gateway is the etcd gateway: the only door tenant API servers have
// to the shared datastore. It serves the etcd v3 gRPC API (KV, Watch,
// Lease, Maintenance.Status) over TLS, identifies each tenant by the client
// certificate it presents (issued by a tenant CA only the gateway trusts,
// common name tenant-<uid>), and confines it to its prefix /tenants/<uid>
// with etcd's own namespace wrappers over one shared datastore client.
//
// On top of confinement it enforces what a shared store needs: a quota on
// the bytes each tenant keeps (refused writes get etcd's own "database
// space exceeded"), per-tenant request and byte rate limits with fair
// queuing across tenants, leases usable only by the tenant that granted
// them, refusal of cluster-wide calls (defragment, snapshot, hash, alarms,
// auth, members), and per-tenant compaction: each tenant's compactor moves
// that tenant's view of history, and the datastore is compacted only where
// every compacting tenant has agreed.
//
// Usage is counted exactly from one watch over all tenant prefixes,
// seeded by a paginated read. It is served as Prometheus metrics and as
// JSON on /usage; /healthz and /readyz report the gateway's state.
//
// The gateway keeps nothing of its own on disk: lease owners and
// compaction records live under datastore.GatewayPrefix in the datastore,
// so replicas share them and a restart loses nothing.
package gateway
