package testenv

import (
	"context"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// KubernetesServiceEndpoints describes, inside a cluster, the kubernetes
// Service's Endpoints ("Endpoints IP:PORT") and EndpointSlices
// ("EndpointSlice NAME IP:PORT"), one line per address and port, in that
// order: what the conformance test "should have Endpoints and
// EndpointSlices pointing to API Server" compares.
func KubernetesServiceEndpoints(ctx context.Context, cs kubernetes.Interface) ([]string, error) {
	eps, err := cs.CoreV1().Endpoints(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("the kubernetes Service's Endpoints: %w", err)
	}
	sls, err := cs.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=kubernetes"})
	if err != nil {
		return nil, fmt.Errorf("the kubernetes Service's EndpointSlices: %w", err)
	}
	var out []string
	for _, s := range eps.Subsets {
		for _, a := range s.Addresses {
			for _, p := range s.Ports {
				out = append(out, fmt.Sprintf("Endpoints %s:%d", a.IP, p.Port))
			}
		}
	}
	for _, sl := range sls.Items {
		for _, e := range sl.Endpoints {
			for _, p := range sl.Ports {
				port := "?"
				if p.Port != nil {
					port = fmt.Sprint(*p.Port)
				}
				out = append(out, fmt.Sprintf("EndpointSlice %s %s:%s", sl.Name, strings.Join(e.Addresses, ","), port))
			}
		}
	}
	return out, nil
}
