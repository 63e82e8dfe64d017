package admincluster

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"kubinception.dev/kubinception/internal/calico"
)

// The fence keeps what runs on the local admin node on the machine and
// apart. Every tenant uses the same default Service and pod ranges, and
// nothing on the admin node routes them: a tenant API server dialling a
// tenant address (a webhook, an aggregated API, the service proxy) would
// send its packets out of the default route, off the machine, and the
// same addresses may belong to the admin cluster's own Services. The local
// workers stand for customers' machines, which reach the admin cluster
// only at the API server (and tunnel) endpoints.
const (
	// FenceChain is jumped to first from FORWARD.
	FenceChain = "KUBI-FENCE"
	// FenceInputChain is jumped to first from INPUT.
	FenceInputChain = "KUBI-FENCE-INPUT"
	// SegmentInterfacePrefix starts the name of every worker segment's
	// bridge (kubi-t<segment>).
	SegmentInterfacePrefix = "kubi-t"
)

// PrivateRanges are the IPv4 ranges tenants' Service and pod ranges come
// from (RFC 1918 and the shared address space of RFC 6598). The fence
// never forwards them off the machine.
var PrivateRanges = []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"}

// Fence rule comments, which name the rules in counters and logs.
const (
	FenceCommentPrivate    = "kubinception: a private (tenant) range never leaves the machine"
	FenceCommentAdminPods  = "kubinception: admin pods reach nothing off the machine"
	FenceCommentWorkerPods = "kubinception: tenant nodes reach no admin pod or Service"
	FenceCommentSegments   = "kubinception: tenant segments do not meet"
	FenceCommentWorkerHost = "kubinception: tenant nodes open no connection to the admin node"
)

// fenceRules is the iptables-restore input (for --noflush) that declares,
// and so empties, both fence chains and fills them:
//
//   - from a worker segment, only connections to the node address that a
//     node port translated (a tenant's API server and tunnel), and to a
//     load-balancer address, may reach the admin cluster's pods; admin pods and Services are refused
//     otherwise, and so is another tenant's segment; bridged traffic
//     within a segment (the tenant's own nodes and pods) passes;
//   - towards our own interfaces (node address, segments) and towards
//     admin pods on theirs, anything else passes: the admin side reaching
//     workers is the workers' to refuse (see the worker's NAT emulation),
//     and NetworkPolicy, enforced by Felix, decides what reaches a pod;
//   - leaving through any other interface, private ranges are refused
//     whoever sends them, and admin pods send nothing at all;
//   - on INPUT, a worker segment may only answer: a tenant node opens no
//     connection to the admin node's own services (its API server, etcd,
//     kubelet).
//
// Refusals are REJECTs, so a caller fails at once instead of timing out,
// and each rule counts what it refused.
func fenceRules(c Config) string {
	seg := SegmentInterfacePrefix + "+"
	// Port unreachable fails a TCP connect at once (net-prohibited
	// only makes it retry until it times out).
	reject := "-j REJECT --reject-with icmp-port-unreachable"
	comment := func(s string) string { return "-m comment --comment " + strconv.Quote(s) }
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	line("*filter")
	line(":%s - [0:0]", FenceChain)
	line(":%s - [0:0]", FenceInputChain)
	line("-A %s -i %s -m physdev --physdev-is-bridged -j RETURN", FenceChain, seg)
	line("-A %s -i %s -m conntrack --ctstate DNAT --ctorigdst %s/32 -j RETURN", FenceChain, seg, c.NodeIP)
	line("-A %s -i %s -m conntrack --ctstate DNAT --ctorigdst %s -j RETURN", FenceChain, seg, c.LoadBalancerCIDR)
	line("-A %s -i %s -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN", FenceChain, seg)
	for _, r := range []string{c.PodCIDR.String(), c.ServiceCIDR.String()} {
		line("-A %s -i %s -d %s %s %s", FenceChain, seg, r, comment(FenceCommentWorkerPods), reject)
	}
	line("-A %s -i %s -o %s %s %s", FenceChain, seg, seg, comment(FenceCommentSegments), reject)
	line("-A %s -o kubi+ -j RETURN", FenceChain)
	// Admin pods are reached through routes of their own on Calico's
	// interfaces; only their addresses pass that way. (Felix's chain,
	// also jumped to from FORWARD, polices these interfaces: a new
	// connection its policy allows comes back to FORWARD, so the fence
	// sees it too.)
	line("-A %s -o %s+ -d %s -j RETURN", FenceChain, calico.InterfacePrefix, c.PodCIDR)
	for _, r := range PrivateRanges {
		line("-A %s -d %s %s %s", FenceChain, r, comment(FenceCommentPrivate), reject)
	}
	line("-A %s -s %s %s %s", FenceChain, c.PodCIDR, comment(FenceCommentAdminPods), reject)
	line("-A %s -i %s -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN", FenceInputChain, seg)
	line("-A %s -i %s %s %s", FenceInputChain, seg, comment(FenceCommentWorkerHost), reject)
	line("COMMIT")
	return b.String()
}

// ensureFence fills the fence chains and makes them the first rules of
// FORWARD and INPUT. It is idempotent and repairs a fence an earlier run
// left half done.
func ensureFence(ctx context.Context, c Config) error {
	restore := exec.CommandContext(ctx, "iptables-restore", "--noflush")
	restore.Stdin = strings.NewReader(fenceRules(c))
	if out, err := restore.CombinedOutput(); err != nil {
		return fmt.Errorf("install the fence chains: %w: %s", err, out)
	}
	for _, j := range []struct{ from, to string }{{"FORWARD", FenceChain}, {"INPUT", FenceInputChain}} {
		if _, err := run(ctx, "iptables", "-C", j.from, "-j", j.to); err == nil {
			continue
		}
		if out, err := run(ctx, "iptables", "-I", j.from, "1", "-j", j.to); err != nil {
			return fmt.Errorf("jump from %s to %s: %w: %s", j.from, j.to, err, out)
		}
	}
	return nil
}

// FenceCounts reads how many packets each commented fence rule refused,
// by comment (rules with the same comment add up).
func FenceCounts(ctx context.Context) (map[string]uint64, error) {
	out, err := run(ctx, "iptables-save", "-c", "-t", "filter")
	if err != nil {
		return nil, fmt.Errorf("iptables-save: %w: %s", err, out)
	}
	return parseFenceCounts(out), nil
}

// parseFenceCounts sums the packet counters of iptables-save -c lines of
// the fence chains by their comment.
func parseFenceCounts(save string) map[string]uint64 {
	counts := map[string]uint64{}
	for _, l := range strings.Split(save, "\n") {
		// [packets:bytes] -A CHAIN ... --comment "..." ...
		if !strings.HasPrefix(l, "[") {
			continue
		}
		end := strings.Index(l, "]")
		rest := strings.TrimSpace(l[end+1:])
		if end < 0 || !(strings.HasPrefix(rest, "-A "+FenceChain+" ") || strings.HasPrefix(rest, "-A "+FenceInputChain+" ")) {
			continue
		}
		i := strings.Index(rest, "--comment ")
		if i < 0 {
			continue
		}
		c, err := strconv.QuotedPrefix(rest[i+len("--comment "):])
		if err != nil {
			continue
		}
		name, err := strconv.Unquote(c)
		if err != nil {
			continue
		}
		packets, err := strconv.ParseUint(strings.SplitN(l[1:end], ":", 2)[0], 10, 64)
		if err != nil {
			continue
		}
		counts[name] += packets
	}
	return counts
}
