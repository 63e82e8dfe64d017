package migration

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// bumpWriters is how many writes raise a revision at once: etcd batches
// concurrent proposals, so the revision climbs several times faster than
// with one writer.
const bumpWriters = 32

// raiseRevision writes key until cli's datastore is at revision target or
// above, and returns how many writes it took and the revision reached.
// etcd has no call to set a revision (etcdutl's --bump-revision works
// only offline, on a snapshot being restored); each write raises it by
// one, and a transaction of many writes by one too.
func raiseRevision(ctx context.Context, cli *clientv3.Client, key string, target int64) (int, int64, error) {
	r, err := cli.Get(ctx, key, clientv3.WithCountOnly())
	if err != nil {
		return 0, 0, fmt.Errorf("read the revision: %w", err)
	}
	top := atomic.Int64{}
	top.Store(r.Header.Revision)
	var writes atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	need := target - r.Header.Revision
	for range min(int64(bumpWriters), max(need, 0)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for top.Load() < target {
				resp, err := cli.Put(ctx, key, "")
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("raise the revision to %d: %w", target, err)
					}
					mu.Unlock()
					return
				}
				writes.Add(1)
				for {
					cur := top.Load()
					if resp.Header.Revision <= cur || top.CompareAndSwap(cur, resp.Header.Revision) {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	return int(writes.Load()), top.Load(), firstErr
}
