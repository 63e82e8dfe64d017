package tenantbootstrap

import (
	"encoding/json"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestNetworkPolicyAddon(t *testing.T) {
	p := params(t)
	p.NetworkPolicy, p.CalicoImage = true, "r/calico-node:v3.28.5"
	objs, err := Objects(p)
	if err != nil {
		t.Fatal(err)
	}
	var ds *appsv1.DaemonSet
	crds, lastCRD, clusterInfo, pools := 0, -1, -1, 0
	for i, o := range objs {
		if o.GetLabels()[ManagedLabel] != NetworkPolicyAddon {
			continue
		}
		switch o.GetObjectKind().GroupVersionKind().Kind {
		case "CustomResourceDefinition":
			crds++
			lastCRD = i
		case "ClusterInformation":
			clusterInfo = i
		case "IPPool":
			pools++
			spec := o.(interface{ UnstructuredContent() map[string]any }).UnstructuredContent()["spec"].(map[string]any)
			if spec["cidr"] != p.PodCIDR || spec["natOutgoing"] != true {
				t.Errorf("IPPool spec %v: want the tenant's pod range with natOutgoing", spec)
			}
		case "DaemonSet":
			ds = o.(*appsv1.DaemonSet)
		}
	}
	if crds == 0 || clusterInfo < lastCRD || pools != 1 || ds == nil {
		t.Fatalf("crds=%d (last at %d), ClusterInformation at %d, pools=%d, DaemonSet=%v", crds, lastCRD, clusterInfo, pools, ds != nil)
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork || len(spec.InitContainers) != 1 || len(spec.Containers) != 2 {
		t.Fatalf("calico-node must run on the host network with the CNI installer first: %+v", spec)
	}
	env := func(c corev1.Container) map[string]corev1.EnvVar {
		m := map[string]corev1.EnvVar{}
		for _, e := range c.Env {
			m[e.Name] = e
		}
		return m
	}
	install, felix := env(spec.InitContainers[0]), env(spec.Containers[0])
	for _, e := range []map[string]corev1.EnvVar{install, felix, env(spec.Containers[1])} {
		// Before kube-proxy runs, the Service address of the API server
		// leads nowhere: every container uses the tenant's endpoint.
		if e["KUBERNETES_SERVICE_HOST"].Value != "10.199.0.1" || e["KUBERNETES_SERVICE_PORT"].Value != "31000" {
			t.Errorf("API address %v:%v, want the endpoint 10.199.0.1:31000", e["KUBERNETES_SERVICE_HOST"].Value, e["KUBERNETES_SERVICE_PORT"].Value)
		}
	}
	var conf map[string]any
	if err := json.Unmarshal([]byte(install["CNI_NETWORK_CONFIG"].Value), &conf); err != nil {
		t.Fatalf("CNI_NETWORK_CONFIG is not JSON: %v", err)
	}
	if install["CNI_CONF_NAME"].Value != CalicoConfName || install["SLEEP"].Value != "false" {
		t.Errorf("installer env %v", install)
	}
	if f := felix["FELIX_FELIXHOSTNAME"]; f.ValueFrom == nil || f.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("Felix must police the pods of its own node: FELIX_FELIXHOSTNAME %+v", f)
	}
	if felix["FELIX_IPTABLESBACKEND"].Value != "nft" {
		t.Errorf("Felix must write the nftables backend kube-proxy uses, got %q", felix["FELIX_IPTABLESBACKEND"].Value)
	}
}

func TestNetworkPolicyAddonNeedsAnEndpoint(t *testing.T) {
	p := params(t)
	p.NetworkPolicy, p.CalicoImage, p.Endpoint = true, "r/calico-node:v3.28.5", "not a url"
	_, err := Objects(p)
	if err == nil || !strings.Contains(err.Error(), "networkPolicy addon") {
		t.Fatalf("an endpoint that is not a URL must be refused by the addon, got %v", err)
	}
}
