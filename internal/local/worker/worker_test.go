package worker

import (
	"strings"
	"testing"
)

func TestLayoutAllocatesSegmentsAndNames(t *testing.T) {
	l := Layout{Root: t.TempDir()}
	a1, err := l.Allocate("default/a", "", false)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := l.Allocate("default/a", "", false)
	if err != nil {
		t.Fatal(err)
	}
	b1, err := l.Allocate("team/b", "", false)
	if err != nil {
		t.Fatal(err)
	}
	if a1.Node != "a-w1" || a2.Node != "a-w2" || b1.Node != "team-b-w1" {
		t.Fatalf("node names %s %s %s", a1.Node, a2.Node, b1.Node)
	}
	if a1.Segment != a2.Segment || a1.Segment == b1.Segment {
		t.Fatalf("segments: a=%d,%d b=%d; a tenant's workers share one, tenants never do", a1.Segment, a2.Segment, b1.Segment)
	}
	if a1.IP().Equal(a2.IP()) || a1.NetNS() == a2.NetNS() || a1.CgroupRoot() == a2.CgroupRoot() {
		t.Fatal("two workers share an address, namespace or cgroup")
	}
	for _, w := range []Worker{a1, a2, b1} {
		if len(w.HostVeth()) > 15 || len(w.Bridge()) > 15 {
			t.Errorf("interface names %s/%s exceed the kernel's 15 characters", w.HostVeth(), w.Bridge())
		}
	}
	if _, err := l.Allocate("default/a", "a-w1", false); err == nil || !strings.Contains(err.Error(), "already has") {
		t.Fatalf("a duplicate node name was accepted: %v", err)
	}
	if last, err := l.Release(a1); err != nil || last {
		t.Fatalf("Release(a1) = last %v, %v; a2 remains", last, err)
	}
	a3, err := l.Allocate("default/a", "", false)
	if err != nil || a3.Index != 1 {
		t.Fatalf("a freed index is not reused: %+v %v", a3, err)
	}
	for _, w := range []Worker{a2, a3} {
		if _, err := l.Release(w); err != nil {
			t.Fatal(err)
		}
	}
	if ws, _ := l.List("default/a"); len(ws) != 0 {
		t.Fatalf("workers left: %v", ws)
	}
	c1, err := l.Allocate("default/c", "", false)
	if err != nil || c1.Segment != a1.Segment {
		t.Fatalf("a released segment is not reused: %+v %v", c1, err)
	}
}

func TestNATRules(t *testing.T) {
	behind := Worker{Segment: 7, Index: 1}
	rules := behind.natRules()
	want := "-A KUBI-NAT -i eth0 -m mac --mac-source 02:6b:75:62:69:07 -m conntrack --ctstate NEW"
	if !strings.Contains(rules, want) || !strings.Contains(rules, "-j DROP") {
		t.Errorf("a worker behind NAT must drop new connections from its segment bridge (%s); rules:\n%s", want, rules)
	}
	reachable := Worker{Segment: 7, Index: 1, Reachable: true}
	if rules := reachable.natRules(); strings.Contains(rules, "-A ") || !strings.Contains(rules, ":KUBI-NAT - [0:0]") {
		t.Errorf("a reachable worker gets an empty NAT chain; rules:\n%s", rules)
	}
}
