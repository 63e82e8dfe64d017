package datastore

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TenantsPrefix is where every tenant's keys live; besides them the
// datastore holds only the etcd gateway's own records (GatewayPrefix).
const TenantsPrefix = "/tenants/"

// uidLength is the length of every tenant ID (a UID).
const uidLength = 36

// Tenancy is one tenant's place in a datastore: a key prefix, and an etcd
// user and role whose only permission is read-write on that prefix. The
// user authenticates with a client certificate whose common name is User.
type Tenancy struct {
	// ID is the tenant's UID.
	ID string
	// Prefix is the tenant's keyspace, without a trailing slash; it is the
	// API server's --etcd-prefix.
	Prefix string
	User   string
	Role   string
}

// TenancyFor derives a tenant's tenancy from its unique, fixed-length ID
// (a TenantCluster's UID). Because every ID has the same length, no
// tenant's prefix is a prefix of another's, so the permission on
// [Prefix, end of Prefix) covers exactly this tenant's keys.
func TenancyFor(id string) (Tenancy, error) {
	if len(id) != uidLength || strings.ContainsAny(id, "/ ") {
		return Tenancy{}, fmt.Errorf("tenant id %q is not a UID", id)
	}
	name := "tenant-" + id
	return Tenancy{ID: id, Prefix: TenantsPrefix + id, User: name, Role: name}, nil
}

// RangeEnd is the end of the tenant's key range (exclusive).
func (t Tenancy) RangeEnd() string { return clientv3.GetPrefixRangeEnd(t.Prefix) }

// EnsureTenancy creates the tenant's role (read-write on its prefix, and
// nothing else), its user (no password: certificate authentication only),
// and grants the role. Every step tolerates what already exists, so it is
// safe to repeat after a crash at any point.
func EnsureTenancy(ctx context.Context, cli *clientv3.Client, t Tenancy) error {
	if _, err := cli.RoleAdd(ctx, t.Role); err != nil && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
		return fmt.Errorf("add role %s: %w", t.Role, err)
	}
	role, err := cli.RoleGet(ctx, t.Role)
	if err != nil {
		return fmt.Errorf("read role %s: %w", t.Role, err)
	}
	want := false
	for _, p := range role.Perm {
		if string(p.Key) == t.Prefix && string(p.RangeEnd) == t.RangeEnd() && p.PermType == clientv3.PermReadWrite {
			want = true
			continue
		}
		// A permission that is not exactly the tenant's range is removed.
		if _, err := cli.RoleRevokePermission(ctx, t.Role, string(p.Key), string(p.RangeEnd)); err != nil {
			return fmt.Errorf("revoke stray permission of %s: %w", t.Role, err)
		}
	}
	if !want {
		if _, err := cli.RoleGrantPermission(ctx, t.Role, t.Prefix, t.RangeEnd(), clientv3.PermissionType(clientv3.PermReadWrite)); err != nil {
			return fmt.Errorf("grant %s read-write on %s: %w", t.Role, t.Prefix, err)
		}
	}
	if _, err := cli.UserAddWithOptions(ctx, t.User, "", &clientv3.UserAddOptions{NoPassword: true}); err != nil && !errors.Is(err, rpctypes.ErrUserAlreadyExist) {
		return fmt.Errorf("add user %s: %w", t.User, err)
	}
	user, err := cli.UserGet(ctx, t.User)
	if err != nil {
		return fmt.Errorf("read user %s: %w", t.User, err)
	}
	for _, r := range user.Roles {
		if r == t.Role {
			return nil
		}
	}
	if _, err := cli.UserGrantRole(ctx, t.User, t.Role); err != nil {
		return fmt.Errorf("grant role %s to %s: %w", t.Role, t.User, err)
	}
	return nil
}

// DeleteTenancy deletes every key under the tenant's prefix, then its user
// and role. What is already gone is not an error.
func DeleteTenancy(ctx context.Context, cli *clientv3.Client, t Tenancy) error {
	if _, err := cli.Delete(ctx, t.Prefix, clientv3.WithRange(t.RangeEnd())); err != nil {
		return fmt.Errorf("delete keys under %s: %w", t.Prefix, err)
	}
	// The gateway's record of the tenant's compactions goes with its keys;
	// its lease records expire with the leases.
	if t.ID != "" {
		if _, err := cli.Delete(ctx, CompactionKey(t.ID)); err != nil {
			return fmt.Errorf("delete the gateway's compaction record of %s: %w", t.ID, err)
		}
	}
	if _, err := cli.UserDelete(ctx, t.User); err != nil && !errors.Is(err, rpctypes.ErrUserNotFound) {
		return fmt.Errorf("delete user %s: %w", t.User, err)
	}
	if _, err := cli.RoleDelete(ctx, t.Role); err != nil && !errors.Is(err, rpctypes.ErrRoleNotFound) {
		return fmt.Errorf("delete role %s: %w", t.Role, err)
	}
	return nil
}

// Usage is what a tenant holds in the datastore.
type Usage struct {
	Keys  int64
	Bytes int64
}

// TenantUsage counts the tenant's keys and the bytes of their keys and
// values.
func TenantUsage(ctx context.Context, cli *clientv3.Client, t Tenancy) (Usage, error) {
	var u Usage
	key := t.Prefix
	for {
		resp, err := cli.Get(ctx, key, clientv3.WithRange(t.RangeEnd()), clientv3.WithLimit(500), clientv3.WithSerializable())
		if err != nil {
			return u, err
		}
		for _, kv := range resp.Kvs {
			u.Keys++
			u.Bytes += int64(len(kv.Key) + len(kv.Value))
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return u, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Tenants lists the tenancies present in the datastore (users named
// tenant-*), for checks that nothing is duplicated or orphaned.
func Tenants(ctx context.Context, cli *clientv3.Client) ([]string, error) {
	resp, err := cli.UserList(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, u := range resp.Users {
		if strings.HasPrefix(u, "tenant-") {
			out = append(out, u)
		}
	}
	return out, nil
}
