package gateway

import (
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// SetMirrorCheck makes g's usage and compaction mirrors check themselves
// every interval, and, when wrap is not nil, watch through the Watcher it
// returns for the usage mirror. Call it before Run.
func SetMirrorCheck(g *Gateway, every time.Duration, wrap func(clientv3.Watcher) clientv3.Watcher) {
	for _, m := range []*prefixMirror{g.usageMirror, g.compactionMirror} {
		m.checkEvery = every
	}
	if wrap != nil {
		g.usageMirror.watcher = wrap(g.cli.Watcher)
	}
}

// MirrorReads returns how often g's usage mirror read its prefix, by
// reason.
func MirrorReads(g *Gateway) map[string]int64 { return g.usageMirror.status().Reads }
