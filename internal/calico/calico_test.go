package calico

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestCRDsDecodeAndCoverWhatFelixLists(t *testing.T) {
	crds, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, c := range crds {
		if c.Spec.Group != Group {
			t.Errorf("%s: group %q, want %q", c.Name, c.Spec.Group, Group)
		}
		got[c.Spec.Names.Plural] = true
	}
	for _, plural := range []string{"clusterinformations", "felixconfigurations", "ippools", "networkpolicies", "globalnetworkpolicies", "hostendpoints"} {
		if !got[plural] {
			t.Errorf("no CRD for %s among %d", plural, len(crds))
		}
	}
	if len(crds) != 18 {
		t.Errorf("%d CRDs, want the release's 18", len(crds))
	}
}

func TestObjectsOrderCRDsBeforeResources(t *testing.T) {
	objs, err := Objects(Params{Namespace: "kube-system", PodCIDRs: []string{"10.244.0.0/16", "10.245.0.0/16"}, FelixUsers: []string{"u"}})
	if err != nil {
		t.Fatal(err)
	}
	lastCRD, firstCR := -1, -1
	var pools []string
	for i, o := range objs {
		kind := o.GetObjectKind().GroupVersionKind().Kind
		switch kind {
		case "CustomResourceDefinition":
			lastCRD = i
		case "ClusterInformation", "IPPool":
			if firstCR < 0 {
				firstCR = i
			}
			if kind == "IPPool" {
				pools = append(pools, o.GetName())
			}
		case "":
			t.Errorf("object %s has no kind", o.GetName())
		}
	}
	if lastCRD < 0 || firstCR < 0 || firstCR < lastCRD {
		t.Fatalf("custom resources must follow every CRD: last CRD at %d, first resource at %d", lastCRD, firstCR)
	}
	if strings.Join(pools, ",") != "pods,pods-1" {
		t.Errorf("pools %v", pools)
	}
}

func TestCNIConfigIsAPolicyOnlyCalicoNetwork(t *testing.T) {
	s, err := CNI{NodeName: "n1", Subnet: "usePodCidr", Kubeconfig: "/k"}.Config()
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Name    string
		Plugins []map[string]any
	}
	if err := json.Unmarshal([]byte(s), &conf); err != nil {
		t.Fatal(err)
	}
	if conf.Name != NetworkName || len(conf.Plugins) != 2 || conf.Plugins[0]["type"] != "calico" || conf.Plugins[1]["type"] != "portmap" {
		t.Fatalf("config %s", s)
	}
	ipam := conf.Plugins[0]["ipam"].(map[string]any)
	if ipam["type"] != "host-local" || ipam["subnet"] != "usePodCidr" {
		t.Errorf("ipam %v", ipam)
	}
}

func TestFelixEnvNeverLegacyTables(t *testing.T) {
	env := Felix{NodeName: "n1"}.Env()
	if env["FELIX_IPTABLESBACKEND"] != "nft" || env["FELIX_FELIXHOSTNAME"] != "n1" || env["FELIX_DATASTORETYPE"] != "kubernetes" {
		t.Fatalf("env %v", env)
	}
}

func TestCRDsAreCopies(t *testing.T) {
	first, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	first[0].Annotations = map[string]string{"changed": "by a caller"}
	second, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	if second[0].Annotations["changed"] != "" {
		t.Fatal("a caller's change to a CRD reached the next caller")
	}
}
