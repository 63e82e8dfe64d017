package release

import (
	"fmt"
	"strings"
)

// LocalRegistry is the registry name images built on this machine are
// imported under. Nothing is ever pulled from it: pods use
// imagePullPolicy Never or IfNotPresent.
const LocalRegistry = "kubinception.local"

// PauseTag is the tag of the pod sandbox image.
const PauseTag = "3.10"

// Names says which image reference each component runs from. Production
// points Registry at the upstream registry; locally it is LocalRegistry.
type Names struct {
	Registry          string
	KubernetesVersion string
	EtcdVersion       string
	CoreDNSVersion    string
	// KubinceptionTag tags the kubinception image; it changes with every
	// build of the binary.
	KubinceptionTag string
}

// Component is the image of a Kubernetes component such as kube-apiserver.
func (n Names) Component(name string) string {
	return fmt.Sprintf("%s/%s:%s", n.Registry, name, n.KubernetesVersion)
}

// Etcd is the etcd image.
func (n Names) Etcd() string { return fmt.Sprintf("%s/etcd:%s", n.Registry, n.EtcdVersion) }

// CoreDNS is the cluster DNS image.
func (n Names) CoreDNS() string { return fmt.Sprintf("%s/coredns:%s", n.Registry, n.CoreDNSVersion) }

// Calico is the image of Calico's Felix, CNI plugin and CNI installer
// (the networkPolicy addon's DaemonSet).
func (n Names) Calico() string {
	return fmt.Sprintf("%s/calico-node:%s", n.Registry, CalicoVersion)
}

// Pause is the pod sandbox image.
func (n Names) Pause() string { return fmt.Sprintf("%s/pause:%s", n.Registry, PauseTag) }

// Tinyhost is the small test workload image.
func (n Names) Tinyhost() string { return fmt.Sprintf("%s/tinyhost:%s", n.Registry, PauseTag) }

// Kubinception is the operator's image.
func (n Names) Kubinception() string {
	return fmt.Sprintf("%s/kubinception:%s", n.Registry, n.KubinceptionTag)
}

// Validate checks that every part of a reference is set.
func (n Names) Validate() error {
	switch {
	case n.Registry == "" || strings.ContainsAny(n.Registry, " @"):
		return fmt.Errorf("image registry %q is not valid: give a host name such as %s or registry.k8s.io", n.Registry, LocalRegistry)
	case n.KubernetesVersion == "":
		return fmt.Errorf("image names need a Kubernetes version")
	case n.EtcdVersion == "":
		return fmt.Errorf("image names need an etcd version")
	}
	return nil
}
