package migration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/mirror"

	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/gateway"
)

// Migrator moves one tenant between two datastores. Source and
// Destination are root clients of the datastores (the operator's
// credential); Target is the destination's gateway as the source's
// gateways will reach it for the tenant.
type Migrator struct {
	TenantID            string
	Source, Destination *clientv3.Client
	Target              gateway.ForwardTarget
	// Hold is the longest the tenant's writes may be held (10s when 0):
	// a pause not turned into a move by then lapses on its own, and the
	// migration rolls back.
	Hold time.Duration
	// ConfirmWait is how long every gateway replica has to confirm the
	// pause (5s when 0).
	ConfirmWait time.Duration
	// Record persists the phase before each step starts (nil: not
	// recorded).
	Record func(ctx context.Context, p Phase) error
	Log    logr.Logger

	tn   datastore.Tenancy
	f    *follower
	res  Result
	rate float64
}

// Result is what a migration did and measured.
type Result struct {
	Phase Phase
	// CopyRevision is the source revision the keys were copied at.
	CopyRevision int64
	// Keys and Leases copied at CopyRevision; Events applied after it.
	Keys, Leases, Events int
	// PausedAt is the source's revision once every gateway confirmed the
	// pause; SwitchRevision the destination's revision the tenant starts
	// at (its compaction there).
	PausedAt, SwitchRevision int64
	// BumpWrites is how many writes raised the destination's revision.
	BumpWrites int
	// Pause is how long the tenant's writes were held: from asking for
	// the pause to the move written (or the pause removed).
	Pause time.Duration
	// Copy, CatchUp and Total are the steps' durations.
	Copy, CatchUp, Total time.Duration
	// Err is the error that rolled the migration back.
	Err error
}

// compactionRecord is the gateway's record of a tenant's compaction
// (datastore.CompactionKey).
type compactionRecord struct {
	Revision int64     `json:"revision"`
	At       time.Time `json:"at"`
}

// bumpKey is the destination key written to raise its revision.
func bumpKey(id string) string { return datastore.GatewayPrefix + "migration-bump/" + id }

func (m *Migrator) defaults() error {
	tn, err := datastore.TenancyFor(m.TenantID)
	if err != nil {
		return err
	}
	m.tn = tn
	if m.Hold == 0 {
		m.Hold = 10 * time.Second
	}
	if m.ConfirmWait == 0 {
		m.ConfirmWait = 5 * time.Second
	}
	if m.Record == nil {
		m.Record = func(context.Context, Phase) error { return nil }
	}
	return nil
}

// Forwarded reports whether the source's gateways forward the tenant: the
// move was written.
func Forwarded(ctx context.Context, source *clientv3.Client, tenantID string) (bool, error) {
	rec, err := readRecord(ctx, source, tenantID)
	return rec.forwards, err
}

// record is what a datastore holds of a tenant's pause or move.
type record struct {
	// modRevision is 0 when there is none.
	modRevision int64
	forwards    bool
}

// readRecord reads tenant id's pause or move record in cli's datastore.
func readRecord(ctx context.Context, cli *clientv3.Client, id string) (record, error) {
	r, err := cli.Get(ctx, datastore.PauseKey(id))
	if err != nil {
		return record{}, fmt.Errorf("read the pause record of tenant %s: %w", id, err)
	}
	if len(r.Kvs) == 0 {
		return record{}, nil
	}
	var rec struct {
		Forward *gateway.ForwardTarget `json:"forward"`
	}
	if err := json.Unmarshal(r.Kvs[0].Value, &rec); err != nil {
		return record{}, fmt.Errorf("pause record of tenant %s: %w", id, err)
	}
	return record{modRevision: r.Kvs[0].ModRevision, forwards: rec.Forward != nil}, nil
}

// Run runs the migration from phase from (Resume's answer for one that
// was interrupted) until it completes or has rolled back. It returns an
// error when a step after the switch, or the roll back, keeps failing:
// run it again later from the recorded phase. A migration that rolled
// back returns a nil error and Result.Err.
func (m *Migrator) Run(ctx context.Context, from Phase) (Result, error) {
	if err := m.defaults(); err != nil {
		return m.res, err
	}
	start := time.Now()
	defer m.stopFollower()
	res, err := m.run(ctx, from)
	res.Total = time.Since(start)
	return res, err
}

func (m *Migrator) run(ctx context.Context, from Phase) (Result, error) {
	p := from
	failures := 0
	for !p.Done() {
		if err := m.Record(ctx, p); err != nil {
			return m.res, fmt.Errorf("record phase %s: %w", p, err)
		}
		m.res.Phase = p
		err := m.step(ctx, p)
		if err != nil {
			m.Log.Error(err, "migration step failed", "tenant", m.TenantID, "phase", p)
			if m.res.Err == nil && !p.Switched() && p != PhaseRollingBack {
				m.res.Err = fmt.Errorf("%s: %w", p, err)
			}
		}
		next := Next(p, err == nil)
		if next == p {
			failures++
			if failures >= 5 || ctx.Err() != nil {
				return m.res, fmt.Errorf("migration of tenant %s: %s keeps failing: %w", m.TenantID, p, err)
			}
			time.Sleep(time.Duration(failures) * 200 * time.Millisecond)
			continue
		}
		failures = 0
		p = next
	}
	m.res.Phase = p
	if err := m.Record(ctx, p); err != nil {
		return m.res, fmt.Errorf("record phase %s: %w", p, err)
	}
	return m.res, nil
}

func (m *Migrator) step(ctx context.Context, p Phase) error {
	switch p {
	case PhasePending:
		return nil
	case PhaseCopying:
		return m.copyAndFollow(ctx)
	case PhasePausing:
		return m.pauseAndFinish(ctx)
	case PhaseSwitching:
		return m.switchOver(ctx)
	case PhaseCleaningUp:
		return m.cleanUp(ctx)
	case PhaseRollingBack:
		return m.rollBack(ctx)
	}
	return fmt.Errorf("unknown phase %q", p)
}

// copyAndFollow clears the destination, copies the tenant's leases and
// keys at one source revision, follows the source from there, and raises
// the destination's revision to the source's while it catches up.
func (m *Migrator) copyAndFollow(ctx context.Context) error {
	start := time.Now()
	if err := clearTenant(ctx, m.Destination, m.tn.ID); err != nil {
		return fmt.Errorf("clear the destination: %w", err)
	}
	r, err := m.Source.Get(ctx, datastore.LeaseOwnersPrefix(m.tn.ID), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return fmt.Errorf("read the tenant's leases: %w", err)
	}
	rev := r.Header.Revision
	m.res.CopyRevision = rev
	m.f = newFollower(m, rev)
	for _, kv := range r.Kvs {
		id, err := datastore.LeaseOfOwnerKey(kv.Key)
		if err != nil {
			return err
		}
		if _, err := m.f.ensureLease(ctx, id); err != nil {
			return err
		}
	}
	m.res.Leases = len(m.f.leases)
	// etcd's mirror: pages of the prefix, all read at rev.
	pages, errc := mirror.NewSyncer(m.Source, m.tn.Prefix, rev).SyncBase(ctx)
	var ops []clientv3.Op
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		if _, err := m.Destination.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("copy keys: %w", err)
		}
		ops = ops[:0]
		return nil
	}
	for page := range pages {
		for _, kv := range page.Kvs {
			op, err := m.f.putOp(ctx, kv.Key, kv.Value, kv.Lease)
			if err != nil {
				return err
			}
			ops = append(ops, op)
			m.res.Keys++
			if len(ops) == maxTxnOps {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("read the source at revision %d: %w", rev, err)
	}
	if err := flush(); err != nil {
		return err
	}
	m.res.Copy = time.Since(start)
	m.Log.Info("copied the tenant", "tenant", m.tn.ID, "revision", rev, "keys", m.res.Keys, "leases", m.res.Leases, "took", m.res.Copy.Round(time.Millisecond))

	catchUp := time.Now()
	m.f.start(ctx)
	// Catch up with where the source is now, and raise the destination
	// meanwhile, so the pause has little of either left to do.
	now, err := m.Source.Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("read the source's revision: %w", err)
	}
	m.rate = float64(now.Header.Revision-rev) / max(time.Since(start).Seconds(), 0.001)
	n, _, err := raiseRevision(ctx, m.Destination, bumpKey(m.tn.ID), now.Header.Revision+m.margin())
	m.res.BumpWrites += n
	if err != nil {
		return err
	}
	if err := m.f.waitApplied(ctx, now.Header.Revision, time.Minute); err != nil {
		return err
	}
	m.res.CatchUp = time.Since(catchUp)
	m.Log.Info("caught up with the source", "tenant", m.tn.ID, "revision", now.Header.Revision, "events", m.f.eventCount(), "bumpWrites", n, "took", m.res.CatchUp.Round(time.Millisecond))
	return nil
}

// margin is how far above the source's revision the destination is
// raised: what the source's other tenants write in the seconds between
// reading its revision and every gateway forwarding the tenant (its
// watchers see the source's revision in progress notifications until
// then), and at least 1,000.
func (m *Migrator) margin() int64 {
	return max(1000, int64(m.rate*10))
}

// pauseAndFinish holds the tenant's writes, applies the source's last
// events, raises the destination's revision above the source's and
// records the tenant's compaction there.
func (m *Migrator) pauseAndFinish(ctx context.Context) error {
	if m.f == nil {
		return errors.New("no copy to finish (interrupted before the pause): start over")
	}
	pauseStart := time.Now()
	m.f.pauseStart = pauseStart
	rev, err := gateway.PauseTenant(ctx, m.Source, m.tn.ID, m.Hold, m.ConfirmWait)
	if err != nil {
		return fmt.Errorf("pause the tenant's writes: %w", err)
	}
	m.res.PausedAt = rev
	if err := m.f.waitApplied(ctx, rev, m.Hold/2); err != nil {
		return err
	}
	m.stopFollower()
	if err := m.f.failed(); err != nil {
		return err
	}
	m.res.Events = m.f.eventCount()
	// Every revision the tenant's clients saw came from the source, at or
	// below its revision now, plus what others write until the move.
	now, err := m.Source.Get(ctx, "\x00", clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("read the source's revision: %w", err)
	}
	n, top, err := raiseRevision(ctx, m.Destination, bumpKey(m.tn.ID), now.Header.Revision+m.margin())
	m.res.BumpWrites += n
	if err != nil {
		return err
	}
	// The tenant starts at the destination's revision now: its history
	// there (the copy's writes) is compacted away for it, so a watch or
	// read at an older revision is answered "compacted" and lists again.
	b, _ := json.Marshal(compactionRecord{Revision: top, At: time.Now().UTC()})
	if _, err := m.Destination.Put(ctx, datastore.CompactionKey(m.tn.ID), string(b)); err != nil {
		return fmt.Errorf("record the tenant's compaction on the destination: %w", err)
	}
	m.res.SwitchRevision = top
	m.Log.Info("paused and finished the copy", "tenant", m.tn.ID, "pausedAt", rev, "sourceRevision", now.Header.Revision,
		"destinationRevision", top, "bumpWrites", n, "held", time.Since(pauseStart).Round(time.Millisecond))
	return nil
}

// switchOver turns the pause into a move: the source's gateways forward
// the tenant to the destination from now on.
func (m *Migrator) switchOver(ctx context.Context) error {
	// A tenant that once moved away from the destination left a move
	// record there: its gateways would forward the tenant back to the
	// source, a loop. From the switch on the destination serves it.
	if _, err := m.Destination.Txn(ctx).Then(
		clientv3.OpDelete(datastore.PauseKey(m.tn.ID)),
		clientv3.OpDelete(datastore.PauseAcksPrefix(m.tn.ID), clientv3.WithPrefix()),
	).Commit(); err != nil {
		return fmt.Errorf("remove the destination's old move record: %w", err)
	}
	err := gateway.ForwardTenant(ctx, m.Source, m.tn.ID, m.Target, time.Second)
	if m.f != nil && !m.f.pauseStart.IsZero() {
		m.res.Pause = time.Since(m.f.pauseStart)
	}
	if err != nil {
		return fmt.Errorf("switch: %w", err)
	}
	m.Log.Info("switched the tenant to the destination", "tenant", m.tn.ID, "pause", m.res.Pause.Round(time.Millisecond))
	return nil
}

// cleanUp deletes the tenant's keys, leases and records in the source
// (the move record stays: it forwards the tenant).
func (m *Migrator) cleanUp(ctx context.Context) error {
	if err := clearTenant(ctx, m.Source, m.tn.ID); err != nil {
		return fmt.Errorf("delete the tenant from the source: %w", err)
	}
	if _, err := m.Source.Delete(ctx, datastore.PauseAcksPrefix(m.tn.ID), clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("delete the pause's confirmations: %w", err)
	}
	if _, err := m.Destination.Delete(ctx, bumpKey(m.tn.ID)); err != nil {
		return fmt.Errorf("delete the bump key: %w", err)
	}
	// The tenant's etcd user and role in the source go with its keys.
	if err := datastore.DeleteTenancy(ctx, m.Source, m.tn); err != nil {
		return fmt.Errorf("delete the tenant's tenancy from the source: %w", err)
	}
	return nil
}

// rollBack lets the tenant write on the source again and deletes the
// destination's copy. It refuses once the move is written.
func (m *Migrator) rollBack(ctx context.Context) error {
	m.stopFollower()
	fwd, err := Forwarded(ctx, m.Source, m.tn.ID)
	if err != nil {
		return err
	}
	if fwd {
		return errors.New("the move is written: the destination serves, the migration must go on")
	}
	if err := gateway.ResumeTenant(ctx, m.Source, m.tn.ID); err != nil {
		return err
	}
	if m.f != nil && !m.f.pauseStart.IsZero() && m.res.Pause == 0 {
		m.res.Pause = time.Since(m.f.pauseStart)
	}
	if err := clearTenant(ctx, m.Destination, m.tn.ID); err != nil {
		return fmt.Errorf("delete the copy from the destination: %w", err)
	}
	if _, err := m.Destination.Delete(ctx, bumpKey(m.tn.ID)); err != nil {
		return fmt.Errorf("delete the bump key: %w", err)
	}
	m.Log.Info("rolled the migration back", "tenant", m.tn.ID)
	return nil
}

func (m *Migrator) stopFollower() {
	if m.f != nil {
		m.f.stop()
	}
}

// clearTenant deletes everything of tenant id in a datastore: its keys,
// its leases (revoked) and their owner records, and its compaction.
func clearTenant(ctx context.Context, cli *clientv3.Client, id string) error {
	tn, err := datastore.TenancyFor(id)
	if err != nil {
		return err
	}
	owners, err := cli.Get(ctx, datastore.LeaseOwnersPrefix(id), clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return err
	}
	for _, kv := range owners.Kvs {
		lease, err := datastore.LeaseOfOwnerKey(kv.Key)
		if err != nil {
			return err
		}
		if _, err := cli.Revoke(ctx, clientv3.LeaseID(lease)); err != nil && !isLeaseNotFound(err) {
			return fmt.Errorf("revoke lease %x: %w", lease, err)
		}
	}
	_, err = cli.Txn(ctx).Then(
		clientv3.OpDelete(tn.Prefix, clientv3.WithPrefix()),
		clientv3.OpDelete(datastore.LeaseOwnersPrefix(id), clientv3.WithPrefix()),
		clientv3.OpDelete(datastore.CompactionKey(id)),
	).Commit()
	return err
}

// Release removes a completed move's record from the source: its gateways
// stop forwarding the tenant, and would serve it from the source again, so
// it is called only once no client of the tenant uses the source's
// gateways. A record that does not forward (a pause of a move under way) is
// left alone: ErrNotForwarded. What is already gone is not an error.
func Release(ctx context.Context, source *clientv3.Client, tenantID string) error {
	rec, err := readRecord(ctx, source, tenantID)
	switch {
	case err != nil:
		return err
	case rec.modRevision == 0:
		return nil
	case !rec.forwards:
		return ErrNotForwarded
	}
	key := datastore.PauseKey(tenantID)
	txn, err := source.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rec.modRevision)).Then(
		clientv3.OpDelete(key),
		clientv3.OpDelete(datastore.PauseAcksPrefix(tenantID), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return fmt.Errorf("remove the move record of tenant %s: %w", tenantID, err)
	}
	if !txn.Succeeded {
		return fmt.Errorf("remove the move record of tenant %s: it changed meanwhile; try again", tenantID)
	}
	return nil
}

// ErrNotForwarded says that a tenant's record in a datastore holds its
// writes for a move under way rather than forwarding it.
var ErrNotForwarded = errors.New("the tenant's record pauses it for a move under way; it does not forward it")
