package hostproc

import (
	"context"
	"net"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

func TestWithin(t *testing.T) {
	tests := []struct {
		path, dir string
		want      bool
	}{
		{"/var/lib/kubinception", "/var/lib/kubinception", true},
		{"/var/lib/kubinception/workers/1/1/run", "/var/lib/kubinception", true},
		{"/var/lib/kubinception/", "/var/lib/kubinception", true},
		{"/var/lib/kubinception-e2e/run", "/var/lib/kubinception", false},
		{"/var/lib", "/var/lib/kubinception", false},
		{"", "/var/lib/kubinception", false},
	}
	for _, tt := range tests {
		if got := Within(tt.path, tt.dir); got != tt.want {
			t.Errorf("Within(%q, %q) = %v, want %v", tt.path, tt.dir, got, tt.want)
		}
	}
}

func TestNamesPath(t *testing.T) {
	const dir = "/var/lib/kubinception/workers/1/1"
	tests := []struct {
		args []string
		want bool
	}{
		{[]string{"kubinception", "admin", "supervise", "--root", dir}, true},
		{[]string{"etcd", "--data-dir=" + dir}, true},
		{[]string{"containerd", "--config", dir + "/config/containerd.toml"}, true},
		{[]string{"kubinception", "admin", "supervise", "--root", "/var/lib/kubinception/workers/1/12"}, false},
		{[]string{"containerd", "--config", "/var/lib/kubinception/workers/1/10/config/containerd.toml"}, false},
		{[]string{"sleep", "100"}, false},
	}
	for _, tt := range tests {
		if got := (Process{Args: tt.args}).NamesPath(dir); got != tt.want {
			t.Errorf("%q names %s: %v, want %v", tt.args, dir, got, tt.want)
		}
	}
}

func TestMountPointsIn(t *testing.T) {
	const mountinfo = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
90 22 0:50 / /var/lib/kubinception/containerd/state/io.containerd.grpc.v1.cri/sandboxes/abc/shm rw - tmpfs shm rw
91 22 0:51 / /var/lib/kubinception-e2e/kubelet/pods/x rw - tmpfs tmpfs rw
92 22 0:52 / /var/lib/kubinception/with\040space rw - tmpfs tmpfs rw
93 22 0:53 / /var/lib/kubinception rw - tmpfs tmpfs rw
`
	got := mountPointsIn(mountinfo, "/var/lib/kubinception")
	want := []string{
		"/var/lib/kubinception/containerd/state/io.containerd.grpc.v1.cri/sandboxes/abc/shm",
		"/var/lib/kubinception/with space",
		"/var/lib/kubinception",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("mountPointsIn = %q, want %q", got, want)
	}
}

func TestListeningInodes(t *testing.T) {
	const tcp = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2710 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:2710 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 20 4 30 10 -1
   2: 00000000:1A0B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3333 1 0000000000000000 100 0 0 10 0
   3: 0500007F:192B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
   4: 0100C70A:192B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 100 0 0 10 0
`
	const tcp6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6666 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7777 1 0000000000000000 100 0 0 10 0
`
	loopback, node := net.ParseIP("127.0.0.1"), net.ParseIP("10.199.0.1")
	tests := []struct {
		name, table string
		ip          net.IP
		port        int
		want        []string
	}{
		{"a listener on the address; the established connection is not one", tcp, loopback, 10000, []string{"1111"}},
		{"a wildcard listener takes every address", tcp, node, 6667, []string{"3333"}},
		{"another loopback address is not ours", tcp, loopback, 6443, nil},
		{"the node address", tcp, node, 6443, []string{"5555"}},
		{"IPv6 wildcard", tcp6, node, 8080, []string{"6666"}},
		{"IPv6 loopback is not the node address", tcp6, node, 8081, nil},
		{"IPv6 loopback", tcp6, net.IPv6loopback, 8081, []string{"7777"}},
		{"empty table", "", loopback, 80, nil},
	}
	for _, tt := range tests {
		if got := listeningInodes(tt.table, tt.ip, tt.port); !slices.Equal(got, tt.want) {
			t.Errorf("%s: listeningInodes(%s, %d) = %v, want %v", tt.name, tt.ip, tt.port, got, tt.want)
		}
	}
}

// TestListenerPID finds a child holding a listening socket by the
// socket's address and port, and nothing at another address.
func TestListenerPID(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	f, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("sleep", "300")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if pid := ListenerPID(net.ParseIP("127.0.0.1"), port); pid != cmd.Process.Pid {
		t.Errorf("ListenerPID(127.0.0.1, %d) = %d, want the child %d", port, pid, cmd.Process.Pid)
	}
	if pid := ListenerPID(net.ParseIP("127.0.0.2"), port); pid != 0 {
		t.Errorf("ListenerPID(127.0.0.2, %d) = %d, want none", port, pid)
	}
}

// TestFindOwnedAndKill starts a child marked as owned by a directory, finds
// it by its mark and kills it: the path teardown takes for a shim.
func TestFindOwnedAndKill(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("sleep", "300")
	cmd.Env = append(os.Environ(), OwnerEnv+"="+dir+"/run")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	pid := cmd.Process.Pid

	owned := func(p Process) bool { return p.OwnedBy(dir) }
	found := Find(owned)
	if !slices.Equal(PIDs(found), []int{pid}) {
		t.Fatalf("Find(owned by %s) = %v, want only the child %d", dir, PIDs(found), pid)
	}
	if p := found[0]; p.Name() != "sleep" || p.Cmdline() != "sleep 300" {
		t.Errorf("child seen as name %q, command line %q", p.Name(), p.Cmdline())
	}
	if other := Find(func(p Process) bool { return p.OwnedBy(dir + "-other") }); len(other) != 0 {
		t.Errorf("a sibling directory owns %v", PIDs(other))
	}
	if self := Self(); self.MountNS == "" || found[0].MountNS != self.MountNS {
		t.Errorf("mount namespaces: child %q, self %q", found[0].MountNS, self.MountNS)
	}
	if err := KillMatching(context.Background(), 10*time.Second, owned); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the child still runs after KillMatching returned")
	}
	if Alive(pid) {
		t.Errorf("pid %d is alive after it was reaped", pid)
	}
}
