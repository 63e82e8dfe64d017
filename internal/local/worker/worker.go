package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"kubinception.dev/kubinception/internal/pki"
)

// Layout places workers under the admin cluster's state directory.
type Layout struct {
	// Root is the admin cluster's state directory.
	Root string
}

func (l Layout) dir() string { return filepath.Join(l.Root, "workers") }

// Worker is one local worker machine.
type Worker struct {
	// Tenant is namespace/name of its tenant cluster.
	Tenant string `json:"tenant"`
	// Node is its node name in the tenant.
	Node string `json:"node"`
	// Segment is the tenant's segment number; Index the worker's within it.
	Segment int `json:"segment"`
	Index   int `json:"index"`
	// Dir holds the worker's state on the host.
	Dir string `json:"dir"`
	// Reachable lets the admin node open connections to the worker, as a
	// routed private network would. A worker that is not reachable is
	// behind NAT, as customers' machines usually are: it connects out,
	// and nothing from the admin side connects in.
	Reachable bool `json:"reachable,omitempty"`
}

// NetNS is the worker's network namespace name.
func (w Worker) NetNS() string { return fmt.Sprintf("kubi-%d-%d", w.Segment, w.Index) }

// HostVeth is the host end of the worker's link to its segment.
func (w Worker) HostVeth() string { return fmt.Sprintf("kubiv%dn%d", w.Segment, w.Index) }

// Bridge is the segment's bridge on the host.
func (w Worker) Bridge() string { return SegmentBridge(w.Segment) }

// SegmentBridge names a segment's bridge.
func SegmentBridge(segment int) string { return fmt.Sprintf("kubi-t%d", segment) }

// SegmentMAC is the fixed hardware address of a segment's bridge: every
// frame the admin node sends or forwards into the segment carries it, so
// a worker tells the admin side apart from its peers by it.
func SegmentMAC(segment int) string { return fmt.Sprintf("02:6b:75:62:69:%02x", segment) }

// Gateway is the host's address on the segment.
func (w Worker) Gateway() net.IP { return net.IPv4(10, 210, byte(w.Segment), 1).To4() }

// IP is the worker's address.
func (w Worker) IP() net.IP { return net.IPv4(10, 210, byte(w.Segment), byte(10+w.Index)).To4() }

// CgroupRoot is the cgroup its kubelet puts pods under, apart from the
// admin node's and other workers'.
func (w Worker) CgroupRoot() string { return fmt.Sprintf("/kubinception-%d-%d", w.Segment, w.Index) }

// MountNS is the file the worker's mount namespace is bound to.
func (w Worker) MountNS() string { return filepath.Join(w.Dir, "ns", "mnt") }

// Path is a path in the worker's own state.
func (w Worker) Path(elem ...string) string {
	return filepath.Join(append([]string{w.Dir}, elem...)...)
}

// Binds are the host directories (inside Dir) bound over standard paths in
// the worker's mount namespace.
func (w Worker) Binds() [][2]string {
	return [][2]string{
		{w.Path("etc-kubernetes"), "/etc/kubernetes"},
		{w.Path("kubelet"), "/var/lib/kubelet"},
		{w.Path("run-containerd"), "/run/containerd"},
		{w.Path("containerd"), "/var/lib/containerd"},
		{w.Path("cni-conf"), "/etc/cni/net.d"},
		{w.Path("cni-bin"), "/opt/cni/bin"},
		{w.Path("cni-state"), "/var/lib/cni"},
		{w.Path("calico"), "/var/lib/calico"},
		{w.Path("pod-logs"), "/var/log/pods"},
		{w.Path("container-logs"), "/var/log/containers"},
	}
}

// ContainerdSocket is the worker containerd's socket as the host sees it.
func (w Worker) ContainerdSocket() string { return w.Path("run-containerd", "containerd.sock") }

// state is the record of segments and workers.
type state struct {
	Segments map[string]int    `json:"segments"`
	Workers  map[string]Worker `json:"workers"`
}

func (l Layout) statePath() string { return filepath.Join(l.dir(), "state.json") }

func (l Layout) load() (state, error) {
	st := state{Segments: map[string]int{}, Workers: map[string]Worker{}}
	data, err := os.ReadFile(l.statePath())
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("%s: %w", l.statePath(), err)
	}
	if st.Segments == nil {
		st.Segments = map[string]int{}
	}
	if st.Workers == nil {
		st.Workers = map[string]Worker{}
	}
	return st, nil
}

func (l Layout) save(st state) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(l.dir(), 0o755); err != nil {
		return err
	}
	return pki.WriteFileAtomic(l.statePath(), data, 0o644)
}

// lock serialises changes to the worker record.
func (l Layout) lock() (func(), error) {
	if err := os.MkdirAll(l.dir(), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(l.dir(), "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// Allocate records a new worker for tenant, giving the tenant a segment if
// it has none. An empty node name becomes NAME-w<index> (NAMESPACE-NAME-w<index>
// outside the default namespace). A worker that is not reachable is
// behind NAT (see Worker.Reachable).
func (l Layout) Allocate(tenant, node string, reachable bool) (Worker, error) {
	unlock, err := l.lock()
	if err != nil {
		return Worker{}, err
	}
	defer unlock()
	st, err := l.load()
	if err != nil {
		return Worker{}, err
	}
	seg, ok := st.Segments[tenant]
	if !ok {
		used := map[int]bool{}
		for _, s := range st.Segments {
			used[s] = true
		}
		for seg = 1; used[seg]; seg++ {
		}
		if seg > 250 {
			return Worker{}, errors.New("no free worker segment: at most 250 tenants can have local workers")
		}
		st.Segments[tenant] = seg
	}
	usedIdx := map[int]bool{}
	for _, w := range st.Workers {
		if w.Tenant == tenant {
			usedIdx[w.Index] = true
			if node != "" && w.Node == node {
				return Worker{}, fmt.Errorf("tenant %s already has a worker named %s", tenant, node)
			}
		}
	}
	idx := 1
	for ; usedIdx[idx]; idx++ {
	}
	if idx > 200 {
		return Worker{}, fmt.Errorf("tenant %s has 200 local workers already", tenant)
	}
	if node == "" {
		node = fmt.Sprintf("%s-w%d", strings.ReplaceAll(strings.TrimPrefix(tenant, "default/"), "/", "-"), idx)
	}
	w := Worker{Tenant: tenant, Node: node, Segment: seg, Index: idx, Reachable: reachable,
		Dir: filepath.Join(l.dir(), strconv.Itoa(seg), strconv.Itoa(idx))}
	st.Workers[key(tenant, node)] = w
	return w, l.save(st)
}

// Release forgets a worker, and the tenant's segment with its last worker.
func (l Layout) Release(w Worker) (lastOfTenant bool, err error) {
	unlock, err := l.lock()
	if err != nil {
		return false, err
	}
	defer unlock()
	st, err := l.load()
	if err != nil {
		return false, err
	}
	delete(st.Workers, key(w.Tenant, w.Node))
	last := true
	for _, o := range st.Workers {
		if o.Tenant == w.Tenant {
			last = false
		}
	}
	if last {
		delete(st.Segments, w.Tenant)
	}
	return last, l.save(st)
}

// List returns every recorded worker, or those of one tenant.
func (l Layout) List(tenant string) ([]Worker, error) {
	st, err := l.load()
	if err != nil {
		return nil, err
	}
	var out []Worker
	for _, w := range st.Workers {
		if tenant == "" || w.Tenant == tenant {
			out = append(out, w)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Dir < out[j].Dir })
	return out, nil
}

// Find returns a tenant's worker by node name.
func (l Layout) Find(tenant, node string) (Worker, error) {
	st, err := l.load()
	if err != nil {
		return Worker{}, err
	}
	w, ok := st.Workers[key(tenant, node)]
	if !ok {
		return Worker{}, fmt.Errorf("tenant %s has no local worker %s (kubinception node list %s)", tenant, node, tenant)
	}
	return w, nil
}

func key(tenant, node string) string { return tenant + "|" + node }
