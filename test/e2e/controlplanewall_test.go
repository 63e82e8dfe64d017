package e2e

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/gatewaydeploy"
	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/local/admincluster"
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

// podPID finds a process of the pod with uid, to enter the pod's network
// namespace.
func podPID(t *testing.T, uid string) string {
	t.Helper()
	procs := podProcs(uid)
	if len(procs) == 0 {
		t.Fatalf("no process of pod %s found through /proc/*/cgroup", uid)
	}
	return strconv.Itoa(procs[0].PID)
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

// datastoreEndpoint is the datastore endpoint a control-plane pod's API
// server was given: its Datastore's gateway, at the gateway Service's
// address.
func datastoreEndpoint(t *testing.T, tenant string, pod cpPod) string {
	t.Helper()
	endpoint := ""
	flags := mustKube(t, "get", "pod", pod.name, "-o", `jsonpath={.spec.initContainers[*].args} {.spec.containers[*].command} {.spec.containers[*].args}`)
	for _, arg := range strings.FieldsFunc(flags, func(r rune) bool { return strings.ContainsRune(" \n[]\",", r) }) {
		if v, ok := strings.CutPrefix(arg, "--etcd-servers="); ok {
			endpoint = strings.TrimPrefix(strings.Split(v, ",")[0], "https://")
		}
	}
	if _, _, err := net.SplitHostPort(endpoint); err != nil {
		t.Fatalf("tenant %s: no datastore endpoint in its API server's flags (%q) among:\n%s\n%s", tenant, endpoint, flags, clusterState(t))
	}
	return endpoint
}

// testControlPlaneWall checks the NetworkPolicies around control planes
// in the admin cluster, from inside the pods' own network namespaces:
//
//   - tenant from (tunnel on: its egress is fenced) reaches its datastore
//     gateway and nothing of tenant to, nor the operator, nor the admin
//     node;
//   - tenant to (tunnel off: its egress is open but for the admin
//     cluster's protected networks, which install gives the operator on
//     the local admin cluster) reaches its own gateway, and a tenant
//     address gets past its policy to the admin node's fence; it reaches
//     neither from's control plane, nor the operator's metrics port, nor
//     the admin API server on the node address, which a tenant admin
//     could otherwise point it at;
//   - a gateway pod (no policy of its own: any admin-cluster client)
//     reaches from's API server, as any customer does, and none of from's
//     other ports.
func testControlPlaneWall(t *testing.T, from, to string) {
	t.Helper()
	src, dst := controlPlanePods(t, from)[0], controlPlanePods(t, to)[0]
	srcPID, dstPID := podPID(t, src.uid), podPID(t, dst.uid)
	srcGateway, dstGateway := datastoreEndpoint(t, from, src), datastoreEndpoint(t, to, dst)
	gw := strings.Fields(mustKube(t, "-n", install.Namespace, "get", "pods", "-l", gatewaydeploy.LabelComponent+"=gateway",
		"--field-selector=status.phase=Running", "-o", "jsonpath={.items[0].metadata.uid}"))
	if len(gw) != 1 {
		t.Fatalf("no running gateway pod in %s\n%s", install.Namespace, clusterState(t))
	}
	gwPID := podPID(t, gw[0])
	operatorIP := mustKube(t, "-n", install.Namespace, "get", "pods", "-l", "app.kubernetes.io/name="+install.Name, "-o", "jsonpath={.items[0].status.podIP}")
	if net.ParseIP(operatorIP) == nil {
		t.Fatalf("operator pod IP %q\n%s", operatorIP, clusterState(t))
	}
	operatorMetrics := net.JoinHostPort(operatorIP, "8080")
	adminAPIServer := net.JoinHostPort(config(t).NodeIP.String(), "6443")

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
	apiPort := ""
	for _, p := range src.ports {
		if p != fmt.Sprint(controlplane.TunnelPort) && p != fmt.Sprint(controlplane.TunnelHTTPPort) && p != fmt.Sprint(controlplane.TunnelClientPort) {
			apiPort = p
		}
	}
	if apiPort == "" {
		t.Fatalf("no API server port among %v", src.ports)
	}

	// The probes work: what the policies allow connects. Both gateways
	// are pods of the protected pod range, reached through the rule
	// naming them.
	mustConnect(srcPID, srcGateway, from+"'s control plane reaches its datastore gateway")
	mustConnect(dstPID, dstGateway, to+"'s control plane (no tunnel) reaches its datastore gateway")
	mustConnect(gwPID, net.JoinHostPort(src.ip, apiPort), "a gateway pod reaches "+from+"'s API server, as any customer")
	mustConnect(gwPID, operatorMetrics, "a gateway pod reaches the operator's metrics port")
	// Without the tunnel, an address of the tenant's network passes the
	// policy and meets the fence on the admin node, which refuses it
	// there (nothing routes tenant ranges off the machine).
	before := fenceCounts(t)
	err := dialFrom(t.Context(), dstPID, "10.244.9.9:8443")
	if after := fenceCounts(t); after[admincluster.FenceCommentPrivate] <= before[admincluster.FenceCommentPrivate] {
		t.Fatalf("%s's control plane (no tunnel) to a tenant address (%v): fence rule %q refused nothing (%d packets before, %d after): its policy stopped it first",
			to, err, admincluster.FenceCommentPrivate, before[admincluster.FenceCommentPrivate], after[admincluster.FenceCommentPrivate])
	}

	// What they do not allow connects nowhere.
	for _, port := range dst.ports {
		mustNotConnect(srcPID, net.JoinHostPort(dst.ip, port), from+"'s control plane to "+to+"'s port "+port)
	}
	for _, pid := range []struct{ pid, tenant string }{{srcPID, from}, {dstPID, to}} {
		mustNotConnect(pid.pid, adminAPIServer, pid.tenant+"'s control plane to the admin API server on the node address")
		mustNotConnect(pid.pid, operatorMetrics, pid.tenant+"'s control plane to the operator's metrics port")
	}
	mustNotConnect(dstPID, net.JoinHostPort(src.ip, apiPort), to+"'s control plane (no tunnel) to "+from+"'s API server, a pod of the admin cluster")
	for _, port := range []int{controlplane.TunnelHTTPPort, controlplane.TunnelClientPort} {
		mustNotConnect(dstPID, net.JoinHostPort(src.ip, fmt.Sprint(port)), fmt.Sprintf("%s's control plane to %s's port %d", to, from, port))
		mustNotConnect(gwPID, net.JoinHostPort(src.ip, fmt.Sprint(port)), fmt.Sprintf("a gateway pod to %s's port %d", from, port))
	}
}
