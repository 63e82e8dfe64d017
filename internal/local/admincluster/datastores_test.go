package admincluster

import (
	"slices"
	"strings"
	"testing"
)

// TestSecondDatastore runs two datastores: the second's members are
// static pods like the first's, with ports, directories, cluster token and
// Secrets of their own, and the first keeps exactly what it had.
func TestSecondDatastore(t *testing.T) {
	one := testConfig()
	two := testConfig()
	two.Datastores = 2
	if err := two.Validate(); err != nil {
		t.Fatal(err)
	}
	podsOf := func(c Config) map[string][]string {
		m := map[string][]string{}
		for _, sp := range staticPods(c, nil, "h") {
			if ds := sp.Pod.Labels[DatastoreLabel]; ds != "" {
				m[sp.Pod.Name] = sp.Pod.Spec.Containers[0].Args
			}
		}
		return m
	}
	before, after := podsOf(one), podsOf(two)
	if len(before) != DatastoreMembers || len(after) != 2*DatastoreMembers {
		t.Fatalf("datastore pods: %d with one datastore, %d with two", len(before), len(after))
	}
	for name, args := range before {
		if !slices.Equal(args, after[name]) {
			t.Errorf("adding a datastore changed %s:\n%v\n%v", name, args, after[name])
		}
	}
	seen := map[string]string{}
	for name, args := range after {
		for _, a := range args {
			for _, flag := range []string{"--listen-peer-urls=", "--data-dir=", "--advertise-client-urls="} {
				if v, ok := strings.CutPrefix(a, flag); ok {
					if other, dup := seen[flag+v]; dup {
						t.Errorf("%s and %s share %s%s", name, other, flag, v)
					}
					seen[flag+v] = name
				}
			}
		}
	}
	second := two.datastores()[1]
	if second.name() != "datastore-2" || second.rootSecret() != "datastore-2-root" || second.caSecret() != "datastore-2-ca" {
		t.Errorf("second datastore named %s, Secrets %s and %s", second.name(), second.rootSecret(), second.caSecret())
	}
	if !strings.Contains(strings.Join(after["datastore2-0"], " "), "--initial-cluster-token=kubinception-datastore-2") {
		t.Errorf("datastore2-0 joins another cluster: %v", after["datastore2-0"])
	}
	if n, want := len(two.allPorts()), len(one.allPorts())+2*DatastoreMembers; n != want {
		t.Errorf("%d distinct ports with two datastores, want %d", n, want)
	}
	if strings.HasPrefix(second.pkiDir(), two.paths().PKI()) {
		t.Errorf("the second datastore's PKI %s lies in the tree whose hash restarts every static pod", second.pkiDir())
	}
	bad := testConfig()
	bad.Datastores = MaxDatastores + 1
	if bad.Validate() == nil {
		t.Errorf("%d datastores accepted", bad.Datastores)
	}
}
