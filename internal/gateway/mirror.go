package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
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

// prefixMirror keeps a sink up to date with every key under a prefix: it
// reads the prefix page by page at one revision, then applies the watch
// events that follow that revision, and starts over when the watch is
// compacted away or fails.
type prefixMirror struct {
	cli      *clientv3.Client
	prefix   string
	pageSize int64
	sink     mirrorSink
	log      logr.Logger
}

// errReseed ends a watch whose view must be read again: it was compacted
// away, or an event could not be applied.
var errReseed = errors.New("the view must be read again")

// run mirrors until ctx ends.
func (m *prefixMirror) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		started := time.Now()
		rev, err := m.seed(ctx)
		if err == nil {
			m.log.V(1).Info("read the prefix", "prefix", m.prefix, "revision", rev, "took", time.Since(started))
			err = m.follow(ctx, rev+1)
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errReseed) {
			m.log.Info("reading the prefix again", "prefix", m.prefix, "reason", err.Error())
			backoff = 100 * time.Millisecond
			continue
		}
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
		resp, err := m.cli.Get(ctx, key, opts...)
		if err != nil {
			return 0, fmt.Errorf("read %s at revision %d: %w", m.prefix, rev, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		m.sink.page(resp.Kvs)
		if !resp.More || len(resp.Kvs) == 0 {
			m.sink.seeded(rev)
			return rev, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// follow applies watch events from rev on until the watch ends.
func (m *prefixMirror) follow(ctx context.Context, rev int64) error {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := m.cli.Watch(ctx, m.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev), clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return fmt.Errorf("%w: the watch was compacted at revision %d", errReseed, resp.CompactRevision)
		}
		if err := resp.Err(); err != nil {
			return fmt.Errorf("watch %s: %w", m.prefix, err)
		}
		if err := m.sink.apply(resp.Header.Revision, resp.Events); err != nil {
			return fmt.Errorf("%w: %w", errReseed, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("watch %s ended", m.prefix)
}
