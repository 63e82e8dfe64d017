package admincluster

import (
	"testing"

	"kubinception.dev/kubinception/internal/local/hostproc"
)

// TestOurProcess covers what teardown and the leftover check take for
// ours: above all the shims a worker's containerd leaves, whose command
// line names nothing of ours.
func TestOurProcess(t *testing.T) {
	const root = "/var/lib/kubinception"
	const host = "mnt:[4026531841]"
	tests := []struct {
		name string
		p    hostproc.Process
		ours bool
	}{
		{"shim of a worker's containerd, marked", hostproc.Process{Exe: "/usr/bin/containerd-shim-runc-v2",
			Args:    []string{"/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "abc", "-address", "/run/containerd/containerd.sock"},
			Env:     []string{"PATH=/usr/bin", hostproc.OwnerEnv + "=" + root + "/workers/1/2/run"},
			MountNS: "mnt:[4026532999]"}, true},
		{"shim of a worker's containerd, unmarked, in the worker's mount namespace", hostproc.Process{Exe: "/usr/bin/containerd-shim-runc-v2",
			Args:    []string{"/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-id", "abc", "-address", "/run/containerd/containerd.sock"},
			MountNS: "mnt:[4026532999]"}, true},
		{"shim of the admin node's containerd", hostproc.Process{Exe: "/usr/bin/containerd-shim-runc-v2",
			Args: []string{"/usr/bin/containerd-shim-runc-v2", "-namespace", "k8s.io", "-address", root + "/run/containerd.sock"}, MountNS: host}, true},
		{"kubelet started by a supervisor", hostproc.Process{Exe: "/root/.cache/kubinception/kubernetes-v1.35.4/bin/kube",
			Args: []string{"/root/.cache/kubinception/kubernetes-v1.35.4/bin/kubelet", "--config=/var/lib/kubelet/config.yaml"},
			Env:  []string{hostproc.OwnerEnv + "=" + root + "/run"}, MountNS: host}, true},
		{"binary from the state directory", hostproc.Process{Exe: root + "/workers/1/1/bin/tool", Args: []string{"tool"}, MountNS: host}, true},
		{"etcd naming the state directory", hostproc.Process{Exe: "/usr/local/bin/etcd", Args: []string{"etcd", "--data-dir=" + root + "/data/etcd"}, MountNS: host}, true},
		{"the machine's own containerd shim", hostproc.Process{Exe: "/usr/bin/containerd-shim-runc-v2",
			Args: []string{"/usr/bin/containerd-shim-runc-v2", "-namespace", "moby", "-address", "/run/containerd/containerd.sock"}, MountNS: host}, false},
		{"etcd of another state directory", hostproc.Process{Exe: "/usr/local/bin/etcd", Args: []string{"etcd", "--data-dir=" + root + "-e2e/data/etcd"}, MountNS: host}, false},
		{"another state directory's supervisor child", hostproc.Process{Exe: "/usr/bin/containerd", Args: []string{"containerd"},
			Env: []string{hostproc.OwnerEnv + "=" + root + "-e2e/run"}, MountNS: host}, false},
		{"a shell reading our logs", hostproc.Process{Exe: "/usr/bin/tail", Args: []string{"tail", "-f", root + "/logs/kubelet.log"}, MountNS: host}, false},
		{"an unrelated process", hostproc.Process{Exe: "/usr/sbin/sshd", Args: []string{"sshd"}, MountNS: host}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			why := ourProcess(tt.p, root, host)
			if (why != "") != tt.ours {
				t.Fatalf("ourProcess = %q, want ours=%v", why, tt.ours)
			}
		})
	}
}
