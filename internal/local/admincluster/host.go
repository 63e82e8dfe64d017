package admincluster

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"kubinception.dev/kubinception/internal/calico"
	"kubinception.dev/kubinception/internal/local/hostproc"
)

// hostPackages are the Debian packages the admin node needs, with a file
// each that shows the package is installed.
var hostPackages = []struct{ pkg, file string }{
	{"containerd", "/usr/bin/containerd"},
	{"runc", "/usr/sbin/runc"},
	{"containernetworking-plugins", "/usr/lib/cni/host-local"},
	{"iptables", "/usr/sbin/xtables-nft-multi"},
	{"conntrack", "/usr/sbin/conntrack"},
	{"iproute2", "/usr/sbin/ip"},
	// Felix matches NetworkPolicy selectors with IP sets.
	{"ipset", "/usr/sbin/ipset"},
}

// ensurePackages installs the host packages that are missing.
func ensurePackages(ctx context.Context, logf func(string, ...any)) error {
	var missing []string
	for _, hp := range hostPackages {
		if _, err := os.Stat(hp.file); err != nil {
			missing = append(missing, hp.pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("packages %s are missing and apt-get is not available: install them with your package manager", strings.Join(missing, ", "))
	}
	logf("installing %s", strings.Join(missing, ", "))
	install := append([]string{"install", "-y", "--no-install-recommends"}, missing...)
	env := append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := runEnv(ctx, env, "apt-get", install...)
	if err != nil {
		// The package lists may be missing or stale on a fresh machine.
		if out2, err2 := runEnv(ctx, env, "apt-get", "update"); err2 != nil {
			return fmt.Errorf("apt-get update: %w: %s", err2, out2)
		}
		if out, err = runEnv(ctx, env, "apt-get", install...); err != nil {
			return fmt.Errorf("apt-get install %s: %w: %s", strings.Join(missing, " "), err, out)
		}
	}
	return nil
}

func run(ctx context.Context, name string, args ...string) (string, error) {
	return runEnv(ctx, nil, name, args...)
}

func runEnv(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// sysctls the node changes: the kubelet sets the first three, the pod
// network and Services need the rest. (A record made by an earlier
// version, whose bridge network needed bridge-nf-call-iptables, is
// restored as it was.)
var managedSysctls = []string{
	"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops",
	"net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet",
}

// saveSysctls records the machine's values before the node changes them.
// An existing record is kept: it holds the values from before the first Up.
func saveSysctls(c Config) error {
	path := filepath.Join(c.paths().State(), "sysctls.json")
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	orig := map[string]string{}
	for _, k := range managedSysctls {
		if v, err := os.ReadFile("/proc/sys/" + k); err == nil {
			orig[k] = strings.TrimSpace(string(v))
		}
	}
	data, _ := json.Marshal(orig)
	if err := os.MkdirAll(c.paths().State(), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// setNodeSysctls sets what the pod network needs: forwarding, since every
// pod is reached through a route of its own.
func setNodeSysctls() error {
	for k, v := range map[string]string{"net/ipv4/ip_forward": "1"} {
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s: %w", strings.ReplaceAll(k, "/", "."), v, err)
		}
	}
	return nil
}

// restoreSysctls puts back the values recorded by saveSysctls.
func restoreSysctls(c Config) error {
	path := filepath.Join(c.paths().State(), "sysctls.json")
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	orig := map[string]string{}
	if err := json.Unmarshal(data, &orig); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var errs []error
	for k, v := range orig {
		if err := os.WriteFile("/proc/sys/"+k, []byte(v), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctl %s: %w", k, err))
		}
	}
	if len(errs) == 0 {
		_ = os.Remove(path)
	}
	return errors.Join(errs...)
}

// ensureNodeInterface creates the interface holding the node address.
func ensureNodeInterface(ctx context.Context, c Config) error {
	if _, err := net.InterfaceByName(NodeInterface); err != nil {
		if out, err := run(ctx, "ip", "link", "add", NodeInterface, "type", "bridge"); err != nil {
			return fmt.Errorf("create interface %s: %w: %s", NodeInterface, err, out)
		}
	}
	addr := c.NodeIP.String() + "/32"
	out, _ := run(ctx, "ip", "-o", "addr", "show", "dev", NodeInterface)
	if !strings.Contains(out, " "+addr+" ") {
		if out, err := run(ctx, "ip", "addr", "add", addr, "dev", NodeInterface); err != nil && !strings.Contains(out, "File exists") {
			return fmt.Errorf("add %s to %s: %w: %s", addr, NodeInterface, err, out)
		}
	}
	if out, err := run(ctx, "ip", "link", "set", NodeInterface, "up"); err != nil {
		return fmt.Errorf("bring %s up: %w: %s", NodeInterface, err, out)
	}
	// Load-balancer addresses are the admin node's own: kube-proxy
	// translates connections to them to the load balancers' pods.
	if out, err := run(ctx, "ip", "route", "replace", "local", c.LoadBalancerCIDR.String(), "dev", NodeInterface, "table", "local"); err != nil {
		return fmt.Errorf("route %s to the admin node: %w: %s", c.LoadBalancerCIDR, err, out)
	}
	return nil
}

// deleteInterfaces removes the interfaces the node created: the node
// address's, the host side of pods' interfaces the CNI plugin did not
// remove, and the bridge of earlier versions.
func deleteInterfaces(ctx context.Context) error {
	var errs []error
	names := append([]string{legacyBridgeInterface, NodeInterface}, podInterfaces(ctx)...)
	for _, name := range names {
		if _, err := net.InterfaceByName(name); err != nil {
			continue
		}
		if out, err := run(ctx, "ip", "link", "del", name); err != nil {
			errs = append(errs, fmt.Errorf("delete interface %s: %w: %s", name, err, out))
		}
	}
	return errors.Join(errs...)
}

// podInterfaces lists the host's links whose names start with Calico's
// pod interface prefix. Only the admin node makes such links in the
// machine's network namespace (a local worker's are in its own), so the
// admin node cannot share the machine with another Calico.
func podInterfaces(ctx context.Context) []string {
	out, _ := run(ctx, "ip", "-o", "link", "show")
	return linkNames(out, calico.InterfacePrefix)
}

// linkNames picks from `ip -o link show` output the names starting with
// one of prefixes ("cali0123@if2" is link cali0123).
func linkNames(ipLinkShow string, prefixes ...string) []string {
	var names []string
	for _, line := range strings.Split(ipLinkShow, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		for _, p := range prefixes {
			if strings.HasPrefix(name, p) {
				names = append(names, name)
				break
			}
		}
	}
	return names
}

// OurChainPrefixes are the iptables chain prefixes of kube-proxy, the
// kubelet, the CNI plugins, the fence and Felix.
var OurChainPrefixes = []string{"KUBE-", "CNI-", "KUBI-", "cali-"}

// felixRuleComment starts the comment Felix puts on every rule it writes,
// including the ones in the built-in chains that jump to none of its own.
const felixRuleComment = "cali:"

// OurIPSetPrefixes start the names of Felix's IPv4 IP sets: current
// ("cali40"), temporary ("cali4t") and of an older format ("cali4-").
var OurIPSetPrefixes = []string{"cali40", "cali4t", "cali4-"}

// ourIPSets lists the IP sets of ours that exist.
func ourIPSets(ctx context.Context) ([]string, error) {
	if _, err := exec.LookPath("ipset"); err != nil {
		return nil, nil // nobody made any
	}
	out, err := run(ctx, "ipset", "list", "-n")
	if err != nil {
		return nil, fmt.Errorf("ipset list: %w: %s", err, out)
	}
	var sets []string
	for _, name := range strings.Fields(out) {
		for _, p := range OurIPSetPrefixes {
			if strings.HasPrefix(name, p) {
				sets = append(sets, name)
				break
			}
		}
	}
	return sets, nil
}

// destroyIPSets destroys Felix's IP sets. It runs after cleanIptables:
// a set a rule still names cannot be destroyed.
func destroyIPSets(ctx context.Context) error {
	sets, err := ourIPSets(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range sets {
		if out, err := run(ctx, "ipset", "destroy", name); err != nil {
			errs = append(errs, fmt.Errorf("ipset destroy %s: %w: %s", name, err, out))
		}
	}
	return errors.Join(errs...)
}

// iptablesCommands are the iptables front ends whose rules are cleaned.
var iptablesCommands = []string{"iptables", "ip6tables", "iptables-legacy", "ip6tables-legacy"}

// cleanIptables removes every rule that jumps to one of our chains and then
// the chains themselves, in every table, for both iptables backends.
func cleanIptables(ctx context.Context) error {
	var errs []error
	for _, cmd := range iptablesCommands {
		if _, err := exec.LookPath(cmd); err != nil {
			continue
		}
		save, err := run(ctx, cmd+"-save")
		if err != nil {
			continue
		}
		for table, rules := range parseIptablesSave(save) {
			restore := iptablesCleanup(table, rules)
			if restore == "" {
				continue
			}
			c := exec.CommandContext(ctx, cmd+"-restore", "--noflush")
			c.Stdin = strings.NewReader(restore)
			if out, err := c.CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("%s-restore (table %s): %w: %s", cmd, table, err, out))
			}
		}
	}
	return errors.Join(errs...)
}

// parseIptablesSave splits iptables-save output into tables: chain
// declarations (":NAME ...") and rules ("-A ...").
func parseIptablesSave(save string) map[string][]string {
	tables := map[string][]string{}
	table := ""
	sc := bufio.NewScanner(strings.NewReader(save))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
			tables[table] = nil
		case strings.HasPrefix(line, ":") || strings.HasPrefix(line, "-A "):
			tables[table] = append(tables[table], line)
		}
	}
	return tables
}

func isOurChain(name string) bool {
	for _, p := range OurChainPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// ourIptables picks, from one table's iptables-save lines, our chains and
// our rules in other chains: those jumping to our chains and those Felix
// wrote (by their comment).
func ourIptables(lines []string) (chains, rules []string) {
	for _, l := range lines {
		if strings.HasPrefix(l, ":") {
			name := strings.Fields(l[1:])[0]
			if isOurChain(name) {
				chains = append(chains, name)
			}
			continue
		}
		f := strings.Fields(l)
		if len(f) < 2 || isOurChain(f[1]) {
			continue
		}
		for i := 0; i+1 < len(f); i++ {
			if (f[i] == "-j" || f[i] == "-g") && isOurChain(f[i+1]) ||
				f[i] == "--comment" && strings.HasPrefix(strings.Trim(f[i+1], `"`), felixRuleComment) {
				rules = append(rules, l)
				break
			}
		}
	}
	return chains, rules
}

// iptablesCleanup is the iptables-restore input that deletes, from one
// table, our rules in other chains, then flushes and deletes our chains.
// It is empty when there is nothing of ours.
func iptablesCleanup(table string, lines []string) string {
	chains, rules := ourIptables(lines)
	var deletes []string
	for _, l := range rules {
		deletes = append(deletes, "-D"+strings.TrimPrefix(l, "-A"))
	}
	if len(chains) == 0 && len(deletes) == 0 {
		return ""
	}
	sort.Strings(chains)
	var b strings.Builder
	fmt.Fprintf(&b, "*%s\n", table)
	for _, d := range deletes {
		fmt.Fprintln(&b, d)
	}
	for _, c := range chains {
		fmt.Fprintf(&b, "-F %s\n", c)
	}
	for _, c := range chains {
		fmt.Fprintf(&b, "-X %s\n", c)
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// unmountAll detaches every mount under root.
func unmountAll(root string) error {
	var errs []error
	for attempt := 0; attempt < 3; attempt++ {
		mounts, err := hostproc.MountPoints(root)
		if err != nil || len(mounts) == 0 {
			return err
		}
		errs = nil
		for _, m := range mounts {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
			}
		}
	}
	return errors.Join(errs...)
}

// podCgroup is the cgroup under which the admin node's kubelet puts pods.
const podCgroup = "kubepods"

// checkPortsFree fails on every one of ports that something other than
// our own pods listens on, naming the port, its user and what to do. Our
// components bind loopback or the node address, so a port counts as taken
// at either (a listener on any address takes both) and not at another
// address: a test's API server on 127.0.0.5:6443 takes nothing of ours.
// Listeners in the kubelet's pod cgroups are ours: static pods survive a
// crashed kubelet and are adopted.
func checkPortsFree(nodeIP net.IP, ports map[int]string) error {
	nums := make([]int, 0, len(ports))
	for p := range ports {
		nums = append(nums, p)
	}
	sort.Ints(nums)
	var errs []error
	for _, p := range nums {
		for _, ip := range []net.IP{net.IPv4(127, 0, 0, 1), nodeIP} {
			l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(p)))
			if err == nil {
				l.Close()
				continue
			}
			if errors.Is(err, syscall.EADDRNOTAVAIL) {
				continue // the node address is not on the machine yet
			}
			pid := hostproc.ListenerPID(ip, p)
			if pid != 0 && hostproc.InCgroup(pid, "/"+podCgroup) {
				continue
			}
			owner := "another process"
			if pid != 0 {
				owner = fmt.Sprintf("pid %d (%s)", pid, hostproc.Read(pid).Name())
			}
			errs = append(errs, fmt.Errorf("port %d, needed by %s, is in use by %s: stop it, or run `kubinception admin down` if it is a leftover of ours", p, ports[p], owner))
			break
		}
	}
	return errors.Join(errs...)
}
