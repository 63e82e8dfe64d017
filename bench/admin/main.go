// Command admin measures the local admin cluster: component build time
// with a cold and a warm cache, `admin up` time with warm caches (fresh
// state and resumed after down), and the memory the admin plane holds once
// idle. It writes a Markdown report (bench/results/admin.md by default).
//
// Run it as root from the repository: go run ./bench/admin [-cold]
// -cold also measures a build with empty Go and component caches (it
// downloads nothing new but recompiles Kubernetes: 8-15 minutes).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	cold := flag.Bool("cold", false, "also measure a build with empty caches")
	out := flag.String("out", "bench/results/admin.md", "report file")
	root := flag.String("root", "/var/lib/kubinception-bench", "admin cluster state directory used for the measurement")
	idle := flag.Duration("idle", 60*time.Second, "how long the cluster idles before memory is read")
	flag.Parse()
	if err := run(*cold, *out, *root, *idle); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type row struct{ what, value, note string }

func run(cold bool, out, root string, idle time.Duration) error {
	tmp, err := os.MkdirTemp("", "kubinception-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	bin := filepath.Join(tmp, "kubinception")
	if _, err := cmd(nil, "go", "build", "-ldflags", "-s -w", "-o", bin, "./cmd/kubinception"); err != nil {
		return err
	}
	var rows []row
	if cold {
		env := []string{"GOCACHE=" + filepath.Join(tmp, "gocache"), "KUBINCEPTION_CACHE=" + filepath.Join(tmp, "cache")}
		d, err := timed(env, bin, "build", "components")
		if err != nil {
			return err
		}
		rows = append(rows, row{"component build, cold (empty Go build cache and component cache)", d.Round(time.Second).String(),
			"kube multi-call binary v1.35.4 + etcd + tinyhost; Go module cache kept (downloads excluded)"})
	}
	d, err := timed(nil, bin, "build", "components")
	if err != nil {
		return err
	}
	rows = append(rows, row{"component build, warm (cached)", d.Round(time.Millisecond).String(), "checks the cache stamps only"})

	if _, err := cmd(nil, bin, "admin", "down", "--purge", "--root", root); err != nil {
		return err
	}
	d, err = timed(nil, bin, "admin", "up", "--root", root)
	if err != nil {
		return err
	}
	rows = append(rows, row{"admin up, fresh state, warm caches", d.Round(100 * time.Millisecond).String(), "PKI, image import, 8 static pods, datastore auth"})
	if _, err := cmd(nil, bin, "admin", "down", "--root", root); err != nil {
		return err
	}
	d, err = timed(nil, bin, "admin", "up", "--root", root)
	if err != nil {
		return err
	}
	rows = append(rows, row{"admin up, resumed after down", d.Round(100 * time.Millisecond).String(), "data kept; images already imported"})
	d, err = timed(nil, bin, "admin", "up", "--root", root)
	if err != nil {
		return err
	}
	rows = append(rows, row{"admin up, already up (no-op)", d.Round(10 * time.Millisecond).String(), ""})

	time.Sleep(idle)
	mem := memory(root)
	var total int64
	names := make([]string, 0, len(mem))
	for n, v := range mem {
		names = append(names, n)
		total += v
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %d", n, mem[n]>>20))
	}
	rows = append(rows, row{fmt.Sprintf("memory of the admin plane, idle %s (RSS, MiB)", idle), strconv.FormatInt(total>>20, 10), strings.Join(parts, ", ")})
	if _, err := cmd(nil, bin, "admin", "down", "--purge", "--root", root); err != nil {
		return err
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "# Admin cluster benchmark\n\nMeasured %s on %s (%d cores). One run; the machine is shared, so treat single figures as indicative.\n\n| what | result | note |\n|---|---|---|\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), hostname(), numCPU())
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r.what, r.value, r.note)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Print(b.String())
	return nil
}

func timed(env []string, name string, args ...string) (time.Duration, error) {
	start := time.Now()
	_, err := cmd(env, name, args...)
	return time.Since(start), err
}

func cmd(env []string, name string, args ...string) (string, error) {
	c := exec.Command(name, args...)
	c.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
	out, err := c.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// memory sums resident memory by component over every process that belongs
// to the admin cluster under root: the supervisor, containerd, the kubelet,
// container shims and the static pods' processes.
func memory(root string) map[string]int64 {
	out := map[string]int64{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || len(cmdline) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
		name := component(args, root)
		if name == "" {
			continue
		}
		out[name] += rss(pid)
	}
	return out
}

func component(args []string, root string) string {
	joined := strings.Join(args, " ")
	base := filepath.Base(args[0])
	switch {
	case base == "containerd-shim-runc-v2" && strings.Contains(joined, root):
		return "shims"
	case base == "containerd" && strings.Contains(joined, root):
		return "containerd"
	case base == "kubinception" && strings.Contains(joined, "supervise") && strings.Contains(joined, root):
		return "supervisor"
	case base == "kubelet" && strings.Contains(joined, root):
		return "kubelet"
	case base == "etcd" && strings.Contains(joined, root):
		for _, a := range args {
			if strings.HasPrefix(a, "--name=datastore") {
				return "datastore"
			}
		}
		return "etcd"
	case strings.HasPrefix(base, "kube-") && strings.Contains(joined, root), base == "kube-proxy":
		return base
	case base == "pause":
		return "pause"
	}
	return ""
}

func rss(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

func hostname() string { h, _ := os.Hostname(); return h }

func numCPU() int {
	data, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(data), "processor\t:")
}
