package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kubinception.dev/kubinception/internal/controlplane"
)

// cpPod is one control-plane pod of a tenant in the admin cluster.
type cpPod struct {
	name, uid, ip string
	ports         []string
}

func controlPlanePods(t *testing.T, tenant string) []cpPod {
	t.Helper()
	out := mustKube(t, "get", "pods", "-l", "kubinception.dev/tenant="+tenant+",kubinception.dev/component=control-plane",
		"-o", `jsonpath={range .items[*]}{.metadata.name} {.metadata.uid} {.status.podIP} {range .spec.containers[*]}{range .ports[*]}{.containerPort},{end}{end}{range .spec.initContainers[*]}{range .ports[*]}{.containerPort},{end}{end}{"\n"}{end}`)
	var pods []cpPod
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) != 4 {
			t.Fatalf("control-plane pod line %q\n%s", l, clusterState(t))
		}
		pods = append(pods, cpPod{name: f[0], uid: f[1], ip: f[2], ports: strings.Split(strings.TrimSuffix(f[3], ","), ",")})
	}
	if len(pods) == 0 {
		t.Fatalf("tenant %s has no control-plane pod\n%s", tenant, clusterState(t))
	}
	return pods
}

// podPID finds a process of the pod with uid through its cgroup, to enter
// the pod's network namespace.
func podPID(t *testing.T, uid string) string {
	t.Helper()
	want := "pod" + uid
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(data), want) {
			return filepath.Base(filepath.Dir(p))
		}
	}
	t.Fatalf("no process of pod %s found through /proc/*/cgroup", uid)
	return ""
}

// dialFrom opens a TCP connection to address inside the network namespace
// of process pid, and reports whether it was accepted within 3 seconds.
func dialFrom(ctx context.Context, pid, address string) error {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", "-t", pid, "-n", "--", "timeout", "3", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%s", host, port))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("connect to %s from pid %s: %w: %s", address, pid, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// testControlPlaneWall checks the NetworkPolicies around control planes
// in the admin cluster, from inside the pods' own network namespaces:
// tenant from (tunnel on: its egress is fenced) reaches its datastore
// gateway and nothing of tenant to, nor the admin node; tenant to (tunnel
// off: its egress is open) reaches from's API server, as any customer
// does, and none of from's other ports.
func testControlPlaneWall(t *testing.T, from, to string) {
	t.Helper()
	src, dst := controlPlanePods(t, from)[0], controlPlanePods(t, to)[0]
	srcPID, dstPID := podPID(t, src.uid), podPID(t, dst.uid)
	// The datastore endpoint the API server was given: the gateway.
	gateway := ""
	flags := mustKube(t, "get", "pod", src.name, "-o", `jsonpath={.spec.initContainers[*].args} {.spec.containers[*].command} {.spec.containers[*].args}`)
	for _, arg := range strings.FieldsFunc(flags, func(r rune) bool { return strings.ContainsRune(" \n[]\",", r) }) {
		if v, ok := strings.CutPrefix(arg, "--etcd-servers="); ok {
			gateway = strings.TrimPrefix(strings.Split(v, ",")[0], "https://")
		}
	}
	if _, _, err := net.SplitHostPort(gateway); err != nil {
		t.Fatalf("tenant %s: no datastore endpoint in its API server's flags (%q) among:\n%s\n%s", from, gateway, flags, clusterState(t))
	}
	mustConnect := func(pid, address, what string) {
		t.Helper()
		eventually(t, time.Minute, what, func(ctx context.Context) error { return dialFrom(ctx, pid, address) },
			func() string { return clusterState(t) })
	}
	mustNotConnect := func(pid, address, what string) {
		t.Helper()
		if err := dialFrom(t.Context(), pid, address); err == nil {
			t.Fatalf("%s: connected to %s\n%s", what, address, clusterState(t))
		} else {
			t.Logf("%s: refused as it should be (%v)", what, err)
		}
	}
	// The probe works: what the policies allow connects.
	mustConnect(srcPID, gateway, from+"'s control plane reaches its datastore gateway")
	apiPort := ""
	for _, p := range src.ports {
		if p != fmt.Sprint(controlplane.TunnelPort) && p != fmt.Sprint(controlplane.TunnelHTTPPort) && p != fmt.Sprint(controlplane.TunnelClientPort) {
			apiPort = p
		}
	}
	if apiPort == "" {
		t.Fatalf("no API server port among %v", src.ports)
	}
	mustConnect(dstPID, net.JoinHostPort(src.ip, apiPort), to+"'s control plane reaches "+from+"'s API server, as any customer")

	// What they do not allow connects nowhere.
	for _, port := range dst.ports {
		mustNotConnect(srcPID, net.JoinHostPort(dst.ip, port), from+"'s control plane to "+to+"'s port "+port)
	}
	mustNotConnect(srcPID, net.JoinHostPort(config(t).NodeIP.String(), "6443"), from+"'s control plane to the admin API server")
	for _, port := range []int{controlplane.TunnelHTTPPort, controlplane.TunnelClientPort} {
		mustNotConnect(dstPID, net.JoinHostPort(src.ip, fmt.Sprint(port)), fmt.Sprintf("%s's control plane to %s's port %d", to, from, port))
	}
}
