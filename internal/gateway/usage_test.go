package gateway

import (
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const uidA = "aaaaaaaa-0000-0000-0000-000000000001"

func kv(key, value string, create, mod int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte("/tenants/" + uidA + key), Value: []byte(value), CreateRevision: create, ModRevision: mod}
}

func TestUsageTrackerAppliesEvents(t *testing.T) {
	u := newUsageTracker()
	u.begin()
	u.page([]*mvccpb.KeyValue{kv("/a", "12345", 2, 2), {Key: []byte("/elsewhere"), Value: []byte("x")}})
	u.seeded(5)
	size := func(key, value string) int64 { return int64(len("/tenants/"+uidA+key) + len(value)) }
	want := Usage{Keys: 1, Bytes: size("/a", "12345")}
	if got := u.usage(uidA); got != want {
		t.Fatalf("after the seed: %+v, want %+v", got, want)
	}
	steps := []struct {
		name  string
		event *clientv3.Event
		want  Usage
	}{
		{"create", &clientv3.Event{Type: clientv3.EventTypePut, Kv: kv("/b", "xy", 6, 6)},
			Usage{Keys: 2, Bytes: size("/a", "12345") + size("/b", "xy")}},
		{"update that shrinks", &clientv3.Event{Type: clientv3.EventTypePut, Kv: kv("/a", "1", 2, 7), PrevKv: kv("/a", "12345", 2, 2)},
			Usage{Keys: 2, Bytes: size("/a", "1") + size("/b", "xy")}},
		{"delete", &clientv3.Event{Type: clientv3.EventTypeDelete, Kv: kv("/b", "", 0, 8), PrevKv: kv("/b", "xy", 6, 6)},
			Usage{Keys: 1, Bytes: size("/a", "1")}},
	}
	for i, s := range steps {
		if err := u.apply(int64(6+i), []*clientv3.Event{s.event}); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := u.usage(uidA); got != s.want {
			t.Fatalf("after %s: %+v, want %+v", s.name, got, s.want)
		}
	}
	// Without the previous value an update cannot be counted: the mirror
	// must read everything again.
	if err := u.apply(9, []*clientv3.Event{{Type: clientv3.EventTypePut, Kv: kv("/a", "22", 2, 9)}}); err == nil {
		t.Fatal("an update without its previous value was applied")
	}
}

func TestUsageTrackerReservesUntilTheWatchCatchesUp(t *testing.T) {
	u := newUsageTracker()
	u.begin()
	u.seeded(10)
	if ok, _ := u.reserve(uidA, 60, 100); !ok {
		t.Fatal("60 of 100 bytes refused")
	}
	if ok, used := u.reserve(uidA, 60, 100); ok || used != 60 {
		t.Fatalf("a second 60 bytes while the first are in flight: ok %v, used %d; want refused with 60 used", ok, used)
	}
	// Answered at revision 12: still counted until the watch shows it.
	u.settle(uidA, 60, 12, true)
	if ok, _ := u.reserve(uidA, 60, 100); ok {
		t.Fatal("an answered write the watch has not shown was forgotten")
	}
	if err := u.apply(12, []*clientv3.Event{{Type: clientv3.EventTypePut, Kv: kv("/k", "v", 12, 12)}}); err != nil {
		t.Fatal(err)
	}
	// The write turned out to take 48 bytes; the reservation is gone.
	if ok, used := u.reserve(uidA, 52, 100); !ok {
		t.Fatalf("after the watch showed the write (%d bytes used), 52 more bytes were refused", used)
	}
	// A failed write releases its reservation at once; none is needed
	// without a quota or for writes that do not grow.
	u.settle(uidA, 52, 0, false)
	if ok, _ := u.reserve(uidA, 1<<40, 0); !ok {
		t.Fatal("a write was refused without a quota")
	}
	if ok, _ := u.reserve(uidA, 0, 1); !ok {
		t.Fatal("a write that does not grow was refused over quota")
	}
}
