package install

import (
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestCRDsCarryValidation(t *testing.T) {
	crds, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]*unstructured.Unstructured{}
	for _, c := range crds {
		names[c.GetName()] = c
	}
	tc, ok := names["tenantclusters.kubinception.dev"]
	if !ok || names["datastores.kubinception.dev"] == nil {
		t.Fatalf("CRDs = %v, want tenantclusters and datastores", names)
	}
	text, _ := tc.MarshalJSON()
	for _, rule := range []string{"spec.version must be a supported", "network is immutable", "metadata.name must be at most 40", "network.serviceCIDR must be an IPv4 CIDR"} {
		if !strings.Contains(string(text), rule) {
			t.Errorf("the TenantCluster CRD lacks the rule %q; run hack/generate", rule)
		}
	}
}

func TestOperatorRBACIsScoped(t *testing.T) {
	for _, obj := range Objects(Options{Image: "img", Registry: "reg"}) {
		cr, ok := obj.(*rbacv1.ClusterRole)
		if !ok {
			continue
		}
		for _, rule := range cr.Rules {
			for _, s := range append(append(rule.Verbs, rule.Resources...), rule.APIGroups...) {
				if s == "*" {
					t.Fatalf("ClusterRole has a wildcard: %+v", rule)
				}
			}
			for _, r := range rule.Resources {
				if (r == "pods" || r == "nodes") && len(rule.Verbs) != 3 {
					t.Errorf("%s must be read-only, got %v", r, rule.Verbs)
				}
			}
		}
		return
	}
	t.Fatal("no ClusterRole rendered")
}
