package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/status"

	"kubinception.dev/kubinception/internal/datastore"
)

// A pause holds one tenant's writes on every gateway replica, for the
// moment a migration to another datastore applies its last events. It is
// made reliable across replicas without the pauser knowing them:
//
//  1. every replica registers itself (datastore.GatewayReplicaKey) on a
//     lease it keeps alive, so a dead replica drops out within the TTL;
//  2. the pauser writes the pause record (datastore.PauseKey) with a new
//     ID and a deadline;
//  3. each replica mirrors the records with a watch; on seeing one it
//     holds the tenant's new writes, waits for its writes in flight to
//     end, then writes its confirmation (datastore.PauseAckKey, the
//     pause's ID, on its own lease);
//  4. the pause holds once every registered replica has confirmed this
//     ID. A replica that starts later reads the records before it
//     registers, so it holds before it counts.
//
// Writes are held, not refused: the tenant's API servers see a slow write.
// A record whose deadline has passed holds nothing, so a pauser that dies
// cannot stop a tenant for longer than it asked.

// pauseRecord is the value of a PauseKey.
type pauseRecord struct {
	ID    string    `json:"id"`
	Until time.Time `json:"until"`
	// Forward, once set, ends the hold: the tenant has moved to another
	// datastore, and every call is forwarded to that datastore's gateway.
	Forward *ForwardTarget `json:"forward,omitempty"`
}

// replicaTTL is the TTL (seconds) of a replica's registration.
const replicaTTL = 10

// pauses tracks which tenants' writes are held on this replica.
type pauses struct {
	cli     *clientv3.Client
	log     logr.Logger
	replica string
	now     func() time.Time

	mu sync.Mutex
	// lease is the replica's registration lease (0 until registered).
	lease clientv3.LeaseID
	// held are the tenants paused now, by ID.
	held map[string]*tenantPause
	next map[string]pauseRecord
	// endStreams ends a tenant's streams on this replica.
	endStreams func(id string)

	readyOnce sync.Once
	ready     chan struct{}
}

// tenantPause is one tenant's gate on this replica.
type tenantPause struct {
	rec pauseRecord
	// fwd forwards the tenant's calls once rec.Forward is set.
	fwd *forwarder
	// open is closed when the pause ends.
	open chan struct{}
	// acked is set once the confirmation is written.
	acked bool
}

// writeGate counts one tenant's writes in flight on this replica.
type writeGate struct {
	mu       sync.Mutex
	inFlight int
}

func newPauses(cli *clientv3.Client, log logr.Logger) *pauses {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &pauses{
		cli: cli, log: log, now: time.Now,
		replica: strings.Trim(host, "/") + "-" + hex.EncodeToString(b),
		held:    map[string]*tenantPause{},
		ready:   make(chan struct{}),
	}
}

// holdWrite waits while tenant t's writes are paused, then counts a write in
// flight; the returned function ends it. When the pause ended with a
// move, it returns the forwarder the write must go to.
func (g *Gateway) holdWrite(ctx context.Context, t *tenant) (func(), *forwarder, error) {
	for {
		p := g.pauses.current(t.ID)
		if p == nil {
			break
		}
		if p.fwd != nil {
			return func() {}, p.fwd, nil
		}
		start := time.Now()
		timer := time.NewTimer(time.Until(p.rec.Until))
		select {
		case <-p.open:
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return nil, nil, status.FromContextError(ctx.Err()).Err()
		}
		timer.Stop()
		g.metrics.held.WithLabelValues(t.ID).Add(time.Since(start).Seconds())
	}
	t.writes.mu.Lock()
	t.writes.inFlight++
	t.writes.mu.Unlock()
	return func() {
		t.writes.mu.Lock()
		defer t.writes.mu.Unlock()
		t.writes.inFlight--
	}, nil, nil
}

// current is tenant id's pause in force, or nil.
func (p *pauses) current(id string) *tenantPause {
	p.mu.Lock()
	defer p.mu.Unlock()
	tp := p.held[id]
	if tp == nil || (tp.fwd == nil && !p.now().Before(tp.rec.Until)) {
		return nil
	}
	return tp
}

// forward is the forwarder of a tenant that moved, or nil.
func (p *pauses) forward(id string) *forwarder {
	p.mu.Lock()
	defer p.mu.Unlock()
	if tp := p.held[id]; tp != nil {
		return tp.fwd
	}
	return nil
}

// set applies a record seen in the datastore (rec nil: deleted). A
// record that forwards ends the tenant's streams on this replica, so that
// its clients reconnect, and are forwarded.
func (p *pauses) set(id string, rec *pauseRecord) {
	old := p.held[id]
	if rec != nil && old != nil && old.rec.ID == rec.ID && (old.fwd != nil) == (rec.Forward != nil) {
		old.rec = *rec
		return
	}
	if old != nil {
		if old.fwd != nil {
			old.fwd.close()
		}
		close(old.open)
		delete(p.held, id)
	}
	if rec == nil {
		return
	}
	tp := &tenantPause{rec: *rec, open: make(chan struct{})}
	if rec.Forward != nil {
		f, err := newForwarder(*rec.Forward)
		if err != nil {
			// Held until the record is fixed: never served here.
			p.log.Error(err, "cannot forward a moved tenant; its writes stay held", "tenant", id)
			tp.rec.Forward = nil
			tp.rec.Until = time.Now().Add(100 * 365 * 24 * time.Hour)
		} else {
			tp.fwd = f
			p.log.Info("forwarding a moved tenant", "tenant", id, "to", rec.Forward.Endpoint)
		}
		if p.endStreams != nil {
			p.endStreams(id)
		}
	}
	p.held[id] = tp
}

func (p *pauses) begin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next = map[string]pauseRecord{}
}

func (p *pauses) page(kvs []*mvccpb.KeyValue) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, kv := range kvs {
		if id, ok := datastore.TenantIDOfPauseKey(kv.Key); ok {
			var rec pauseRecord
			if err := json.Unmarshal(kv.Value, &rec); err == nil {
				p.next[id] = rec
			}
		}
	}
}

func (p *pauses) seeded(int64) {
	p.mu.Lock()
	for id := range p.held {
		if _, ok := p.next[id]; !ok {
			p.set(id, nil)
		}
	}
	for id, rec := range p.next {
		p.set(id, &rec)
	}
	p.next = nil
	p.mu.Unlock()
	p.readyOnce.Do(func() { close(p.ready) })
}

func (p *pauses) apply(_ int64, events []*clientv3.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ev := range events {
		id, ok := datastore.TenantIDOfPauseKey(ev.Kv.Key)
		if !ok {
			continue
		}
		if ev.Type == clientv3.EventTypeDelete {
			p.set(id, nil)
			continue
		}
		var rec pauseRecord
		if err := json.Unmarshal(ev.Kv.Value, &rec); err == nil {
			p.set(id, &rec)
		}
	}
	return nil
}

// runPauses registers the replica once the records are read, then confirms each
// pause once the tenant's writes in flight have ended, and withdraws the
// confirmations of pauses that ended.
func (g *Gateway) runPauses(ctx context.Context) {
	p := g.pauses
	select {
	case <-p.ready:
	case <-ctx.Done():
		return
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	confirmed := map[string]string{} // tenant → pause ID confirmed
	for {
		if err := p.register(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			p.log.Error(err, "register this replica for pauses")
		} else {
			p.confirm(ctx, g, confirmed)
		}
		select {
		case <-ctx.Done():
			p.mu.Lock()
			lease := p.lease
			p.mu.Unlock()
			if lease != 0 {
				// Leave at once: pauses need not wait out the TTL.
				rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, _ = p.cli.Revoke(rctx, lease)
				cancel()
			}
			return
		case <-tick.C:
		}
	}
}

// register keeps the replica's registration and its lease alive.
func (p *pauses) register(ctx context.Context) error {
	p.mu.Lock()
	lease := p.lease
	p.mu.Unlock()
	if lease != 0 {
		return nil
	}
	l, err := p.cli.Grant(ctx, replicaTTL)
	if err != nil {
		return fmt.Errorf("grant the registration lease: %w", err)
	}
	if _, err := p.cli.Put(ctx, datastore.GatewayReplicaKey(p.replica), "", clientv3.WithLease(l.ID)); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	ch, err := p.cli.KeepAlive(ctx, l.ID)
	if err != nil {
		return fmt.Errorf("keep the registration alive: %w", err)
	}
	p.mu.Lock()
	p.lease = l.ID
	p.mu.Unlock()
	go func() {
		for range ch {
		}
		// The lease is gone (expired, revoked, or ctx ended): register
		// again with a new one, and confirm pauses again on it.
		p.mu.Lock()
		p.lease = 0
		for _, tp := range p.held {
			tp.acked = false
		}
		p.mu.Unlock()
	}()
	p.log.Info("registered for pauses", "replica", p.replica, "lease", fmt.Sprintf("%x", l.ID))
	return nil
}

// confirm writes the confirmation of every pause whose tenant has no
// write in flight here, and deletes those of pauses that ended.
func (p *pauses) confirm(ctx context.Context, g *Gateway, confirmed map[string]string) {
	p.mu.Lock()
	lease := p.lease
	var todo []string
	pending := map[string]*tenantPause{}
	for id, tp := range p.held {
		if !tp.acked {
			todo = append(todo, id)
			pending[id] = tp
		}
	}
	var ended []string
	for id := range confirmed {
		if _, ok := p.held[id]; !ok {
			ended = append(ended, id)
		}
	}
	p.mu.Unlock()
	for _, id := range todo {
		if !g.tenants.drained(id) {
			continue
		}
		tp := pending[id]
		if _, err := p.cli.Put(ctx, datastore.PauseAckKey(id, p.replica), tp.rec.ID, clientv3.WithLease(lease)); err != nil {
			p.log.Error(err, "confirm a pause", "tenant", id)
			continue
		}
		p.mu.Lock()
		tp.acked = true
		p.mu.Unlock()
		confirmed[id] = tp.rec.ID
		p.log.Info("holding the tenant's writes", "tenant", id, "pause", tp.rec.ID, "until", tp.rec.Until)
	}
	for _, id := range ended {
		if _, err := p.cli.Delete(ctx, datastore.PauseAckKey(id, p.replica)); err != nil {
			p.log.Error(err, "withdraw a pause confirmation", "tenant", id)
			continue
		}
		delete(confirmed, id)
		p.log.Info("released the tenant's writes", "tenant", id)
	}
}

// drained reports whether tenant id has no write in flight on this
// replica.
func (ts *tenants) drained(id string) bool {
	ts.mu.Lock()
	t := ts.m[id]
	ts.mu.Unlock()
	if t == nil {
		return true
	}
	t.writes.mu.Lock()
	defer t.writes.mu.Unlock()
	return t.writes.inFlight == 0
}

// ErrPauseUnconfirmed says that not every replica confirmed a pause in
// time.
var ErrPauseUnconfirmed = errors.New("not every gateway replica confirmed the pause")

// PauseTenant holds tenant id's writes on every gateway replica of the
// datastore cli reaches until Resume or until hold has passed, and
// returns once every registered replica confirmed it (or ctx ends, or
// wait passes: ErrPauseUnconfirmed, and the pause is withdrawn). It
// returns the datastore's revision once paused: no write of the tenant
// commits above it until the pause ends.
func PauseTenant(ctx context.Context, cli *clientv3.Client, id string, hold, wait time.Duration) (int64, error) {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	rec := pauseRecord{ID: hex.EncodeToString(b), Until: time.Now().Add(hold)}
	val, _ := json.Marshal(rec)
	if _, err := cli.Put(ctx, datastore.PauseKey(id), string(val)); err != nil {
		return 0, fmt.Errorf("write the pause of tenant %s: %w", id, err)
	}
	deadline := time.Now().Add(wait)
	for {
		rev, missing, err := unconfirmed(ctx, cli, id, rec.ID)
		if err == nil && len(missing) == 0 {
			return rev, nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			_ = ResumeTenant(context.WithoutCancel(ctx), cli, id)
			if err == nil {
				err = fmt.Errorf("%w within %s: waiting for %s", ErrPauseUnconfirmed, wait, strings.Join(missing, ", "))
			}
			return 0, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// unconfirmed lists the registered replicas that have not confirmed pause
// pauseID of tenant id, read at one revision.
func unconfirmed(ctx context.Context, cli *clientv3.Client, id, pauseID string) (int64, []string, error) {
	resp, err := cli.Txn(ctx).Then(
		clientv3.OpGet(datastore.GatewayReplicasPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		clientv3.OpGet(datastore.PauseAcksPrefix(id), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return 0, nil, fmt.Errorf("read the pause's confirmations: %w", err)
	}
	acks := map[string]bool{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		acks[strings.TrimPrefix(string(kv.Key), datastore.PauseAcksPrefix(id))] = string(kv.Value) == pauseID
	}
	var missing []string
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		r := strings.TrimPrefix(string(kv.Key), datastore.GatewayReplicasPrefix)
		if !acks[r] {
			missing = append(missing, r)
		}
	}
	return resp.Header.Revision, missing, nil
}

// ResumeTenant ends tenant id's pause: every replica lets its writes
// through once it sees the record gone.
func ResumeTenant(ctx context.Context, cli *clientv3.Client, id string) error {
	if _, err := cli.Delete(ctx, datastore.PauseKey(id)); err != nil {
		return fmt.Errorf("remove the pause of tenant %s: %w", id, err)
	}
	return nil
}

// ErrNotPaused says that a tenant's pause lapsed or was removed before
// the move: writes may have passed since, and the move must start over.
var ErrNotPaused = errors.New("the tenant is not paused")

// ForwardTenant ends tenant id's pause with a move to another datastore:
// from then on every replica forwards the tenant's calls to the gateway
// named in to, and ends the tenant's open streams so its clients
// reconnect there. It changes the pause record in place, only while the
// pause is in force with at least margin left (ErrNotPaused otherwise), so
// no write can pass between the pause and the move.
func ForwardTenant(ctx context.Context, cli *clientv3.Client, id string, to ForwardTarget, margin time.Duration) error {
	key := datastore.PauseKey(id)
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read the pause of tenant %s: %w", id, err)
	}
	if len(resp.Kvs) == 0 {
		return ErrNotPaused
	}
	var rec pauseRecord
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		return fmt.Errorf("pause record of tenant %s: %w", id, err)
	}
	if rec.Forward == nil && time.Until(rec.Until) < margin {
		return fmt.Errorf("%w: its pause ends at %s", ErrNotPaused, rec.Until.Format(time.RFC3339Nano))
	}
	rec.Forward = &to
	rec.Until = time.Now().Add(100 * 365 * 24 * time.Hour)
	val, _ := json.Marshal(rec)
	txn, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)).
		Then(clientv3.OpPut(key, string(val))).Commit()
	if err != nil {
		return fmt.Errorf("forward tenant %s: %w", id, err)
	}
	if !txn.Succeeded {
		return fmt.Errorf("%w: its pause record changed", ErrNotPaused)
	}
	return nil
}
