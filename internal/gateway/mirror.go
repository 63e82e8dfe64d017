package gateway

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"
)

// mirrorSink receives what a prefixMirror reads.
type mirrorSink interface {
	// begin starts a new view: pages of the prefix read at one revision
	// follow, then seeded.
	begin()
	// page is one page of the prefix.
	page(kvs []*mvccpb.KeyValue)
	// seeded ends the read: the view is the prefix at rev.
	seeded(rev int64)
	// apply applies the events of one watch response at rev (none for a
	// progress notification). It returns an error when it cannot (an
	// event lacks what it needs), and the mirror reads the prefix again.
	apply(rev int64, events []*clientv3.Event) error
}

// Defaults of a prefixMirror's self-check.
const (
	// mirrorCheckEvery is how often a mirror compares its revision with
	// the datastore's.
	mirrorCheckEvery = 30 * time.Second
	// mirrorStaleChecks is how many check intervals may pass without the
	// view being known current before the mirror counts as stale.
	mirrorStaleChecks = 3
	// mirrorRequestTimeout bounds one read of the datastore.
	mirrorRequestTimeout = time.Minute
)

// mirrorStreamKey is the outgoing metadata that gives each watch of a
// mirror a datastore stream of its own: the client groups watches by their
// context's metadata, so a watch that starts over never lands on the
// stream of the watch it replaces, nor on another mirror's.
const mirrorStreamKey = "kubinception-gateway-mirror-stream"

var mirrorStreams atomic.Int64

// prefixMirror keeps a sink up to date with every key under a prefix: it
// reads the prefix page by page at one revision, then applies the watch
// events that follow that revision, and starts over when the watch is
// compacted away or fails.
//
// It checks itself: every checkEvery it reads the datastore's revision and
// asks its watch stream for a progress notification; a watch that has not
// reached the revision of the previous check by the next one has stalled,
// and the mirror reads the prefix again on a new stream. current reports
// whether the view was known current recently.
type prefixMirror struct {
	cli      *clientv3.Client
	prefix   string
	pageSize int64
	sink     mirrorSink
	log      logr.Logger
	// name labels the mirror's metrics.
	name string
	// watcher is the client's Watcher unless a test replaces it.
	watcher clientv3.Watcher
	// checkEvery is how often the mirror checks itself (mirrorCheckEvery
	// when 0).
	checkEvery time.Duration
	// now is time.Now unless a test replaces it.
	now func() time.Time

	mu sync.Mutex
	// seededOnce is set once the prefix was read the first time.
	seededOnce bool
	// rev is the revision the view is at.
	rev int64
	// datastoreRev is the datastore's revision at the last check.
	datastoreRev int64
	// currentAt is when the view was last known current: read, or caught
	// up with a check's revision.
	currentAt time.Time
	// lagging is set from a detected stall until the prefix is read again.
	lagging bool
	// reads counts reads of the prefix by reason.
	reads map[string]int64
}

// Reasons the prefix is read, as the reason label of
// kubinception_gateway_mirror_reads_total.
const (
	readStart     = "start"
	readCompacted = "compacted"
	readLag       = "lag"
	readError     = "error"
)

// errReseed ends a watch whose view must be read again: it was compacted
// away, or an event could not be applied.
var errReseed = errors.New("the view must be read again")

// errLag ends a watch that fell behind the datastore.
var errLag = errors.New("the watch fell behind the datastore")

func (m *prefixMirror) every() time.Duration {
	if m.checkEvery > 0 {
		return m.checkEvery
	}
	return mirrorCheckEvery
}

func (m *prefixMirror) clock() time.Time {
	if m.now != nil {
		return m.now()
	}
	return time.Now()
}

func (m *prefixMirror) watch() clientv3.Watcher {
	if m.watcher != nil {
		return m.watcher
	}
	return m.cli.Watcher
}

// run mirrors until ctx ends.
func (m *prefixMirror) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	reason := readStart
	for ctx.Err() == nil {
		started := time.Now()
		m.countRead(reason)
		rev, err := m.seed(ctx)
		if err == nil {
			m.log.V(1).Info("read the prefix", "prefix", m.prefix, "revision", rev, "reason", reason, "took", time.Since(started))
			err = m.follow(ctx, rev+1)
		}
		if ctx.Err() != nil {
			return
		}
		switch {
		case errors.Is(err, errLag):
			m.log.Info("reading the prefix again", "prefix", m.prefix, "reason", err.Error())
			backoff, reason = 100*time.Millisecond, readLag
			continue
		case errors.Is(err, errReseed):
			m.log.Info("reading the prefix again", "prefix", m.prefix, "reason", err.Error())
			backoff, reason = 100*time.Millisecond, readCompacted
			continue
		}
		reason = readError
		m.log.Error(err, "mirroring the datastore failed; starting over", "prefix", m.prefix, "retryIn", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// seed reads the whole prefix at one revision and returns it.
func (m *prefixMirror) seed(ctx context.Context) (int64, error) {
	m.sink.begin()
	end := clientv3.GetPrefixRangeEnd(m.prefix)
	key := m.prefix
	var rev int64
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(m.pageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		pctx, cancel := context.WithTimeout(ctx, mirrorRequestTimeout)
		resp, err := m.cli.Get(pctx, key, opts...)
		cancel()
		if err != nil {
			return 0, fmt.Errorf("read %s at revision %d: %w", m.prefix, rev, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		m.sink.page(resp.Kvs)
		if !resp.More || len(resp.Kvs) == 0 {
			m.sink.seeded(rev)
			m.mu.Lock()
			m.seededOnce, m.rev, m.lagging, m.currentAt = true, rev, false, m.clock()
			m.datastoreRev = max(m.datastoreRev, rev)
			m.mu.Unlock()
			return rev, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// follow applies watch events from rev on until the watch ends, checking
// every checkEvery that it keeps up with the datastore.
func (m *prefixMirror) follow(ctx context.Context, rev int64) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, mirrorStreamKey, strconv.FormatInt(mirrorStreams.Add(1), 10))
	w := m.watch()
	wch := w.Watch(ctx, m.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	tick := time.NewTicker(m.every())
	defer tick.Stop()
	// target is the datastore's revision at the last check, which the
	// view must reach before the next one; 0 when it already has.
	var target int64
	for {
		select {
		case resp, ok := <-wch:
			if !ok {
				if err := ctx.Err(); err != nil {
					return err
				}
				return fmt.Errorf("watch %s ended", m.prefix)
			}
			if resp.CompactRevision != 0 {
				return fmt.Errorf("%w: the watch was compacted at revision %d", errReseed, resp.CompactRevision)
			}
			if err := resp.Err(); err != nil {
				return fmt.Errorf("watch %s: %w", m.prefix, err)
			}
			if err := m.sink.apply(resp.Header.Revision, resp.Events); err != nil {
				return fmt.Errorf("%w: %w", errReseed, err)
			}
			if m.advance(resp.Header.Revision, target) {
				target = 0
			}
		case <-tick.C:
			at := m.revision()
			if target != 0 && at < target {
				m.mu.Lock()
				m.lagging = true
				m.mu.Unlock()
				return fmt.Errorf("%w: the view is at revision %d, the datastore was at %d one check ago", errLag, at, target)
			}
			target = 0
			d, err := m.datastoreRevision(ctx)
			if err != nil {
				m.log.Error(err, "checking the mirror against the datastore", "prefix", m.prefix)
				continue
			}
			if m.advance(0, d) {
				continue
			}
			target = d
			// A quiet prefix gets no events: a progress notification
			// moves the view to the datastore's revision.
			if err := w.RequestProgress(ctx); err != nil {
				m.log.Error(err, "requesting the watch's progress", "prefix", m.prefix)
			}
		}
	}
}

// advance records that the view reached rev, and the datastore revision
// of a check (target, 0 for none); it reports whether the view is at or
// beyond target, when it then counts as current.
func (m *prefixMirror) advance(rev, target int64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rev = max(m.rev, rev)
	m.datastoreRev = max(m.datastoreRev, target)
	if target != 0 && m.rev >= target {
		m.currentAt = m.clock()
		return true
	}
	return false
}

func (m *prefixMirror) revision() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rev
}

// datastoreRevision reads the datastore's current revision (a read of one
// key, whatever it holds).
func (m *prefixMirror) datastoreRevision(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, min(m.every(), mirrorRequestTimeout))
	defer cancel()
	resp, err := m.cli.Get(ctx, m.prefix, clientv3.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("read the datastore's revision: %w", err)
	}
	return resp.Header.Revision, nil
}

func (m *prefixMirror) countRead(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reads == nil {
		m.reads = map[string]int64{}
	}
	m.reads[reason]++
}

// mirrorStatus is what a mirror reports about itself.
type mirrorStatus struct {
	// Revision is the revision the view is at; DatastoreRevision the
	// datastore's at the last check.
	Revision, DatastoreRevision int64
	// Staleness is how long ago the view was last known current.
	Staleness time.Duration
	// Current is false before the first read, while a stall is being
	// repaired, and when the view was not known current for
	// mirrorStaleChecks check intervals.
	Current bool
	// Reads counts reads of the prefix by reason.
	Reads map[string]int64
}

func (m *prefixMirror) status() mirrorStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := mirrorStatus{Revision: m.rev, DatastoreRevision: max(m.datastoreRev, m.rev), Reads: make(map[string]int64, len(m.reads))}
	for r, n := range m.reads {
		s.Reads[r] = n
	}
	if !m.seededOnce {
		return s
	}
	s.Staleness = m.clock().Sub(m.currentAt)
	s.Current = !m.lagging && s.Staleness <= mirrorStaleChecks*m.every()
	return s
}
