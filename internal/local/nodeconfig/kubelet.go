package nodeconfig

import (
	"fmt"
	"strings"
)

// Kubelet is what every kubelet of ours needs on this kind of machine,
// whatever its cluster wants: each setting was found by a failure.
type Kubelet struct {
	// RuntimeEndpoint is containerd's CRI socket path.
	RuntimeEndpoint string
	// CgroupRoot, when set, is the cgroup the kubelet puts pods under,
	// apart from other kubelets on the machine.
	CgroupRoot string
}

// Render returns a KubeletConfiguration holding the machine's settings
// followed by node, the node's own settings as YAML fields. With node
// empty it is a drop-in (kubelet --config-dir) that overrides whatever
// the main configuration says; a worker's main configuration is the one
// kubeadm join writes from its tenant.
func (k Kubelet) Render(node string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1; cgroupfs (containerd 1.6 lacks the RuntimeConfig call); no
# swap check; no OOM score change (the machine lacks CAP_SYS_RESOURCE).
failCgroupV1: false
cgroupDriver: cgroupfs
oomScoreAdj: 0
failSwapOn: false
containerRuntimeEndpoint: unix://%s
`, k.RuntimeEndpoint)
	if k.CgroupRoot != "" {
		fmt.Fprintf(&b, "cgroupRoot: %s\n", k.CgroupRoot)
	}
	b.WriteString(`# Images are imported, never pulled: nothing may garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
  nodefs.inodesFree: 1%
`)
	b.WriteString(node)
	return b.String()
}
