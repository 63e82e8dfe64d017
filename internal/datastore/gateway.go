package datastore

import (
	"fmt"
	"strconv"
	"strings"
)

// GatewayPrefix holds what the etcd gateway keeps for itself in the
// datastore: which tenant granted each lease and the revision each tenant
// has compacted. Tenants never reach it: every key a tenant sends through
// the gateway lands under its own prefix in TenantsPrefix.
const GatewayPrefix = "/kubinception/gateway/"

const (
	gatewayLeases      = GatewayPrefix + "leases/"
	gatewayCompactions = GatewayPrefix + "compactions/"
	userPrefix         = "tenant-"
)

// TenancyForUser is the tenancy of the etcd user (and client certificate
// common name) tenant-<uid>.
func TenancyForUser(user string) (Tenancy, error) {
	id, ok := strings.CutPrefix(user, userPrefix)
	if !ok {
		return Tenancy{}, fmt.Errorf("%q is not a tenant user (want %s<uid>)", user, userPrefix)
	}
	return TenancyFor(id)
}

// TenantIDOfKey returns the tenant whose prefix holds key, or false when
// key lies outside every tenant's prefix.
func TenantIDOfKey(key []byte) (string, bool) {
	rest, ok := strings.CutPrefix(string(key), TenantsPrefix)
	if !ok || len(rest) < uidLength {
		return "", false
	}
	return rest[:uidLength], true
}

// LeaseOwnersPrefix is where the gateway records the leases tenant id
// granted, one key per lease attached to that lease, so a record expires
// with its lease.
func LeaseOwnersPrefix(id string) string { return gatewayLeases + id + "/" }

// LeaseOwnerKey records that tenant id granted lease.
func LeaseOwnerKey(id string, lease int64) string {
	return LeaseOwnersPrefix(id) + strconv.FormatInt(lease, 16)
}

// LeaseOfOwnerKey parses the lease ID out of a LeaseOwnerKey.
func LeaseOfOwnerKey(key []byte) (int64, error) {
	i := strings.LastIndexByte(string(key), '/')
	id, err := strconv.ParseInt(string(key[i+1:]), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("lease owner key %q: %w", key, err)
	}
	return id, nil
}

// CompactionsPrefix holds one CompactionKey per tenant.
const CompactionsPrefix = gatewayCompactions

// CompactionKey holds the revision up to which tenant id has compacted
// its history (its API server's compactor asked for it). The gateway
// answers that tenant as if the datastore were compacted there.
func CompactionKey(id string) string { return gatewayCompactions + id }

// TenantIDOfCompactionKey returns the tenant a CompactionKey belongs to.
func TenantIDOfCompactionKey(key []byte) (string, bool) {
	id, ok := strings.CutPrefix(string(key), gatewayCompactions)
	return id, ok && len(id) == uidLength
}

const (
	gatewayReplicas  = GatewayPrefix + "replicas/"
	gatewayPauses    = GatewayPrefix + "pauses/"
	gatewayPauseAcks = GatewayPrefix + "pause-acks/"
)

// GatewayReplicasPrefix holds one key per running gateway replica,
// attached to a lease the replica keeps alive: the replicas that must
// confirm a pause.
const GatewayReplicasPrefix = gatewayReplicas

// GatewayReplicaKey registers the replica named id.
func GatewayReplicaKey(id string) string { return gatewayReplicas + id }

// PausesPrefix holds one PauseKey per tenant whose writes are held.
const PausesPrefix = gatewayPauses

// PauseKey holds the pause of tenant id's writes (a tenant being moved to
// another datastore): while it exists, every gateway replica holds the
// tenant's writes.
func PauseKey(id string) string { return gatewayPauses + id }

// TenantIDOfPauseKey returns the tenant a PauseKey belongs to.
func TenantIDOfPauseKey(key []byte) (string, bool) {
	id, ok := strings.CutPrefix(string(key), gatewayPauses)
	return id, ok && len(id) == uidLength
}

// PauseAcksPrefix holds the confirmations of tenant id's pause, one per
// replica.
func PauseAcksPrefix(id string) string { return gatewayPauseAcks + id + "/" }

// PauseAckKey is replica's confirmation that it holds tenant id's writes
// and has none in flight.
func PauseAckKey(id, replica string) string { return PauseAcksPrefix(id) + replica }
