package nodeconfig

import "fmt"

// Containerd describes one containerd instance.
type Containerd struct {
	Root, State, Socket, Opt, RuncRoot string
	// SandboxImage is the locally imported pause image.
	SandboxImage string
	// CNIConfDir holds the pod network's configuration.
	CNIConfDir string
	// CNIBinDir holds the CNI plugins; DefaultCNIBinDir when empty.
	CNIBinDir string
}

// DefaultCNIBinDir is where Debian's containernetworking-plugins puts the
// standard CNI plugins.
const DefaultCNIBinDir = "/usr/lib/cni"

// Render returns containerd's configuration file.
func (c Containerd) Render() string {
	binDir := c.CNIBinDir
	if binDir == "" {
		binDir = DefaultCNIBinDir
	}
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # The machine lacks CAP_SYS_RESOURCE: without this every sandbox fails.
  restrict_oom_score_adj = true
  # Keeps pod network namespaces under our state directory, not /var/run/netns.
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, c.Root, c.State, c.Socket, c.Opt, c.SandboxImage, c.RuncRoot, binDir, c.CNIConfDir)
}
